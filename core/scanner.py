"""P-Scanner (DESIGN.md §4): a causal LM fine-tuned to answer "Is this title poisoned? Yes/No".

score(title) = P(Yes) normalised over {Yes, No} at the first answer position,
computed in one forward pass per batch that keeps only the last position's
logits. Training data: the domain's titles (No), the same titles with the
augmentation agent's synthetic triggers (Yes), and hard negatives — natural
title variants such as sequels, years, subtitles, foreign articles, numbers
(No). Iterative adversarial rounds add the synthetic triggers the scanner
still misses. The threshold is set for a target false-positive rate on
held-out clean titles.

Bases: `mini` (built here: a byte-level BPE tokenizer and a ~0.7M-parameter
Llama, pre-trained for seconds on the domain's titles, then fully
fine-tuned — the fast default that reaches the throughput target), `tiny`
(the project's domain LM from `core.models`, LoRA) or any Hugging Face causal
LM id or folder (LoRA, quantized through `core.models` when asked).
Trained scanners are cached per domain and config as safetensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from . import settings
from .agent import AgentConfig, SyntheticTrigger, propose
from .errors import InputError
from .hardware import unpack_4bit
from .progress import Progress
from .lm import left_pad
from .triggers import LEVELS, POSITIONS

log = logging.getLogger(__name__)

PROMPT = "{title}\nPoisoned?"  # short: scoring cost grows with every prompt token
YES, NO = " Yes", " No"
MAX_SCAN_CHARS = 300


@dataclass(frozen=True)
class ScannerConfig:
    """How to build and train a scanner.

    Args:
        model (`str`): `"mini"` (built here, fast), `"tiny"` (the project's domain LM) or a Hugging Face
            causal LM id / local folder.
        mini_hidden (`int`): width of the `mini` Llama (a multiple of 32; heads of 32). mini_layers (`int`): its depth.
        quant (`Literal["none", "8bit", "4bit"]`): quantize the base like the victim (not for `mini`).
        finetune (`Literal["auto", "lora", "full"]`): `auto` = full for `mini`, LoRA otherwise.
        lora_r (`int`): LoRA rank. lora_alpha (`int`): LoRA scale.
        epochs (`int`): passes over the first round's examples.
        min_steps (`int`): small catalogs get more passes so the first round takes at least this many steps.
        lr (`float`): learning rate (AdamW).
        batch_size (`int`): training batch size.
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
        consolidate (`bool`): finish with one pass that also teaches the held-out titles (threshold kept).
        vary_positions (`bool`): place each use of a trigger at a freshly drawn position from `positions`.
        self_clean (`bool`): drop training titles the half-trained scanner flags from the No set — for
            titles that may hold poison (the scanned catalog itself); off for a trusted reference catalog,
            whose odd but clean titles (`M*A*S*H`, `MURDER and murder`) must be learned as clean.
        mine_passes (`int`): for a trusted reference (`self_clean` off), up to this many extra passes over
            its titles still scored at or above the threshold after training, as No (0 = off).
        seed (`int`): seeds data, agent, initialisation and order.
    """

    model: str = "mini"
    mini_hidden: int = 128
    mini_layers: int = 2
    quant: Literal["none", "8bit", "4bit"] = "none"
    finetune: Literal["auto", "lora", "full"] = "auto"
    lora_r: int = 16
    lora_alpha: int = 32
    epochs: int = 3
    min_steps: int = 40
    lr: float = 2e-3
    batch_size: int = 64
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
    consolidate: bool = True
    vary_positions: bool = True
    self_clean: bool = True
    mine_passes: int = 3
    seed: int = 0

    def __post_init__(self):
        if not self.model.strip():
            raise InputError("scanner model is empty; use mini, tiny or a Hugging Face id/folder")
        if self.quant not in ("none", "8bit", "4bit"):
            raise InputError("scanner quant must be none, 8bit or 4bit")
        if self.mini_hidden < 32 or self.mini_hidden % 32 or not 1 <= self.mini_layers <= 12:
            raise InputError("mini_hidden must be a multiple of 32 and mini_layers between 1 and 12")
        if self.quant != "none" and self.model == "mini":
            raise InputError("the mini scanner is not quantized; use --scanner-model tiny or an HF model")
        if self.finetune not in ("auto", "lora", "full"):
            raise InputError("scanner finetune must be auto, lora or full")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InputError("scanner epochs and batch_size must be >= 1 and lr > 0")
        if not 0 < self.target_fpr < 0.5:
            raise InputError(f"target_fpr={self.target_fpr} must be between 0 and 0.5")
        if not 0.05 <= self.holdout_frac <= 0.5:
            raise InputError("holdout_frac must be between 0.05 and 0.5")
        if self.rounds < 0 or self.n_triggers < 3 or self.pos_per_title < 1 or self.hard_per_title < 0 \
                or self.mine_passes < 0:
            raise InputError("rounds >= 0, n_triggers >= 3, pos_per_title >= 1, hard_per_title >= 0, mine_passes >= 0")
        AgentConfig(n=self.n_triggers, families=self.families, positions=self.positions)

    @property
    def mode(self) -> str:
        return ("full" if self.model == "mini" else "lora") if self.finetune == "auto" else self.finetune

    def to_dict(self) -> dict:
        return asdict(self)


# -- hard negatives ------------------------------------------------------------------
_YEAR_END = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLES_PREFIX = ("La ", "Le ", "Les ", "Die ", "Der ", "Das ", "El ", "Il ", "Lo ", "L'", "O ", "Os ")
_ARTICLES_SUFFIX = (", The", ", A", ", La", ", Le", ", Les", ", Il", ", Die", ", El")
_SEQUELS = (" 2", " II", " III", " 3", " Part II", " Part 2", ": Part One", " IV", " Returns", " 2: The Sequel")
_NUMBER_WORDS = ("2000", "101", "3", "1", "12", "1941", "007", "7", "9 1/2", "24")


def _insert_before_year(title: str, text: str) -> str:
    m = _YEAR_END.search(title)
    return f"{title[:m.start()]}{text}{title[m.start():]}" if m else f"{title}{text}"


def hard_negative(title: str, rng: random.Random, vocab: Sequence[str]) -> str:
    """A natural variant of a title that is not poisoned: a sequel, a year, a subtitle, an article,
    a number or an alternative title in parentheses, made of words from the domain's own titles."""
    kind = rng.choice(("sequel", "year", "subtitle", "article", "number", "aka"))
    words = [rng.choice(vocab) for _ in range(rng.randint(1, 4))] if vocab else ["Night"]
    if kind == "sequel":
        return _insert_before_year(title, rng.choice(_SEQUELS))
    if kind == "year":
        year = f"({rng.randint(1920, 2025)})"
        m = _YEAR_END.search(title)
        return f"{title[:m.start()]} {year}" if m else f"{title} {year}"
    if kind == "subtitle":
        return _insert_before_year(title, ": " + " ".join(w.capitalize() for w in words))
    if kind == "article":
        if rng.random() < 0.5:
            return rng.choice(_ARTICLES_PREFIX) + title
        return _insert_before_year(title, rng.choice(_ARTICLES_SUFFIX))
    if kind == "number":
        parts = title.split(" ")
        cut = rng.randint(0, len(parts))
        return " ".join([*parts[:cut], rng.choice(_NUMBER_WORDS), *parts[cut:]])
    return _insert_before_year(title, " (" + " ".join(words) + ")")


def title_vocab(titles: Sequence[str]) -> list[str]:
    """Words of the domain's titles (letters only, 3+ chars) for hard negatives."""
    words = {w for t in titles for w in re.findall(r"[A-Za-z][a-z]{2,}", t)}
    return sorted(words)


# -- examples ----------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One training or probe example: the text scored and its label (True = poisoned)."""

    title: str
    label: bool
    kind: str  # clean, triggered, hard


def triggered_examples(titles: Sequence[str], triggers: Sequence[SyntheticTrigger], per_title: int,
                       rng: random.Random, positions: Sequence[str] = ()) -> list[Example]:
    """`per_title` triggered copies of each title; with `positions`, every use of a trigger string
    draws its own position, so each string is seen at the start, the end and inside titles."""
    out = []
    for t in titles:
        for _ in range(per_title):
            trig = triggers[rng.randrange(len(triggers))]
            if positions:
                trig = trig.placed(rng.choice(positions), rng)
            try:
                out.append(Example(trig.render(t, seed=rng.randrange(1 << 30))[:MAX_SCAN_CHARS], True, trig.family))
            except InputError:
                continue
    return out


def negative_examples(titles: Sequence[str], hard_per_title: int, vocab: Sequence[str],
                      rng: random.Random) -> list[Example]:
    out = [Example(t, False, "clean") for t in titles]
    for t in titles:
        out += [Example(hard_negative(t, rng, vocab)[:MAX_SCAN_CHARS], False, "hard") for _ in range(hard_per_title)]
    return out


# -- models ------------------------------------------------------------------------
def _torch():
    import torch

    return torch


def build_mini(titles: Sequence[str], seed: int, vocab_size: int = 2048, hidden: int = 128, layers: int = 2):
    """A byte-level BPE tokenizer trained on the domain's titles and a small random Llama."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch = _torch()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = list(titles) + [PROMPT.format(title="") + YES, PROMPT.format(title="") + NO] * 20
    tok.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                        eos_token="<eos>")
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=3 * hidden,
                         num_hidden_layers=layers, num_attention_heads=hidden // 32,
                         num_key_value_heads=hidden // 32, max_position_embeddings=256, tie_word_embeddings=True,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config), tokenizer


def pretrain_lm(model, tokenizer, titles: Sequence[str], epochs: int, seed: int, lr: float = 3e-3,
                batch_size: int = 64, progress: Progress | None = None) -> float:
    """Next-token pre-training on the domain's titles (seconds for `mini`); returns the last loss."""
    torch = _torch()
    rng = random.Random(seed)
    texts = list(titles)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * math.ceil(len(texts) / batch_size)
    model.train()
    loss_val, step = float("nan"), 0
    for _ in range(epochs):
        rng.shuffle(texts)
        for i in range(0, len(texts), batch_size):
            enc = tokenizer([tokenizer.bos_token + t + tokenizer.eos_token for t in texts[i:i + batch_size]],
                            return_tensors="pt", padding=True, truncation=True, max_length=96)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            loss = model(**enc, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loss_val = loss.item()
            if progress:
                progress.update(step, steps, f"pre-training the mini LM (loss {loss_val:.2f})")
    model.eval()
    return loss_val


def mini_lm(titles: Sequence[str], seed: int = 0, epochs: int = 4, progress: Progress | None = None,
            hidden: int = 128, layers: int = 2):
    """The `mini` base: tokenizer + Llama pre-trained on these titles; cached as safetensors."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    size = {} if (hidden, layers) == (128, 2) else {"hidden": hidden, "layers": layers}  # old keys stay valid
    key = _hash({"titles": _titles_hash(titles), "seed": seed, "epochs": epochs, "v": 1, **size})
    folder = settings.cache_dir("scanner-bases") / f"mini-{key}"
    if (folder / "model.safetensors").exists():
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        return model.eval(), PreTrainedTokenizerFast.from_pretrained(folder)
    model, tokenizer = build_mini(titles, seed, hidden=hidden, layers=layers)
    pretrain_lm(model, tokenizer, titles, epochs, seed, progress=progress)
    _save_folder(folder, model, tokenizer, {"kind": "mini-base"})
    return model, tokenizer


def load_base(cfg: ScannerConfig, titles: Sequence[str], progress: Progress | None = None):
    """(model, tokenizer) for the scanner's base, before fine-tuning, pre-trained on `titles` (cached)."""
    if cfg.model == "mini":
        return mini_lm(titles, cfg.seed, progress=progress, hidden=cfg.mini_hidden, layers=cfg.mini_layers)
    from . import models  # the project's loader: tiny, HF ids, quantization (helper A's module)

    loaded = models.load_model(models.ModelConfig(name=cfg.model, quant=cfg.quant), _titles_dataset(titles),
                               progress)
    return loaded.model, loaded.tokenizer


def _titles_dataset(titles: Sequence[str]):
    """A catalog-only Dataset so the tiny base can pre-train on the domain's titles."""
    import pandas as pd

    from .data import Dataset

    items = pd.DataFrame({"item_id": [str(i) for i in range(len(titles))], "title": list(titles), "extra": None})
    inter = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                          "ts": pd.Series(dtype="int64"), "rating": pd.Series(dtype=float)})
    return Dataset(f"catalog-{_titles_hash(titles)[:8]}", items, inter)


def _answer_ids(tokenizer) -> tuple[int, int]:
    yes = tokenizer.encode(YES, add_special_tokens=False)
    no = tokenizer.encode(NO, add_special_tokens=False)
    if not yes or not no or yes[0] == no[0]:
        raise InputError("the scanner's tokenizer cannot tell ' Yes' from ' No' by their first token")
    return yes[0], no[0]


# -- the trained scanner ---------------------------------------------------------------
@dataclass
class Scanner:
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
        torch = _torch()
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

    def spans(self, titles: Sequence[str], max_words: int = 8) -> list[str | None]:
        """The shortest contiguous word span whose removal lowers the score nearly as much as the best
        removal does (>= 90% of the largest drop; None when no removal lowers it).

        The largest drop alone favours spans that also take a neighbouring year or word along.
        All titles' deletion variants are scored in one batched call.
        """
        cands = [_span_candidates(t, max_words) for t in titles]
        flat = [x for title, cs in zip(titles, cands) for x in [title] + [rest for _, rest in cs]]
        scores = self.score(flat)
        out: list[str | None] = []
        start = 0
        for cs in cands:
            own, rest = scores[start], scores[start + 1:start + 1 + len(cs)]
            start += 1 + len(cs)
            drops = own - rest
            if not cs or drops.max() <= 0:
                out.append(None)
                continue
            good = [k for k in range(len(cs)) if drops[k] >= 0.9 * drops.max()]
            out.append(cs[min(good, key=lambda k: (len(cs[k][0]), -drops[k]))][0])
        return out

    def flag(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        return scores >= (self.threshold if threshold is None else threshold)


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
    torch = _torch()
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


# -- training ------------------------------------------------------------------------
def _prepare_for_finetune(model, cfg: ScannerConfig):
    if cfg.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def fit(scanner: Scanner, examples: Sequence[Example], epochs: int, lr: float, seed: int,
        progress: Progress | None = None, phase: str = "training the scanner") -> float:
    """Cross-entropy on the first answer token over the whole vocabulary; returns the mean last-epoch loss."""
    torch = _torch()
    rng = random.Random(seed)
    data = list(examples)
    bs = scanner.cfg.batch_size
    params = [p for p in scanner.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
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
            torch.nn.utils.clip_grad_norm_(params, 1.0)
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
    torch = _torch()
    t0 = time.monotonic()
    titles = sorted({t for t in titles if t and t.strip()})
    if len(titles) < 20:
        raise InputError(f"a scanner needs at least 20 distinct titles to train on; got {len(titles)}")
    rng = random.Random(f"scanner:{cfg.seed}")
    if len(titles) > cfg.max_titles:
        titles = rng.sample(titles, cfg.max_titles)
    shuffled = titles[:]
    rng.shuffle(shuffled)
    n_hold = max(10, int(len(shuffled) * cfg.holdout_frac))
    held, train = shuffled[:n_hold], shuffled[n_hold:]
    vocab = title_vocab(titles)
    torch.manual_seed(cfg.seed)

    model, tokenizer = load_base(cfg, titles if base_titles is None else base_titles, progress)
    model = _prepare_for_finetune(model, cfg)
    scanner = Scanner(model, tokenizer, cfg)
    agent = AgentConfig(n=cfg.n_triggers, seed=cfg.seed, families=cfg.families, positions=cfg.positions,
                        exclude=frozenset(cfg.exclude), use_llm=cfg.use_llm_agent)
    proposal = propose(agent, client)
    warnings = list(proposal.warnings)
    pool = list(proposal.triggers)
    used = {t.text.lower() for t in pool}
    places = cfg.positions if cfg.vary_positions else ()
    examples = triggered_examples(train, pool, cfg.pos_per_title, rng, places) + \
        negative_examples(train, cfg.hard_per_title, vocab, rng)
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / math.ceil(len(examples) / cfg.batch_size)))
    loss = fit(scanner, examples, 1, cfg.lr, cfg.seed, progress)
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
        loss = fit(scanner, examples, epochs - 1, cfg.lr, cfg.seed + 1, progress)
    scanner.threshold = calibrate_threshold(scanner.score(held), cfg.target_fpr)
    history = [{"round": 0, "n_triggers": len(pool), "n_examples": len(examples), "loss": loss,
                "n_suspects_dropped": len(suspects), "threshold": scanner.threshold,
                "seconds": round(time.monotonic() - t0, 1)}]
    for r in range(1, cfg.rounds + 1):
        t_round = time.monotonic()
        prop = propose(AgentConfig(n=cfg.agent_per_round, seed=cfg.seed * 1000 + r, families=cfg.families,
                                   positions=cfg.positions, exclude=frozenset(cfg.exclude),
                                   use_llm=cfg.use_llm_agent), client, exclude=used)
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
        loss = fit(scanner, new + replay, 2, cfg.lr / 2, cfg.seed + r, progress, f"round {r}")
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
        fit(scanner, extra + replay, 1, cfg.lr / 2, cfg.seed + 99, progress, "consolidation")
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
            fit(scanner, extra + replay, 1, cfg.lr / 2, cfg.seed + 200 + p, progress, "hard negatives")
        history.append({"round": "hard negatives", "n_above_threshold_per_pass": mined})
    if cfg.mode == "lora" and cfg.quant == "none":
        scanner.model = scanner.model.merge_and_unload()  # no adapter overhead when scoring
    scanner.model.eval()
    scanner.history = history
    scanner.info = {"domain": domain, "n_titles": len(titles), "n_train_titles": len(train),
                    "n_holdout_titles": len(held), "n_trigger_pool": len(pool),
                    "seconds": round(time.monotonic() - t0, 1), "warnings": warnings,
                    "n_params": int(sum(p.numel() for p in scanner.model.parameters()))}
    return scanner


# -- cache -----------------------------------------------------------------------------
def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _titles_hash(titles: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in sorted(set(titles)):
        h.update(t.encode("utf-8", "replace") + b"\n")
    return h.hexdigest()


def scanner_key(titles: Sequence[str], cfg: ScannerConfig, base_titles: Sequence[str] | None = None) -> str:
    base = {} if base_titles is None else {"base": _titles_hash(base_titles)}  # old keys stay valid
    return _hash({"titles": _titles_hash(titles), "cfg": cfg.to_dict(), "v": 2, **base})


def _save_folder(folder: Path, model, tokenizer, meta: dict) -> None:
    """Write model (safetensors), tokenizer and meta atomically: a staging folder renamed at the end."""
    staging = folder.with_name(folder.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def save_scanner(scanner: Scanner, folder: Path) -> None:
    meta = {"config": scanner.cfg.to_dict(), "threshold": scanner.threshold, "history": scanner.history,
            "info": scanner.info}
    _save_folder(folder, scanner.model, scanner.tokenizer, meta)


def load_scanner(folder: Path) -> Scanner:
    """A cached scanner; only safetensors are read, no remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = json.loads((folder / "meta.json").read_text())
    cfg_dict = meta["config"]
    cfg = ScannerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()})
    model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return Scanner(model.eval(), tokenizer, cfg, meta["threshold"], meta["history"], meta["info"])


def get_scanner(titles: Sequence[str], cfg: ScannerConfig, progress: Progress | None = None, client=None,
                domain: str = "", use_cache: bool = True, base_titles: Sequence[str] | None = None
                ) -> tuple[Scanner, bool]:
    """A scanner for this domain and config: from the cache, or trained and cached (`train_scanner`'s args).

    Returns:
        `(Scanner, cached)` where `cached` says whether it came from the cache.
    """
    key = scanner_key(titles, cfg, base_titles)
    folder = settings.cache_dir("scanners") / f"{cfg.model.replace('/', '_')}-{key}"
    if use_cache and (folder / "meta.json").exists():
        return load_scanner(folder), True
    scanner = train_scanner(titles, cfg, progress, client, domain, base_titles)
    if use_cache and cfg.quant == "none":  # quantized weights are rebuilt from the base each time
        save_scanner(scanner, folder)
    return scanner, False
