"""Training P-Scanner (DESIGN.md §4): fine-tuning on the first answer token, self-cleaning, iterative
adversarial rounds with the augmentation agent, consolidation and hard-negative passes, the threshold set
for a target false-positive rate on held-out clean titles; trained scanners are cached per titles and config."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core import settings
from core.config import fingerprint
from core.hardware import unpack_4bit
from core.lm.models import compute_dtype
from core.progress import Progress

from .agent import propose
from .scanner import Scanner, ScannerConfig, calibrate_threshold, load_scanner, save_scanner
from .scanner_data import Example, holdout_split, negative_examples, title_vocab, triggered_examples
from .scanner_frozen import FEATURES_VERSION, FrozenScanner, load_frozen, prior_for, save_frozen, train_frozen
from .scanner_model import load_base, prepare_for_finetune, titles_hash


def fit(scanner: Scanner, examples: Sequence[Example], epochs: int, lr: float, seed: int,
        progress: Progress | None = None, phase: str = "training the scanner") -> float:
    """Cross-entropy on the first answer token over the whole vocabulary; returns the mean last-epoch loss."""
    import torch

    rng = random.Random(seed)
    data = list(examples)
    train = scanner.cfg.train
    bs = train.batch_size
    params = [p for p in scanner.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=train.weight_decay)
    total = epochs * math.ceil(len(data) / bs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / total))
    unpack_4bit(scanner.model)  # the previous round's scoring may have repacked 4-bit weights (no backward)
    scanner.model.train()
    step, losses = 0, []
    for epoch in range(epochs):
        rng.shuffle(data)
        losses = []
        for i in range(0, len(data), bs):
            batch = data[i:i + bs]
            last = scanner._last_logits([e.title for e in batch])
            target = torch.tensor([scanner.yes_id if e.label else scanner.no_id for e in batch], device=last.device)
            loss = torch.nn.functional.cross_entropy(last.float(), target)
            opt.zero_grad()
            loss.backward()
            if train.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if progress:
                progress.update(step, total, f"{phase}: epoch {epoch + 1}/{epochs}, loss {losses[-1]:.3f}")
    scanner.model.eval()
    return float(np.mean(losses)) if losses else float("nan")


def train_scanner(titles: Sequence[str], cfg: ScannerConfig, progress: Progress | None = None,
                  client=None, domain: str = "", base_titles: Sequence[str] | None = None) -> Scanner:
    """Train a scanner on a domain's titles with adversarial rounds.

    Args:
        titles (`Sequence[str]`): the domain's titles (labelled No); a share is held out for the threshold.
        cfg (`ScannerConfig`): model, data sizes, rounds, target FPR.
        progress (`Progress`, optional): progress and cancellation.
        client (`LLMClient`, optional): endpoint for the LLM agent when `cfg.use_llm_agent`.
        domain (`str`): a name for reports.
        base_titles (`Sequence[str]`, optional): titles the base is pre-trained on (default `titles`); the
            folds of a cross-fitted scan share one base pre-trained on the whole catalog.

    Returns:
        `Scanner` with its threshold, round history and info (incl. agent warnings).
    """
    import torch

    t0 = time.monotonic()
    titles, held, train, rng = holdout_split(titles, cfg)
    vocab = title_vocab(titles)
    torch.manual_seed(cfg.seed)

    model, tokenizer = load_base(cfg, titles if base_titles is None else base_titles, progress)
    model = prepare_for_finetune(model, cfg)
    scanner = Scanner(model, tokenizer, cfg)
    proposal = propose(cfg.agent(cfg.n_triggers, cfg.seed), client)
    warnings = list(proposal.warnings)
    pool = list(proposal.triggers)
    used = {t.text.lower() for t in pool}
    places = cfg.positions if cfg.vary_positions else ()
    examples = triggered_examples(train, pool, cfg.pos_per_title, rng, places) + \
        negative_examples(train, cfg.hard_per_title, vocab, rng)
    lr = cfg.train.lr
    epochs = max(int(cfg.train.epochs), math.ceil(cfg.min_steps / math.ceil(len(examples) / cfg.train.batch_size)))
    loss = fit(scanner, examples, 1, lr, cfg.seed, progress)
    # Self-cleaning: the domain's titles may already hold poisoned ones. After one epoch, before the
    # model memorises its No set, training titles it flags are dropped from the No set.
    suspects: set[str] = set()
    if cfg.self_clean:
        first_threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
        suspects = {t for t, s in zip(train, scanner.score(train)) if s >= first_threshold}
    if suspects:
        examples = [e for e in examples if not (e.kind == "clean" and e.title in suspects)]
        train = [t for t in train if t not in suspects]
    if epochs > 1:
        loss = fit(scanner, examples, epochs - 1, lr, cfg.seed + 1, progress)
    scanner.threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
    history = [{"round": 0, "n_triggers": len(pool), "n_examples": len(examples), "loss": loss,
                "n_suspects_dropped": len(suspects), "threshold": scanner.threshold,
                "seconds": round(time.monotonic() - t0, 1)}]
    for r in range(1, cfg.rounds + 1):
        t_round = time.monotonic()
        prop = propose(cfg.agent(cfg.agent_per_round, cfg.seed * 1000 + r), client, exclude=used)
        warnings += prop.warnings
        fresh = prop.triggers
        used |= {t.text.lower() for t in fresh}
        # One probe per fresh trigger, on a held-out title, so a miss names its trigger.
        pairs = [(t, triggered_examples([rng.choice(held)], [t], 1, rng)) for t in fresh]
        fresh = [t for t, ex in pairs if ex]
        probes = [ex[0] for _, ex in pairs if ex]
        probe_scores = scanner.score([p.title for p in probes])
        missed_mask = probe_scores < scanner.threshold
        miss_rate = float(missed_mask.mean()) if len(probes) else 0.0
        by_family = {f: float(np.mean([m for m, p in zip(missed_mask, probes) if p.kind == f]))
                     for f in cfg.families if any(p.kind == f for p in probes)}
        entry = {"round": r, "n_proposed": len(fresh), "miss_rate": miss_rate, "miss_rate_by_family": by_family}
        if miss_rate < cfg.miss_eps:
            entry.update(stopped="miss rate below eps", seconds=round(time.monotonic() - t_round, 1))
            history.append(entry)
            break
        # A trigger whose probe was missed joins the pool; its examples go on training titles.
        missed = [t for t, m in zip(fresh, missed_mask) if m]
        pool += missed
        replay = rng.sample(examples, min(len(examples), 4 * len(missed) * cfg.pos_per_title))
        new = triggered_examples(rng.sample(train, min(len(train), 4 * len(missed))), missed, 1, rng)
        new += negative_examples(rng.sample(train, min(len(train), len(new) // 2 + 1)), 1, vocab, rng)
        loss = fit(scanner, new + replay, 2, lr / 2, cfg.seed + r, progress, f"round {r}")
        examples += new
        scanner.threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
        entry.update(n_missed=len(missed), n_examples=len(examples), loss=loss, threshold=scanner.threshold,
                     seconds=round(time.monotonic() - t_round, 1))
        history.append(entry)
    # Consolidation: the held-out titles are part of the domain too; one short pass teaches them as No
    # (with their triggered and hard-negative variants and a replay of earlier examples) so the scan of
    # the domain's own catalog does not flag them. The threshold stays the one calibrated on them while
    # unseen, which now errs on the safe side.
    if cfg.consolidate:
        extra = negative_examples(held, cfg.hard_per_title, vocab, rng) + \
            triggered_examples(held, pool, cfg.pos_per_title, rng, places)
        replay = rng.sample(examples, min(len(examples), 2 * len(extra)))
        fit(scanner, extra + replay, 1, lr / 2, cfg.seed + 99, progress, "consolidation")
        history.append({"round": "consolidation", "n_examples": len(extra) + len(replay)})
    # Hard negatives: reference titles still at or above the threshold (odd but clean ones such as
    # `M*A*S*H (1970)`) get extra passes as No, beside triggered copies of them as Yes so the trigger keeps
    # its meaning. Only for a trusted reference: on a catalog that may hold poison this would teach the
    # poisoned titles as clean.
    if not cfg.self_clean and cfg.mine_passes:
        mined: list[int] = []
        for p in range(cfg.mine_passes):
            hard = [t for t, s in zip(titles, scanner.score(titles)) if s >= scanner.threshold]
            if not hard:
                break
            mined.append(len(hard))
            extra = [Example(t, False, "clean") for t in hard for _ in range(4)] + \
                triggered_examples(hard, pool, cfg.pos_per_title, rng, places)
            replay = rng.sample(examples, min(len(examples), 4 * len(extra)))
            fit(scanner, extra + replay, 1, lr / 2, cfg.seed + 200 + p, progress, "hard negatives")
        history.append({"round": "hard negatives", "n_above_threshold_per_pass": mined})
    if cfg.mode == "lora" and cfg.model.quant == "none":
        scanner.model = scanner.model.merge_and_unload()  # no adapter overhead when scoring
    scanner.model.eval()
    scanner.history = history
    scanner.info = {"domain": domain, "n_titles": len(titles), "n_train_titles": len(train),
                    "n_holdout_titles": len(held), "n_trigger_pool": len(pool),
                    "seconds": round(time.monotonic() - t0, 1), "warnings": warnings,
                    "n_params": int(sum(p.numel() for p in scanner.model.parameters()))}
    return scanner


# -- cache -----------------------------------------------------------------------------
def scanner_key(titles: Sequence[str], cfg: ScannerConfig, base_titles: Sequence[str] | None = None) -> str:
    """The cache key of a scanner: its training titles, config, (cross-fitting) the base's titles and, for a head
    on a frozen LLM, the dtype and version of its features (bf16 or fp32 by machine: `core.hardware`) and the
    checksum of the prior head it shrinks towards."""
    base = {} if base_titles is None else {"base": titles_hash(base_titles)}
    dtype = {}
    if cfg.mode == "frozen":
        prior = prior_for(cfg, titles)
        dtype = {"dtype": compute_dtype(cfg.model), "features": FEATURES_VERSION,
                 **({"prior": prior.sha256} if prior else {})}
    return fingerprint({"titles": titles_hash(titles), "cfg": cfg.to_dict(), "v": 3, **base, **dtype})


def scanner_folder(titles: Sequence[str], cfg: ScannerConfig, base_titles: Sequence[str] | None = None) -> Path:
    """Where the scanner of these titles and config is cached (named by `scanner_key`)."""
    name = cfg.model.name.replace("/", "_")
    return settings.cache_dir("scanners") / f"{name}-{scanner_key(titles, cfg, base_titles)}"


def get_scanner(titles: Sequence[str], cfg: ScannerConfig, progress: Progress | None = None, client=None,
                domain: str = "", use_cache: bool = True, base_titles: Sequence[str] | None = None
                ) -> tuple[Scanner | FrozenScanner, bool]:
    """A scanner for this domain and config: from the cache, or trained and cached (`train_scanner`'s args).

    Returns:
        `(Scanner, cached)` where `cached` says whether it came from the cache.
    """
    folder = scanner_folder(titles, cfg, base_titles)
    frozen = cfg.mode == "frozen"
    if use_cache and (folder / "meta.json").exists():
        return (load_frozen(folder, progress) if frozen else load_scanner(folder)), True
    if frozen:  # a head on the frozen LLM: small enough to cache whatever the LLM's quantization
        scanner = train_frozen(titles, cfg, progress, client, domain, base_titles)
        if use_cache:
            save_frozen(scanner, folder)
        return scanner, False
    scanner = train_scanner(titles, cfg, progress, client, domain, base_titles)
    if use_cache and cfg.model.quant == "none":  # quantized weights are rebuilt from the base each time
        save_scanner(scanner, folder)
    return scanner, False
