"""P-Scanner (DESIGN.md §4): a causal LM fine-tuned to answer "Is this title poisoned? Yes/No".

score(title) = P(Yes) normalised over {Yes, No} at the first answer position, computed in one forward
pass per batch that keeps only the last position's logits. This module holds what a trained scanner
needs: its config, scoring, spans, the threshold rule and its files. Building the base is
`core.pscanner.scanner_model`, the training data `core.pscanner.scanner_data`, training and the cache
`core.pscanner.scanner_train`.

Bases: `mini` (built here: a byte-level BPE tokenizer and a ~0.7M-parameter Llama, pre-trained for
seconds on the domain's titles, then fully fine-tuned — the fast default that reaches the throughput
target), `tiny` (the project's domain LM from `core.lm.models`, LoRA) or any Hugging Face causal LM id or
folder (LoRA, quantized through `core.lm.models` when asked).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from core.config import ConfigMixin
from core.errors import InputError
from core.lm.artifacts import save_model_folder
from core.lm.gguf_model import is_gguf_name
from core.lm.loaded import left_pad
from core.lm.models import ModelConfig
from core.lm.train import TrainConfig
from core.triggers import LEVELS, POSITIONS

from .agent import AGENT_SYMBOLS, AgentConfig

LLM_SCANNER = "smollm2-135m"  # the real pretrained LLM `auto` picks for catalogs it scans in minutes
AUTO_LLM_MAX_TITLES = 5_000  # `auto`: the LLM up to this many distinct titles, `mini` above (docs/SCANNER.md)
PROMPT = "{title}\nPoisoned?"  # short: scoring cost grows with every prompt token
YES, NO = " Yes", " No"
MAX_SCAN_CHARS = 300
# the fine-tuning the scanners were measured with (docs/SCANNER.md): AdamW with weight decay, large batches
SCANNER_TRAIN = TrainConfig(epochs=3, lr=2e-3, batch_size=64, weight_decay=0.01)
FLAT_MODEL_KEYS, FLAT_TRAIN_KEYS = ("quant", "lora_r", "lora_alpha"), ("epochs", "lr", "batch_size")


@dataclass(frozen=True)
class FrozenHeadConfig(ConfigMixin):
    """The recipe of a frozen-LLM scanner (`core.pscanner.scanner_frozen`): its own, because a linear head on fixed
    features needs fewer examples and a stronger penalty than fine-tuning (E28 in docs/RESULTS.md, tuning seeds).

    Args:
        layers (`tuple[int, ...]`): hidden layers whose mean and last-token states are features (-1 = the last).
        pos_per_title (`int`): triggered copies of each training title (Yes); hard_per_title (`int`): natural
            variants of it (No). Each is one forward pass, so they set the scan's time.
        l2 (`float`): L2 penalty of the logistic head on standardised features.
        probes_per_title (`int`): an adversarial round probes at most this many fresh triggers per title it can
            put them on (0 = `ScannerConfig.agent_per_round` whatever the catalog's size). It bounds only small
            catalogs: a fold of 40 titles probes 120 of the agent's 300, a catalog above ~125 titles all 300.
        prior_max_titles (`int`): a head trained on at most this many distinct titles shrinks towards the shipped
            prior head of its model (`core.pscanner.linear_head`) rather than towards zero (0 = never). Together
            with 3 probes per title: 50-title catalogs 26 → 30 of 44 poisoned titles found on the tuning seeds,
            ROC-AUC 0.973 → 0.993, and 1.6x faster (E61, E62 in docs/SCANNER.md).
        example_titles (`int`): at most this many of the catalog's titles get triggered copies and natural variants
            (the same titles in every fold: `core.pscanner.scanner_frozen.example_hosts`); the others train as
            themselves (No), which costs nothing, as the scan featurizes every title anyway (0 = all titles). E63 in
            docs/SCANNER.md: 600 with `ScanConfig.rerank` 0.05 kept the tuning seeds' quality and the clean
            catalogs' flagged shares, and takes the 1,664-title scan from 293 to 191 s on an AVX2 CPU; catalogs
            of up to 600 titles are unchanged.
    """

    layers: tuple[int, ...] = (12, 20, -1)
    pos_per_title: int = 1
    hard_per_title: int = 1
    l2: float = 0.3
    probes_per_title: int = 3
    prior_max_titles: int = 100
    example_titles: int = 600

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers or self.pos_per_title < 1 or self.hard_per_title < 0 or self.l2 < 0 \
                or self.probes_per_title < 0 or self.prior_max_titles < 0 or self.example_titles < 0:
            raise InputError("frozen scanner: layers must not be empty, pos_per_title >= 1, hard_per_title >= 0, "
                             "l2 >= 0, probes_per_title >= 0, prior_max_titles >= 0, example_titles >= 0")

    def with_examples(self, n_titles: int) -> int:
        """How many of `n_titles` titles get triggered copies and variants (`example_titles`, 0 = all)."""
        return min(n_titles, self.example_titles) if self.example_titles else n_titles

    def round_probes(self, agent_per_round: int, n_titles: int) -> int:
        """Fresh triggers an adversarial round probes on `n_titles` titles."""
        return min(agent_per_round, self.probes_per_title * n_titles) if self.probes_per_title else agent_per_round


@dataclass(frozen=True)
class ScannerConfig(ConfigMixin):
    """How to build and train a scanner.

    Args:
        model (`ModelConfig`): the base and its fine-tuning, as a victim's: `name` is `"mini"` (built here,
            fast), `"smollm2-135m"` (a real pretrained LLM, frozen, with a linear head), `"auto"` (the LLM for
            catalogs up to `AUTO_LLM_MAX_TITLES` titles without a trusted reference, `mini` above and with one:
            `resolve_model`), `"tiny"` (the project's domain LM) or a Hugging Face causal LM id / local folder;
            `quant` (not for `mini`), `lora_*` (LoRA bases) and `dtype` as for a victim.
        train (`TrainConfig`): `epochs` (whole passes over the first round's examples), `lr`, `batch_size`,
            `weight_decay` and `grad_clip` of the fine-tuning (titles are short and the schedule warms up over a
            fixed 20 steps, so `max_len` and `warmup_frac` do not apply; `seed` below seeds everything).
        mini_hidden (`int`): width of the `mini` Llama (a multiple of 32; heads of 32). mini_layers (`int`): its depth.
        finetune (`Literal["auto", "lora", "full", "frozen"]`): `auto` = full for `mini`, `frozen` for the
            real LLMs fetched for a CPU (`smollm2-135m`, a `.gguf` file: frozen features and a linear head,
            `core.pscanner.scanner_frozen`), LoRA otherwise (`tiny`, Hugging Face ids).
        frozen (`FrozenHeadConfig`): the frozen-LLM scanner's recipe (features, examples, the head's penalty).
        min_steps (`int`): small catalogs get more passes so the first round takes at least this many steps.
        n_triggers (`int`): synthetic triggers in the first round.
        pos_per_title (`int`): triggered copies of each training title (Yes).
        hard_per_title (`int`): hard-negative variants of each training title (No).
        rounds (`int`): adversarial rounds after the first training (0 = none).
        agent_per_round (`int`): triggers the agent proposes per round.
        miss_eps (`float`): stop the rounds once the miss rate of fresh triggers is below this.
        target_fpr (`float`): the threshold flags at most this share of held-out clean titles.
        holdout_frac (`float`): share of titles held out of training for the threshold.
        max_titles (`int`): at most this many domain titles are used for training (sampled).
        families (`tuple[str, ...]`): trigger levels to train on (leave one out for LOLO evaluation).
        positions (`tuple[str, ...]`): trigger positions to train on.
        exclude (`tuple[str, ...]`): trigger strings the agent must never produce (held-out test triggers).
        use_llm_agent (`bool`): ask the configured OpenAI-compatible endpoint for triggers too.
        agent_symbols (`str`): the punctuation the agent's char triggers mix in (`AgentConfig.symbols`).
        consolidate (`bool`): finish with one pass that also teaches the held-out titles (threshold kept).
        vary_positions (`bool`): place each use of a trigger at a freshly drawn position from `positions`.
        self_clean (`bool`): drop training titles the half-trained scanner flags from the No set — for
            titles that may hold poison (the scanned catalog itself); off for a trusted reference catalog,
            whose odd but clean titles (`M*A*S*H`, `MURDER and murder`) must be learned as clean.
        mine_passes (`int`): for a trusted reference (`self_clean` off), up to this many extra passes over
            its titles still scored at or above the threshold after training, as No (0 = off).
        seed (`int`): seeds data, agent, initialisation and order.
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="mini"))
    train: TrainConfig = field(default_factory=lambda: SCANNER_TRAIN)
    mini_hidden: int = 128
    mini_layers: int = 2
    finetune: Literal["auto", "lora", "full", "frozen"] = "auto"
    frozen: FrozenHeadConfig = field(default_factory=FrozenHeadConfig)
    min_steps: int = 40
    n_triggers: int = 600
    pos_per_title: int = 3
    hard_per_title: int = 1
    rounds: int = 2
    agent_per_round: int = 300
    miss_eps: float = 0.02
    target_fpr: float = 0.01
    holdout_frac: float = 0.2
    max_titles: int = 4000
    families: tuple[str, ...] = LEVELS
    positions: tuple[str, ...] = POSITIONS
    exclude: tuple[str, ...] = ()
    use_llm_agent: bool = False
    agent_symbols: str = AGENT_SYMBOLS
    consolidate: bool = True
    vary_positions: bool = True
    self_clean: bool = True
    mine_passes: int = 3
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.model, ModelConfig) or not isinstance(self.train, TrainConfig) \
                or not isinstance(self.frozen, FrozenHeadConfig):
            raise InputError("a scanner's model, train and frozen must be a ModelConfig, TrainConfig and "
                             "FrozenHeadConfig")
        name = self.model.name
        if self.mini_hidden < 32 or self.mini_hidden % 32 or not 1 <= self.mini_layers <= 12:
            raise InputError("mini_hidden must be a multiple of 32 and mini_layers between 1 and 12")
        if self.model.quant != "none" and name in ("mini", "auto"):
            raise InputError("the mini scanner is not quantized; use --scanner-model tiny or an HF model")
        if self.finetune not in ("auto", "lora", "full", "frozen"):
            raise InputError("scanner finetune must be auto, lora, full or frozen")
        if self.finetune == "frozen" and name in ("mini", "tiny", "auto"):
            raise InputError(f"a frozen scanner needs a pretrained LLM (e.g. smollm2-135m), not {name}")
        if self.train.epochs < 1 or self.train.epochs != int(self.train.epochs):
            raise InputError("scanner epochs must be a whole number >= 1")
        if not 0 < self.target_fpr < 0.5:
            raise InputError(f"target_fpr={self.target_fpr} must be between 0 and 0.5")
        if not 0.05 <= self.holdout_frac <= 0.5:
            raise InputError("holdout_frac must be between 0.05 and 0.5")
        if self.rounds < 0 or self.n_triggers < 3 or self.pos_per_title < 1 or self.hard_per_title < 0 \
                or self.mine_passes < 0:
            raise InputError("rounds >= 0, n_triggers >= 3, pos_per_title >= 1, hard_per_title >= 0, mine_passes >= 0")
        AgentConfig(n=self.n_triggers, families=self.families, positions=self.positions)

    @classmethod
    def from_dict(cls, data):
        """As `ConfigMixin.from_dict`, and a config recorded before `model` and `train` nested (a string `model`
        beside flat `quant`, `lora_*`, `epochs`, `lr`, `batch_size`) loads as the same config."""
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            data = dict(data)
            model = {"name": data.pop("model"), **{k: data.pop(k) for k in FLAT_MODEL_KEYS if k in data}}
            train = {**SCANNER_TRAIN.to_dict(), **{k: data.pop(k) for k in FLAT_TRAIN_KEYS if k in data}}
            data.update(model=model, train=train)
        return super().from_dict(data)

    @property
    def mode(self) -> str:
        """How the base is trained: `auto` means full for the small `mini`, a frozen LLM with a linear head for
        the real LLMs fetched for a CPU, LoRA otherwise."""
        if self.finetune != "auto":
            return self.finetune
        if self.model.name == "auto":
            return "auto"
        return "full" if self.model.name == "mini" else "frozen" if is_gguf_name(self.model.name) else "lora"

    def agent(self, n: int, seed: int) -> AgentConfig:
        """What the augmentation agent is asked for: `n` triggers from `seed`, in this scanner's families and
        positions, never the excluded strings (round 0 and each adversarial round of either scanner)."""
        return AgentConfig(n=n, seed=seed, families=self.families, positions=self.positions,
                           exclude=frozenset(self.exclude), use_llm=self.use_llm_agent,
                           symbols=self.agent_symbols)


def resolve_model(cfg: ScannerConfig, n_titles: int, reference: bool = False) -> ScannerConfig:
    """`auto` made concrete for a scan of `n_titles` distinct titles: the frozen LLM where no trusted reference
    exists and the scan takes minutes on a CPU (~20 texts/s here); `mini` for bulk catalogs and whenever a
    trusted reference trains the scanner (fine-tuned on the reference it learns the catalog's own odd-but-clean
    titles as clean: on `scan --run` F1 0.91 against the frozen LLM's 0.42, docs/SCANNER.md). Others unchanged."""
    if cfg.model.name != "auto":
        return cfg
    name = LLM_SCANNER if n_titles <= AUTO_LLM_MAX_TITLES and not reference else "mini"
    return replace(cfg, model=replace(cfg.model, name=name))


# -- the trained scanner ---------------------------------------------------------------
def _answer_ids(tokenizer) -> tuple[int, int]:
    yes = tokenizer.encode(YES, add_special_tokens=False)
    no = tokenizer.encode(NO, add_special_tokens=False)
    if not yes or not no or yes[0] == no[0]:
        raise InputError("the scanner's tokenizer cannot tell ' Yes' from ' No' by their first token")
    return yes[0], no[0]


class SpansFromScore:
    """What every trained scanner (fine-tuned or frozen) explains the same way: spans from its own `score`."""

    def spans(self, titles: Sequence[str], max_words: int = 8) -> list[str | None]:
        """The suspicious span of each title (`deletion_spans` on this scanner's scores)."""
        return deletion_spans(self.score, titles, max_words)

    def contrast(self, titles: Sequence[str], max_words: int = 8) -> np.ndarray:
        """How far removing its worst span lowers each title's score (`deletion_contrast`)."""
        return deletion_contrast(self.score, titles, max_words)


@dataclass
class Scanner(SpansFromScore):
    """A trained scanner: call `score(titles)` for P(poisoned) and `spans(titles)` for the suspicious part.

    Args:
        model: the causal LM (LoRA merged where possible), in eval mode.
        tokenizer: its tokenizer.
        cfg (`ScannerConfig`): how it was built.
        threshold (`float`): flag when score >= threshold (set for `cfg.target_fpr`).
        history (`list[dict]`): one entry per training round.
        info (`dict`): training facts (domain, sizes, seconds, validation metrics).
    """

    model: object
    tokenizer: object
    cfg: ScannerConfig
    threshold: float = 0.5
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.yes_id, self.no_id = _answer_ids(self.tokenizer)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def _token_rows(self, titles: Sequence[str]) -> list[list[int]]:
        """Prompt token ids per title; the Rust tokenizer's batch call without offsets when present."""
        bos = self.tokenizer.bos_token or ""
        texts = [bos + PROMPT.format(title=t[:MAX_SCAN_CHARS]) for t in titles]
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        backend.no_padding()  # a padded or truncating HF call leaves its settings on the backend
        backend.no_truncation()
        return [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]

    def _pad(self, rows: Sequence[Sequence[int]]):
        """Left-padded ids, mask and positions on the model's device."""
        return left_pad(rows, self.tokenizer.pad_token_id, next(self.model.parameters()).device)

    def _last_logits(self, titles: Sequence[str]):
        """Full-vocabulary logits at the last position (training's loss needs them all)."""
        return self._forward_last(self._pad(self._token_rows(titles)))

    def _forward_last(self, batch):
        ids, mask, pos = batch
        return self.model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1).logits[:, -1, :]

    def _pair_logits(self, rows: Sequence[Sequence[int]]):
        """(batch, 2) logits of Yes and No at the last position of tokenized prompts."""
        batch = self._pad(rows)
        if _last_position_ok(self.model):
            return last_position_logits(self.model, *batch, [self.yes_id, self.no_id])
        return self._forward_last(batch)[:, [self.yes_id, self.no_id]]

    def score(self, titles: Sequence[str], batch_size: int = 128) -> np.ndarray:
        """P(Yes) / (P(Yes) + P(No)) for each title, in input order; bounded memory per batch.

        Repeated titles are scored once, and batches go by token count so they carry little padding
        (by character count they carried ~38 % padding on a realistic catalog).
        """
        import torch

        index: dict[str, int] = {}
        inverse = np.fromiter((index.setdefault(t, len(index)) for t in titles), dtype=np.int64)
        unique = list(index)
        if not unique:
            return np.zeros(0)
        rows = self._token_rows(unique)
        order = np.argsort([len(r) for r in rows], kind="stable")
        out = np.empty(len(unique))
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(unique), batch_size):
                idx = order[i:i + batch_size]
                pair = self._pair_logits([rows[j] for j in idx])
                out[idx] = torch.softmax(pair.float(), dim=-1)[:, 0].cpu().numpy()
        return out[inverse]

def deletion_spans(score, titles: Sequence[str], max_words: int = 8) -> list[str | None]:
    """The shortest contiguous word span whose removal lowers the score nearly as much as the best
    removal does (>= 90% of the largest drop; None when no removal lowers it).

    The largest drop alone favours spans that also take a neighbouring year or word along.
    All titles' deletion variants are scored in one batched call of `score`.
    """
    out: list[str | None] = []
    for cs, own, rest in _deletion_scores(score, titles, max_words):
        drops = own - rest
        if not cs or drops.max() <= 0:
            out.append(None)
            continue
        good = [k for k in range(len(cs)) if drops[k] >= 0.9 * drops.max()]
        out.append(cs[min(good, key=lambda k: (len(cs[k][0]), -drops[k]))][0])
    return out


def deletion_contrast(score, titles: Sequence[str], max_words: int = 8) -> np.ndarray:
    """logit(score) of each title minus the lowest logit(score) left when one span is removed (>= 0).

    A trigger is an added span: removing it drops the title to a clean title's score, while a title that is
    odd throughout (an artist's name, a game's code) stays odd whichever span goes. 0 for a one-word title.
    """
    return np.array([max(0.0, float(logit(own) - logit(rest.min()))) if cs else 0.0
                     for cs, own, rest in _deletion_scores(score, titles, max_words)])


def logit(p) -> np.ndarray:
    """log(p / (1 - p)) of scores clipped to [1e-6, 1 - 1e-6], so 0 and 1 stay finite."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _deletion_scores(score, titles: Sequence[str], max_words: int):
    """(span candidates, own score, scores without each span) per title, all texts scored in one call."""
    cands = [_span_candidates(t, max_words) for t in titles]
    scores = score([x for title, cs in zip(titles, cands) for x in [title] + [rest for _, rest in cs]])
    start = 0
    for cs in cands:
        yield cs, scores[start], scores[start + 1:start + 1 + len(cs)]
        start += 1 + len(cs)


def _span_candidates(title: str, max_words: int) -> list[tuple[str, str]]:
    """(span, title without it) for every contiguous run of up to `max_words` words, never the whole title."""
    words = [w for w in re.split(r"(\s+|_)", title) if w and not w.isspace() and w != "_"]
    return [(" ".join(words[i:j]), " ".join(words[:i] + words[j:]))
            for i in range(len(words)) for j in range(i + 1, min(len(words), i + max_words) + 1)
            if j - i < len(words)]


def _last_position_ok(model) -> bool:
    """The fast path below knows the Llama decoder layout; anything else takes the model's own forward."""
    inner = getattr(model, "model", None)
    return (getattr(model.config, "model_type", "") == "llama" and type(model).__name__ == "LlamaForCausalLM"
            and inner is not None and hasattr(inner, "rotary_emb") and not model.training)


def last_position_logits(model, ids, mask, pos, rows: Sequence[int]):
    """Logits of `rows` at the last position of a left-padded batch, for a Llama causal LM.

    The model's forward computes every layer at every position; a classifier that reads one
    position needs the last layer only there (its keys and values still cover all positions).
    Skipping the rest of that layer is ~1.6x less work for the 2-layer scanner; the logits equal
    the full forward's up to float rounding (tests/test_scanner.py checks it).
    """
    import torch
    from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

    inner = model.model
    h = inner.embed_tokens(ids)
    cos, sin = inner.rotary_emb(h, pos)
    n = ids.shape[1]
    keys = mask.bool()
    causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
    # attend to earlier real tokens; a padding position sees itself so no row is all -inf
    attn_mask = (causal[None] & keys[:, None, :]) | torch.eye(n, dtype=torch.bool, device=ids.device)[None]
    attn_mask = attn_mask[:, None]
    for layer in inner.layers[:-1]:
        h = layer(h, attention_mask=attn_mask, position_ids=pos, position_embeddings=(cos, sin))
    layer = inner.layers[-1]
    attn = layer.self_attn
    x = layer.input_layernorm(h)
    b, d = ids.shape[0], attn.head_dim
    q = attn.q_proj(x[:, -1:]).view(b, 1, -1, d).transpose(1, 2)
    k = attn.k_proj(x).view(b, n, -1, d).transpose(1, 2)
    v = attn.v_proj(x).view(b, n, -1, d).transpose(1, 2)
    cos, sin = cos[:, None], sin[:, None]
    q = q * cos[:, :, -1:] + rotate_half(q) * sin[:, :, -1:]
    k = k * cos + rotate_half(k) * sin
    k, v = repeat_kv(k, attn.num_key_value_groups), repeat_kv(v, attn.num_key_value_groups)
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :],
                                                         scale=attn.scaling)
    h = h[:, -1:] + attn.o_proj(a.transpose(1, 2).reshape(b, 1, -1))
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    h = inner.norm(h)[:, 0]
    return h @ model.lm_head.weight[list(rows)].T


def calibrate_threshold(clean_scores: np.ndarray, target_fpr: float) -> float:
    """The smallest threshold t with share(clean >= t) <= target_fpr (items flag at score >= t)."""
    s = np.sort(np.asarray(clean_scores, dtype=float))
    if not len(s):
        return 0.5
    k = int(math.floor(target_fpr * len(s)))  # at most k clean titles may lie above t
    return float(np.nextafter(s[len(s) - 1 - k], np.inf))



# -- files -----------------------------------------------------------------------------
def save_scanner(scanner: Scanner, folder: Path) -> None:
    """Weights, tokenizer and meta (config, threshold, rounds) saved atomically: safetensors and JSON, no pickle."""
    meta = {"config": scanner.cfg.to_dict(), "threshold": scanner.threshold, "history": scanner.history,
            "info": scanner.info}
    save_model_folder(folder, scanner.model, scanner.tokenizer, "meta.json", meta)


def load_scanner(folder: Path) -> Scanner:
    """A cached scanner; only safetensors are read, no remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = json.loads((folder / "meta.json").read_text())
    cfg = ScannerConfig.from_dict(meta["config"])
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return Scanner(model.eval(), tokenizer, cfg, meta["threshold"], meta["history"], meta["info"])
