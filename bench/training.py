"""Training throughput: our LoRA loop (`core.lm.train.train_lm`) vs the Hugging Face `Trainer` on the same
model, data, batch size, dtype and quantization; plus the fraction of this CPU's matmul peak reached."""

from __future__ import annotations

import contextlib
import sys
import time

from core.attack.recommend import llara_answer
from core.data.prompts import llara_prompt
from core.lm.models import LoadedModel, ModelConfig, add_lora
from core.lm.train import TrainConfig, train_lm

from . import fixtures
from .machine import matmul_peak_gflops, peak_rss_mb, reset_peak_rss
from .scoring import dtypes


def examples(n: int) -> list[tuple[str, str]]:
    """LLaRA training pairs (20 candidates in the prompt) from ml-100k's validation cases."""
    _, split = fixtures.ml100k()
    out = []
    for c in split.valid[:n]:
        out.append((llara_prompt([split.titles[i] for i in c.history], [split.titles[i] for i in c.candidates]),
                    llara_answer(split.titles[c.target])))
    return out


def _lora_model(dtype: str) -> LoadedModel:
    return add_lora(fixtures.tiny_model(dtype), ModelConfig(dtype=dtype))


def _tokens(loaded: LoadedModel, pairs: list[tuple[str, str]]) -> int:
    tok = loaded.tokenizer
    return sum(len(tok(p + a, add_special_tokens=False)["input_ids"]) + 2 for p, a in pairs)


def hf_trainer(loaded: LoadedModel, pairs: list[tuple[str, str]], batch_size: int, dtype: str) -> float:
    """Seconds for one epoch of `transformers.Trainer` with the same loss (answer tokens only)."""
    import torch
    from transformers import Trainer, TrainingArguments

    from core.lm.train import prompt_prefix_ids
    tok = loaded.tokenizer
    rows = []
    for p, a in pairs:
        pi = prompt_prefix_ids(tok) + tok(p, add_special_tokens=False)["input_ids"]
        ai = tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"input_ids": pi + ai, "labels": [-100] * len(pi) + ai})

    def collate(batch):
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for b, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[b, :n] = torch.tensor(r["input_ids"])
            labels[b, :n] = torch.tensor(r["labels"])
            mask[b, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    import tempfile
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch_size,
                             num_train_epochs=1, learning_rate=1e-3, bf16=dtype == "bf16", use_cpu=True,
                             report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
                             dataloader_num_workers=0, remove_unused_columns=False, seed=0)
    trainer = Trainer(model=loaded.model, args=args, train_dataset=rows, data_collator=collate)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Trainer prints its summary; keep stdout for our JSON
        trainer.train()
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict:
    fixtures.set_threads()
    reset_peak_rss()  # this section's own peak, not an earlier section's
    n, batch = (128, 16) if quick else (384, 16)
    pairs = examples(n)
    out: dict = {"n_examples": n, "batch_size": batch}
    for dtype in dtypes():
        ours = _lora_model(dtype)
        tokens = _tokens(ours, pairs)
        train_lm(ours, pairs[:batch * 2], TrainConfig(batch_size=batch, epochs=1))  # warm-up
        ours = _lora_model(dtype)
        t0 = time.perf_counter()
        train_lm(ours, pairs, TrainConfig(batch_size=batch, epochs=1))
        ours_s = time.perf_counter() - t0
        theirs = _lora_model(dtype)
        hf_s = hf_trainer(theirs, pairs, batch, dtype)
        out[dtype] = {"tokens": tokens, "ours_s": round(ours_s, 2), "hf_trainer_s": round(hf_s, 2),
                      "tokens_per_s": round(tokens / ours_s), "hf_tokens_per_s": round(tokens / hf_s),
                      "speedup_vs_hf_trainer": round(hf_s / ours_s, 2)}
    best = max(dtypes(), key=lambda d: out[d]["tokens_per_s"])
    out["dtype"] = best
    out["tokens_per_s"] = out[best]["tokens_per_s"]
    out["speedup_vs_hf_trainer"] = out[best]["speedup_vs_hf_trainer"]
    # Roofline: LoRA training costs ~4 x params FLOPs per token (forward 2N, input-gradient backward 2N).
    model = fixtures.tiny_model(best)
    n_params = sum(p.numel() for p in model.model.parameters())
    peak = matmul_peak_gflops(best)
    out["matmul_gflops_by_dtype"] = {d: round(matmul_peak_gflops(d, n=512, repeats=3), 2) for d in ("fp32", "bf16")}
    achieved = 4 * n_params * out["tokens_per_s"] / 1e9
    out.update({"n_params": n_params, "matmul_peak_gflops": round(peak, 1), "achieved_gflops": round(achieved, 1),
                "fraction_of_matmul_peak": round(achieved / peak, 3), "peak_rss_mb": round(peak_rss_mb())})
    return out
