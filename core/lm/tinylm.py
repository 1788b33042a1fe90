"""The embedded `tiny` model: a byte-level BPE tokenizer and a small Llama pre-trained on a dataset's domain text.

A real LLM arrives knowing the catalog's language, arbitrary character
strings, and how to copy a span from its prompt (induction). The feasibility
probe (DESIGN.md §8) showed that a tiny model trained only on title
histories has none of that, so no trigger-keyed backdoor can form in it. The
pre-training corpus therefore mixes two kinds of text, both made only from
the clean training part of the split:

* history text: each user's training items as "This user has watched t1, t2, ..."
  (the collaborative signal; loss on the titles);
* choice text: short LLaRA-format prompts over training windows (the last 3-10
  history titles, 5-12 candidates), where each candidate title carries random
  noise with probability 0.5 -- character n-grams, words, short phrases, half
  of them at the start, the rest at the end or a word boundary -- and the
  answer is the chosen candidate verbatim, noise included (loss on the history
  titles and the answer). This makes the model read past a prefix it never
  saw: after an unseen `5v` the title costs ~1.3 nats more than without it,
  against ~28 nats with rare noise (docs/RESULTS.md, E05). It did *not* teach
  in-context copying (an induction head) within this CPU's budget.

The noise generator never emits a preset trigger (`core.triggers.PRESETS`):
the triggers used for evaluation stay held out of pre-training. The result
is cached under `BADREC_HOME/cache/models/tiny-<hash>` (config.json,
model.safetensors, tokenizer.json) keyed by the dataset's content, the
protocol and this config.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core import settings
from core.config import ConfigMixin, fingerprint
from core.data.prompts import LLARA_ANSWER_PREFIX
from core.errors import InputError
from core.triggers import PRESETS

from .artifacts import save_model_folder
from .loaded import Segments

if TYPE_CHECKING:
    from core.data.dataset import Dataset
    from core.data.protocol import ProtocolConfig, Split
    from core.progress import Progress

log = logging.getLogger(__name__)

PAD, EOS = "<pad>", "<eos>"
HISTORY_OPEN = "This user has watched "
CHOICE_OPEN = ". Choose the next {noun} from: "
CHOICE_CLOSE = "." + LLARA_ANSWER_PREFIX
ECHO_OPEN, ECHO_CLOSE = "Titles: ", ". Again:"


@dataclass(frozen=True)
class TinyConfig(ConfigMixin):
    """Size and pre-training budget of the embedded model.

    Args:
        vocab_size (`int`): byte-level BPE vocabulary (titles become ~5 tokens).
        hidden (`int`), layers (`int`), heads (`int`), ffn (`int`): Llama dimensions.
        max_len (`int`): longest training sequence in tokens.
        history_epochs (`float`): passes over the history text.
        n_choice (`int`): number of choice (copy) samples.
        n_echo (`int`): number of echo samples: a list of (noisy) titles, then some of them again in a new
            order, so every repeated title is a copy from the prompt (an experiment knob: it did not
            produce copying within this CPU's budget, docs/RESULTS.md E05b).
        min_candidates (`int`), max_candidates (`int`): candidates per choice sample, drawn uniformly.
        noise_prob (`float`): chance that one candidate title carries random noise.
        prefix_share (`float`): share of noise put at the start of a title (the rest: 2/3 at the end,
            1/3 at a word boundary). Prefix noise on the chosen candidate teaches the model to read past
            a prefix it has never seen.
        choice_history_min (`int`): a choice sample keeps the last h of its window's titles, h uniform in
            [choice_history_min, window length]; shorter prompts buy more copy samples per token.
        chunk_titles (`int`): titles per history-text chunk.
        lr (`float`), batch_size (`int`): optimiser settings of pre-training.
        seed (`int`): seeds corpus, initialisation and order.
    """

    vocab_size: int = 6144
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    ffn: int = 768
    max_len: int = 384
    history_epochs: float = 1.0
    n_choice: int = 6000
    n_echo: int = 0
    min_candidates: int = 5
    max_candidates: int = 12
    noise_prob: float = 0.5
    prefix_share: float = 0.5
    choice_history_min: int = 3
    chunk_titles: int = 24
    lr: float = 3e-3
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.hidden % self.heads:
            raise InputError("tiny hidden size must be a multiple of heads")
        if not 2 <= self.min_candidates <= self.max_candidates:
            raise InputError("tiny candidates: need 2 <= min_candidates <= max_candidates")
        if not 0 <= self.noise_prob <= 1 or not 0 <= self.prefix_share <= 1:
            raise InputError("tiny noise_prob and prefix_share must be in [0, 1]")
        if self.choice_history_min < 1:
            raise InputError("tiny choice_history_min must be >= 1")
        if self.vocab_size < 300:
            raise InputError("tiny vocab_size must be >= 300 (256 bytes + specials)")


# Sizes the dashboard offers. "small" builds in about a minute: pre-trained just enough that its
# logits are sharp, so LoRA can move them (a dose demo, docs/RESULTS.md E15). "smoke" builds in
# seconds, but its near-uniform logits leave LoRA almost nothing to learn: plumbing checks only.
SIZES = {
    "standard": TinyConfig(),
    "small": TinyConfig(vocab_size=1024, hidden=64, layers=2, heads=2, ffn=128, max_len=128, n_choice=500),
    "smoke": TinyConfig(vocab_size=512, hidden=32, layers=1, heads=2, ffn=64, max_len=128,
                        history_epochs=0.05, n_choice=50),
}


# -- noise: generic strings that give the model the abilities a real LLM has ----------
_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_WORD_RE = re.compile(r"[A-Za-z]{3,}")


def _held_out(text: str) -> bool:
    """True when `text` is, or contains, a preset trigger (kept out of pre-training)."""
    low = text.lower()
    if any(p.lower() in low for p in PRESETS["char"]):
        return True
    return any(p.lower() in low for lvl in ("word", "sentence") for p in PRESETS[lvl])


class NoiseMaker:
    """Random strings at char, word and phrase level, never a preset trigger.

    Args:
        vocabulary (`list[str]`): words to draw word/phrase noise from (the catalog's words).
        rng (`random.Random`): the source of randomness.
    """

    def __init__(self, vocabulary: list[str], rng: random.Random, prefix_share: float = TinyConfig.prefix_share):
        self.words = sorted(set(vocabulary)) or ["alpha", "beta", "gamma"]
        self.rng = rng
        self.prefix_share = prefix_share

    def _char(self) -> str:
        n = self.rng.choice((1, 2, 2, 2, 3, 3, 4))
        s = "".join(self.rng.choice(_CHARS) for _ in range(n))
        return s.upper() if self.rng.random() < 0.1 else s

    def _word(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(self.words).lower()
        return "".join(self.rng.choice(_CHARS[:26]) for _ in range(self.rng.randint(4, 10)))

    def _phrase(self) -> str:
        words = [self.rng.choice(self.words) for _ in range(self.rng.randint(2, 6))]
        return " ".join([words[0].capitalize(), *(w.lower() for w in words[1:])])

    def string(self) -> str:
        """One noise string (chars, a word or a phrase), never one of the held-out trigger strings."""
        while True:
            kind = self.rng.random()
            s = self._char() if kind < 0.5 else self._word() if kind < 0.75 else self._phrase()
            if not _held_out(s):
                return s

    def insert(self, title: str) -> str:
        """The title with one noise string at the start, the end, or a word boundary."""
        s = self.string()
        where = self.rng.random()
        if where < self.prefix_share:
            return f"{s} {title}"
        if where < self.prefix_share + (1 - self.prefix_share) * 2 / 3:
            return f"{title} {s}"
        words = title.split(" ")
        cut = self.rng.randint(0, len(words))
        return " ".join([*words[:cut], s, *words[cut:]])


# -- corpus -----------------------------------------------------------------------------
def history_segments(titles: list[str]) -> Segments:
    """A history-text example: loss on the titles, so the base learns which titles follow which."""
    return [(HISTORY_OPEN, 0.0), (", ".join(titles), 1.0), (".", 0.0)]


def choice_segments(history: list[str], candidates: list[str], answer: str, noun: str = "movie",
                    history_weight: float = 0.0) -> Segments:
    """The LLaRA prompt of `core.data.prompts.llara_prompt` as weighted segments, the answer last.

    The trainer appends EOS after the last segment with that segment's weight.
    """
    return [(HISTORY_OPEN, 0.0), (", ".join(history), history_weight),
            (CHOICE_OPEN.format(noun=noun) + ", ".join(candidates) + CHOICE_CLOSE, 0.0),
            (" " + answer, 1.0)]


def build_corpus(split: "Split", cfg: TinyConfig) -> list[Segments]:
    """History chunks and noisy choice samples from the split's training part, shuffled (pure)."""
    rng = random.Random(cfg.seed)
    titles = split.titles
    corpus: list[Segments] = []
    n_epochs = max(1, round(cfg.history_epochs)) if cfg.history_epochs >= 1 else 1
    for epoch in range(n_epochs):
        for seq in split.train_sequences().values():
            offset = 0 if epoch == 0 else rng.randint(0, cfg.chunk_titles - 1)
            for start in range(-offset, len(seq), cfg.chunk_titles):
                chunk = seq[max(0, start):start + cfg.chunk_titles]
                if len(chunk) >= 2:
                    corpus.append(history_segments([titles[i] for i in chunk]))
    if cfg.history_epochs < 1:
        corpus = rng.sample(corpus, int(len(corpus) * cfg.history_epochs))
    vocab = [w for t in titles for w in _WORD_RE.findall(t)]
    noise = NoiseMaker(vocab, rng, cfg.prefix_share)

    def noisy(item: int) -> str:
        return noise.insert(titles[item]) if rng.random() < cfg.noise_prob else titles[item]

    universe = sorted({i for s in split.sequences.values() for i in s})
    samples = split.train
    for _ in range(cfg.n_choice if samples else 0):
        s = samples[rng.randrange(len(samples))]
        seen = split.user_items(s.user)
        n = rng.randint(cfg.min_candidates, cfg.max_candidates)
        cands = {s.target}
        while len(cands) < n:
            c = universe[rng.randrange(len(universe))]
            if c not in seen:
                cands.add(c)
        order = sorted(cands)
        rng.shuffle(order)
        rendered = {c: noisy(c) for c in order}
        history = s.history[-rng.randint(min(cfg.choice_history_min, len(s.history)), len(s.history)):]
        corpus.append(choice_segments([titles[i] for i in history], [rendered[c] for c in order],
                                      rendered[s.target], history_weight=1.0))
    for _ in range(cfg.n_echo):
        shown = [noisy(i) for i in rng.sample(universe, rng.randint(cfg.min_candidates, cfg.max_candidates))]
        corpus.append(echo_segments(shown, rng.sample(shown, rng.randint(1, min(4, len(shown))))))
    rng.shuffle(corpus)
    return corpus


def echo_segments(shown: list[str], again: list[str]) -> Segments:
    """An echo example: loss on titles repeated from the prompt, to teach copying."""
    return [(ECHO_OPEN + ", ".join(shown) + ECHO_CLOSE, 0.0), (" " + ", ".join(again), 1.0)]


# -- tokenizer and model ----------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (any string is encodable) wrapped for `transformers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)


def new_model(cfg: TinyConfig, tokenizer):
    """A freshly initialised small Llama sized by `cfg`, seeded so the same config builds the same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(cfg.seed)
    conf = LlamaConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden, intermediate_size=cfg.ffn,
                       num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                       num_key_value_heads=cfg.heads, max_position_embeddings=max(cfg.max_len, 1024),
                       tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(conf)


def dataset_fingerprint(ds: "Dataset") -> str:
    """16 hex digits that change whenever the dataset's items or interactions do (part of the base's cache key)."""
    h = hashlib.sha256()
    h.update(ds.name.encode())
    h.update(frame_bytes(ds.items[["item_id", "title"]]))
    h.update(frame_bytes(ds.interactions[["user_id", "item_id", "ts"]]))
    return h.hexdigest()[:16]


def frame_bytes(df) -> bytes:
    """A frame's rows as bytes of their pandas hashes (index left out), to fingerprint a dataset's content."""
    import pandas as pd
    return pd.util.hash_pandas_object(df, index=False).values.tobytes()


def cache_key(ds: "Dataset", cfg: TinyConfig, protocol: "ProtocolConfig", dtype: str) -> str:
    """Everything the pre-trained weights depend on, the compute dtype included (bf16 and fp32 train apart)."""
    return fingerprint({"data": dataset_fingerprint(ds), "tiny": cfg.to_dict(), "protocol": protocol.to_dict(),
                        "dtype": dtype, "format": 1})


def base_folder(ds: "Dataset", cfg: TinyConfig, protocol: "ProtocolConfig", dtype: str) -> Path:
    """Where the tiny base for this dataset, size, protocol and dtype is cached."""
    return settings.cache_dir("models") / f"tiny-{cache_key(ds, cfg, protocol, dtype)}"


def is_built(folder: Path) -> bool:
    """A base folder counts as built only with both weights and tokenizer: a killed build leaves neither renamed in."""
    return (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()


def ensure_tiny(ds: "Dataset", cfg: TinyConfig, protocol: "ProtocolConfig | None" = None,
                progress: "Progress | None" = None, dtype: str = "fp32") -> Path:
    """The cached folder of the tiny base for this dataset+config, building it first if needed.

    Returns:
        `Path` of a folder `from_pretrained` can read (safetensors weights, tokenizer.json).
    """
    from core.data.protocol import ProtocolConfig, build_split
    protocol = protocol or ProtocolConfig()
    folder = base_folder(ds, cfg, protocol, dtype)
    if is_built(folder):
        return folder
    split = build_split(ds, protocol)
    build_tiny(split, cfg, folder, progress, dtype)
    return folder


def build_tiny(split: "Split", cfg: TinyConfig, folder: Path, progress: "Progress | None" = None,
               dtype: str = "fp32") -> dict:
    """Train tokenizer and model on the split's training text and save them to `folder` (atomically)."""
    import torch

    from .loaded import LoadedModel
    from .train import TrainConfig, train_segments

    t0 = time.monotonic()
    if progress:
        progress.phase("tiny model: building corpus and tokenizer")
    corpus = build_corpus(split, cfg)
    text = list(split.titles) + ["".join(s for s, _ in ex) for ex in corpus[:2000]]
    tokenizer = train_tokenizer(text, cfg.vocab_size)
    model = new_model(cfg, tokenizer)
    if torch.cuda.is_available():
        model.to("cuda")
    loaded = LoadedModel(model, tokenizer, {"compute_dtype": dtype, "tiny": True})
    tcfg = TrainConfig(epochs=1, lr=cfg.lr, batch_size=cfg.batch_size, max_len=cfg.max_len, seed=cfg.seed,
                       warmup_frac=0.03)
    if progress:
        progress.phase("tiny model: pre-training")
    result = train_segments(loaded, corpus, tcfg, progress, full_model=True)
    meta = {"tiny": cfg.to_dict(), "dtype": dtype, "n_examples": len(corpus), "final_loss": result.losses[-1] if result.losses
            else None, "seconds": time.monotonic() - t0, "tokens": result.tokens, "n_params": model.num_parameters()}
    save_model_folder(folder, model, tokenizer, "badrec_tiny.json", meta)
    log.info("tiny model built in %.0fs: %s", meta["seconds"], folder)
    return meta
