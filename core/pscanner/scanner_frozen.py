"""P-Scanner on a frozen pretrained LLM (issue 17 item 3): the LLM's features, a linear head per scanner.

Fine-tuning a 135M-parameter LLM once per cross-fitting fold takes hours on a CPU. Here the LLM stays
frozen: one forward pass per text gives its features (mean and last hidden state of a few layers, and
per-token surprisal: how unexpected each token is after the title so far), and a logistic-regression head
is trained on the agent's synthetic triggers (Yes) over the titles and their natural variants (No). A
title's examples are drawn from a generator seeded by the title itself, and features are cached per text,
so the K heads of a cross-fitted scan share every forward pass: the cost is one pass per catalog title
and its examples, whatever K. The LLM brings language: a marketing sentence or a nonce word is odd to
it in any catalog, which a `mini` base trained on the catalog alone cannot know.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.lm.artifacts import save_atomic
from core.lm.lmscore import cache_rows, new_cache
from core.lm.loaded import autocast_to, model_parts
from core.progress import Progress

from .agent import SyntheticTrigger, propose
from .linear_head import LinearHead, Prior, fit_head, load_head, save_head, shipped_prior
from .scanner import MAX_SCAN_CHARS, FrozenHeadConfig, ScannerConfig, SpansFromScore, calibrate_threshold
from .scanner_data import Example, hard_negative, holdout_split, title_vocab

FEATURE_PREFIX = "Catalog item: "  # the title follows a neutral cue, so its first token is not a text's first
CACHE_LIMIT = 60_000  # texts whose features stay in memory (~14 KB each for SmolLM2-135M: ~0.8 GB at most)
HEAD_FILE = "head.safetensors"
FEATURES_VERSION = 3  # in a frozen scanner's cache key: 2 = equal-length batches, 3 = the prefix from its KV cache


class FeatureExtractor:
    """A frozen causal LM that turns texts into feature vectors, cached per text for the process's life.

    `dtype` is the autocast dtype (`LoadedModel.autocast_dtype`: bf16 where the machine computes it natively,
    None for fp32): on an AVX512-BF16 CPU it makes features 1.8x faster, moving them by ~2 % of a feature's
    spread; a head is always trained and applied on features of one dtype (the scanner's cache key has it).
    """

    def __init__(self, model, tokenizer, layers: Sequence[int] = FrozenHeadConfig.layers, batch_size: int = 32,
                 dtype=None):
        self.model, self.tokenizer, self.dtype = model.eval(), tokenizer, dtype
        n = model.config.num_hidden_layers
        self.layers = tuple(sorted({(x if x >= 0 else n + 1 + x) for x in layers if -n - 1 <= x <= n}))
        self.batch_size = batch_size
        self.cache: dict[str, np.ndarray] = {}
        self.prefix = tokenizer(FEATURE_PREFIX, add_special_tokens=False)["input_ids"]
        self.close = tokenizer("\n", add_special_tokens=False)["input_ids"]
        self.device = next(model.parameters()).device
        self.decoder, self.head = model_parts(model)
        self._prefix = None  # (KV cache, next-token log-probs) of the prefix: `_prefix_state`

    def features(self, texts: Sequence[str], progress: Progress | None = None, message: str = "LLM features"
                 ) -> np.ndarray:
        """One row per text (repeats and cached texts cost nothing), in input order.

        In bf16, texts go through the model only beside texts of the same token length: a padded batch changes a
        row's bf16 result (up to a quarter of a feature's spread), so a text's features would depend on which
        texts happened to be computed with it: on the scans before it in the process, or the order of a
        benchmark's catalogs. Equal-length rows give the same bits whatever their batch (docs/SCANNER.md E50).
        In fp32 a batch moves a row by float rounding only (~2e-5 of a feature's spread, E60), so texts of any
        length share right-padded batches: full batches where equal lengths gave many small ones, and a small
        batch costs nearly a full one's time on a CPU that streams the weights once per batch."""
        todo = sorted({t for t in texts if t not in self.cache})
        cut = [t[:MAX_SCAN_CHARS] for t in todo]
        ids = dict(zip(todo, self.tokenizer(cut, add_special_tokens=False)["input_ids"] if todo else []))
        todo.sort(key=lambda t: len(ids[t]))  # stable: equal lengths keep the texts' order
        fresh: dict[str, np.ndarray] = {}  # past the limit the cache stops growing (bulk catalogs)
        done = 0
        exact = self.dtype is not None  # bf16: batches of one length only
        for _, group in groupby(todo, key=lambda t: len(ids[t]) if exact else 0):
            group = list(group)
            for i in range(0, len(group), self.batch_size):
                batch = group[i:i + self.batch_size]
                for t, row in zip(batch, self._forward([ids[t] for t in batch])):
                    (self.cache if len(self.cache) < CACHE_LIMIT else fresh)[t] = row
                done += len(batch)
                if progress:
                    progress.update(done, len(todo), f"{message}: {done:,}/{len(todo):,} texts")
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        return np.stack([self.cache[t] if t in self.cache else fresh[t] for t in texts])

    @property
    def dim(self) -> int:
        """Length of a feature vector: mean and last hidden state per layer, plus six surprisal statistics."""
        return 2 * len(self.layers) * self.model.config.hidden_size + 6

    def _prefix_state(self):
        """The prefix's KV cache and its next-token log-probs, computed once: every row starts with the same cue,
        so only the title and the closing newline go through the model per text (~30 % fewer tokens)."""
        import torch

        if self._prefix is None:
            cache = new_cache(self.decoder)
            ids = torch.tensor([self.prefix], device=self.device)
            with torch.inference_mode(), autocast_to(self.device.type, self.dtype):
                h = self.decoder(input_ids=ids, cache=cache, use_cache=True).last_hidden_state[:, -1]
                self._prefix = cache, torch.log_softmax(self.head(h).float(), -1)[0]
        return self._prefix

    def _forward(self, encs: Sequence[list[int]]) -> list[np.ndarray]:
        """Features of a batch of titles' token ids: rows `prefix + title + newline`, right-padded (a causal LM's
        real tokens never see the padding after them, so no mask is needed), the prefix read from its cache;
        logits only where a title token or the newline is predicted."""
        import torch

        encs = [e or self.close for e in encs]  # an empty title reads as the newline alone
        rows = [e + self.close for e in encs]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + self.close[:1] * (width - len(r)) for r in rows], device=self.device)
        lengths = torch.tensor([len(r) for r in rows], device=self.device)
        real = torch.arange(width, device=self.device) < lengths[:, None]  # the row's own tokens, not its padding
        prefix_cache, prefix_logp = self._prefix_state()
        with torch.inference_mode(), autocast_to(self.device.type, self.dtype):
            cache = cache_rows(self.decoder, prefix_cache, torch.zeros(len(encs), dtype=torch.long, device=self.device))
            out = self.decoder(input_ids=ids, cache=cache, use_cache=True, output_hidden_states=True)
            predicted = real[:, 1:]  # positions whose next token is a real one
            logp = torch.log_softmax(self.head(out.last_hidden_state[:, :-1][predicted]).float(), -1)
            later = torch.zeros(predicted.shape, device=self.device)
            later[predicted] = -logp.gather(-1, ids[:, 1:][predicted][:, None])[:, 0]
            surprisal = torch.cat([-prefix_logp[ids[:, :1]], later], 1).cpu()  # token t given the prefix and < t
            hidden = torch.cat([out.hidden_states[x].float() for x in self.layers], -1).cpu()
        result = []
        for r, e in enumerate(encs):
            m = len(e)
            h = hidden[r, :m]
            s = surprisal[r, :len(rows[r])].numpy()  # each title token, then the closing newline
            stats = [s[:-1].max(), s[:-1].mean(), s[-1], s[0], s[-2], math.log(m)]
            result.append(np.concatenate([h.mean(0).numpy(), h[-1].numpy(), np.asarray(stats, np.float32)]))
        return result


def host_titles(trigger: str, titles: Sequence[str], k: int) -> list[str]:
    """The `k` titles a trigger is probed on: those with the smallest hash of (trigger, title). The folds of a
    cross-fitted scan share 3/4 of their titles, so they mostly pick the same hosts and share those texts'
    features (rendezvous hashing), where a random pick per fold would cost K forward passes per probe."""
    return heapq.nsmallest(k, titles, key=lambda t: zlib.crc32(f"{trigger}\0{t}".encode()))


def example_hosts(titles: Sequence[str], k: int) -> set[str] | None:
    """The titles that get examples beyond themselves (`FrozenHeadConfig.example_titles`), or None for all: the `k`
    with the smallest hash, so every fold of a cross-fitted scan picks its share of the same titles."""
    titles = sorted(set(titles))
    return set(host_titles("examples", titles, k)) if k and len(titles) > k else None


def triggered(trigger: SyntheticTrigger, title: str, seed: int = 0) -> Example | None:
    """The title with the trigger as a Yes example, or None when the result would be too long to be a title."""
    try:
        return Example(trigger.render(title, seed=seed)[:MAX_SCAN_CHARS], True, trigger.family)
    except InputError:
        return None


def title_examples(title: str, pool: Sequence[SyntheticTrigger], cfg: ScannerConfig, vocab: Sequence[str]
                   ) -> list[Example]:
    """A title's own examples: itself and its natural variants (No), triggered copies (Yes), drawn from a
    generator seeded by the title, so every fold's head that trains on it sees the same texts."""
    rng = random.Random(f"frozen:{cfg.seed}:{title}")
    out = [Example(title, False, "clean")]
    out += [Example(hard_negative(title, rng, vocab)[:MAX_SCAN_CHARS], False, "hard")
            for _ in range(cfg.frozen.hard_per_title)]
    for _ in range(cfg.frozen.pos_per_title):
        trig = pool[rng.randrange(len(pool))]
        if cfg.vary_positions:
            trig = trig.placed(rng.choice(cfg.positions), rng)
        out.append(triggered(trig, title, rng.randrange(1 << 30)))
    return [e for e in out if e is not None]


@dataclass
class FrozenScanner(SpansFromScore):
    """A trained frozen-LLM scanner: the same interface as `core.pscanner.scanner.Scanner` (score, spans, threshold)."""

    extractor: FeatureExtractor
    head: LinearHead
    cfg: ScannerConfig
    threshold: float = 0.5
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def score(self, titles: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """P(poisoned) for each title, in input order."""
        return self.head.predict(self.extractor.features(list(titles), progress)) if len(titles) else np.zeros(0)


_EXTRACTORS: dict[tuple, FeatureExtractor] = {}


def extractor_for(cfg: ScannerConfig, progress: Progress | None = None) -> FeatureExtractor:
    """The process's one extractor per base model: loaded once, its feature cache shared by every head."""
    from core.lm.models import load_model

    key = (cfg.model, cfg.frozen.layers)
    if key not in _EXTRACTORS:
        loaded = load_model(cfg.model, progress=progress)
        _EXTRACTORS.clear()  # one LLM in memory at a time
        _EXTRACTORS[key] = FeatureExtractor(loaded.model, loaded.tokenizer, cfg.frozen.layers,
                                            dtype=loaded.autocast_dtype)
    return _EXTRACTORS[key]


def prior_for(cfg: ScannerConfig, titles: Sequence[str]) -> Prior | None:
    """The prior head a scanner trained on `titles` shrinks towards (`FrozenHeadConfig.prior_max_titles`), or None:
    more titles, a model without a shipped prior, or the prior turned off."""
    n_titles = min(len({t for t in titles if t and t.strip()}), cfg.max_titles)
    if not cfg.frozen.prior_max_titles or n_titles > cfg.frozen.prior_max_titles:
        return None
    return shipped_prior(cfg.model.name, cfg.frozen.layers)


def train_frozen(titles: Sequence[str], cfg: ScannerConfig, progress: Progress | None = None, client=None,
                 domain: str = "", base_titles: Sequence[str] | None = None) -> FrozenScanner:
    """Train a frozen-LLM scanner on a domain's titles: features once, a head, adversarial rounds on the head.

    `base_titles` (the whole catalog of a cross-fitted scan) supply the words of the hard negatives, so a
    title's examples are the same texts in every fold.

    The agent's rounds work as for `train_scanner`: each fresh trigger is probed on one title (`host_titles`),
    the missed ones join the pool with copies on four titles; the head is refitted (seconds) on the grown set.
    """
    t0 = time.monotonic()
    titles, held, train, _ = holdout_split(titles, cfg)
    vocab = title_vocab(titles if base_titles is None else base_titles)
    extractor = extractor_for(cfg, progress)
    proposal = propose(cfg.agent(cfg.n_triggers, cfg.seed), client)
    warnings, pool = list(proposal.warnings), list(proposal.triggers)
    used = {t.text.lower() for t in pool}
    hosts = example_hosts(titles if base_titles is None else base_titles, cfg.frozen.example_titles)
    examples = [e for t in train for e in (title_examples(t, pool, cfg, vocab) if hosts is None or t in hosts
                                           else [Example(t, False, "clean")])]

    prior = prior_for(cfg, titles)

    def refit(extra: Sequence[Example] = ()) -> LinearHead:
        data = [*examples, *extra]
        x = extractor.features([e.title for e in data], progress, "LLM features of the training examples")
        return fit_head(x, np.array([e.label for e in data], float), cfg.frozen.l2,
                        prior=prior.head if prior else None)

    head = refit()
    scanner = FrozenScanner(extractor, head, cfg)
    scanner.threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
    history = [{"round": 0, "n_triggers": len(pool), "n_examples": len(examples), "threshold": scanner.threshold,
                "seconds": round(time.monotonic() - t0, 1)}]
    extra: list[Example] = []
    for r in range(1, cfg.rounds + 1):
        prop = propose(cfg.agent(cfg.frozen.round_probes(cfg.agent_per_round, len(titles)), cfg.seed * 1000 + r),
                       client, exclude=used)
        warnings += prop.warnings
        used |= {t.text.lower() for t in prop.triggers}
        probes = [(t, e) for t in prop.triggers if (e := triggered(t, host_titles(t.text, titles, 1)[0]))]
        missed_mask = scanner.score([e.title for _, e in probes]) < scanner.threshold if probes else np.zeros(0, bool)
        miss_rate = float(missed_mask.mean()) if len(probes) else 0.0
        entry = {"round": r, "n_proposed": len(probes), "miss_rate": miss_rate}
        if miss_rate < cfg.miss_eps:
            history.append(entry | {"stopped": "miss rate below eps"})
            break
        missed = [t for (t, _), m in zip(probes, missed_mask) if m]
        pool += missed
        extra += [e for tr in missed for t in host_titles(tr.text, titles, 4) if (e := triggered(tr, t))]
        scanner.head = refit(extra)
        scanner.threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
        history.append(entry | {"n_missed": len(missed), "threshold": scanner.threshold})
    scanner.history = history
    scanner.info = {"domain": domain, "n_titles": len(titles), "n_train_titles": len(train),
                    "n_holdout_titles": len(held), "n_trigger_pool": len(pool), "kind": "frozen LLM + linear head",
                    "seconds": round(time.monotonic() - t0, 1), "warnings": warnings,
                    "n_params": int(sum(p.numel() for p in extractor.model.parameters()) + len(head.w) + 1),
                    "feature_layers": list(extractor.layers),
                    "prior": {"sha256": prior.sha256, "n_titles": prior.meta.get("n_titles")} if prior else None}
    return scanner


def save_frozen(scanner: FrozenScanner, folder: Path) -> None:
    """The head (safetensors) and meta (config, threshold, rounds) saved atomically; the LLM is not copied."""
    meta = {"config": scanner.cfg.to_dict(), "threshold": scanner.threshold, "history": scanner.history,
            "info": scanner.info, "kind": "frozen"}
    save_atomic(folder, lambda d: save_head(scanner.head, d / HEAD_FILE), "meta.json", meta)


def load_frozen(folder: Path, progress: Progress | None = None) -> FrozenScanner:
    """A cached frozen-LLM scanner: its head from safetensors, the LLM through `extractor_for`."""
    meta = json.loads((folder / "meta.json").read_text())
    cfg = ScannerConfig.from_dict(meta["config"])
    return FrozenScanner(extractor_for(cfg, progress), load_head(folder / HEAD_FILE), cfg, meta["threshold"],
                         meta["history"], meta["info"])
