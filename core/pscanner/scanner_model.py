"""The scanner's base model: `mini` (a byte-level BPE tokenizer and a small Llama pre-trained for seconds on the
domain's titles, cached), `tiny` or a Hugging Face model through `core.lm.models`, made trainable (full
fine-tuning for `mini`, LoRA otherwise)."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence

from core import settings
from core.config import fingerprint
from core.lm.artifacts import save_model_folder
from core.lm.models import lora_config
from core.progress import Progress

from .scanner import NO, PROMPT, YES, ScannerConfig


def titles_hash(titles: Sequence[str]) -> str:
    """A hash of a set of titles (order and repeats do not matter)."""
    h = hashlib.sha256()
    for t in sorted(set(titles)):
        h.update(t.encode("utf-8", "replace") + b"\n")
    return h.hexdigest()


def build_mini(titles: Sequence[str], seed: int, vocab_size: int = 2048, hidden: int = 128, layers: int = 2):
    """A byte-level BPE tokenizer trained on the domain's titles and a small random Llama."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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
    import torch

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
    key = fingerprint({"titles": titles_hash(titles), "seed": seed, "epochs": epochs, "v": 1, **size})
    folder = settings.cache_dir("scanner-bases") / f"mini-{key}"
    if (folder / "model.safetensors").exists():
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        return model.eval(), PreTrainedTokenizerFast.from_pretrained(folder)
    model, tokenizer = build_mini(titles, seed, hidden=hidden, layers=layers)
    pretrain_lm(model, tokenizer, titles, epochs, seed, progress=progress)
    save_model_folder(folder, model, tokenizer, "meta.json", {"kind": "mini-base"})
    return model, tokenizer


def load_base(cfg: ScannerConfig, titles: Sequence[str], progress: Progress | None = None):
    """(model, tokenizer) for the scanner's base, before fine-tuning, pre-trained on `titles` (cached)."""
    if cfg.model.name == "mini":
        return mini_lm(titles, cfg.seed, progress=progress, hidden=cfg.mini_hidden, layers=cfg.mini_layers)
    from core.lm import models  # the project's loader: tiny, HF ids, quantization

    loaded = models.load_model(cfg.model, _titles_dataset(titles),
                               progress)
    return loaded.model, loaded.tokenizer


def _titles_dataset(titles: Sequence[str]):
    """A catalog-only Dataset so the tiny base can pre-train on the domain's titles."""
    import pandas as pd

    from core.data.dataset import Dataset

    items = pd.DataFrame({"item_id": [str(i) for i in range(len(titles))], "title": list(titles), "extra": None})
    inter = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                          "ts": pd.Series(dtype="int64"), "rating": pd.Series(dtype=float)})
    return Dataset(f"catalog-{titles_hash(titles)[:8]}", items, inter)


def prepare_for_finetune(model, cfg: ScannerConfig):
    """The base made trainable: every weight for full fine-tuning, the model config's LoRA adapters otherwise."""
    if cfg.mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import get_peft_model
    return get_peft_model(model, lora_config(cfg.model, model))


