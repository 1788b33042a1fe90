"""LLaRA rank-mode scoring: the prompt's KV cache reused for 20 candidates vs naive prompt+candidate batches."""

from __future__ import annotations

import time

import numpy as np

from core.attack.recommend import Case, llara_answer, llara_generate, llara_scores, score_variants
from core.data.prompts import llara_prompt

from . import fixtures


def naive_scores(loaded, cases, batch_size: int = 20) -> list[list[float]]:
    """The reference: each (prompt + candidate) sequence is run in full, one row per candidate."""
    import torch
    import torch.nn.functional as F

    from core.lm.train import prompt_prefix_ids
    tok = loaded.tokenizer
    rows, owners = [], []
    for ci, c in enumerate(cases):
        prompt = prompt_prefix_ids(tok) + tok(llara_prompt(c.history, c.candidates), add_special_tokens=False)["input_ids"]
        for t in c.candidates:
            ans = tok(llara_answer(t), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append((prompt, ans))
            owners.append(ci)
    out = [[] for _ in cases]
    dtype = loaded.autocast_dtype
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(p) + len(a) for p, a in chunk)
            ids = torch.full((len(chunk), width), tok.pad_token_id)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, (p, a) in enumerate(chunk):
                seq = p + a
                ids[b, :len(seq)] = torch.tensor(seq)
                mask[b, :len(seq)] = 1
            logp = F.log_softmax(loaded.model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            for b, (p, a) in enumerate(chunk):
                pos = torch.arange(len(p) - 1, len(p) + len(a) - 1)
                out[owners[start + b]].append(float(logp[b, pos, torch.tensor(a)].sum()))
    return out


def dtypes() -> tuple[str, ...]:
    """bf16 only where the hardware runs it natively; emulated bf16 is ~80x slower on AVX2-only CPUs."""
    from core.hardware import native_bf16
    return ("fp32", "bf16") if native_bf16() else ("fp32",)


def _time(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def variants(model, cases: list[Case]) -> dict:
    """An attack's evaluation: each user's case as 4 variants differing in one candidate slot (as clean,
    trigger, no-trigger and transfer do), ranked, plus greedy answers for the clean one. Scored variant by
    variant with a separate generate pass, vs together (`score_variants`: shared prompt prefixes, answers
    from the rank pass's prompt cache)."""
    def renamed(slot: int, mark: str) -> list[Case]:
        return [Case(c.user, c.history, tuple(mark + t if i == slot else t for i, t in enumerate(c.candidates)),
                     c.items, c.target_pos) for c in cases]
    named = {"clean": cases, "trigger": renamed(7, "5v "), "no_trigger": renamed(7, "The "),
             "transfer": renamed(3, "5v ")}
    (sep, answers), sep_s = _time(lambda: ({k: llara_scores(model, v) for k, v in named.items()},
                                           llara_generate(model, cases, max_new_tokens=16)))
    (joint, joint_answers), joint_s = _time(lambda: score_variants(model, "llara", named, generate="clean",
                                                                   max_new_tokens=16))
    diff = max(float(np.max(np.abs(np.array(sep[k]) - np.array(joint[k])))) for k in named)
    return {"n_users": len(cases), "separate_s": round(sep_s, 2), "together_s": round(joint_s, 2),
            "speedup_together": round(sep_s / joint_s, 2), "max_abs_score_diff": round(diff, 5),
            "same_answers": answers == joint_answers}


def run(quick: bool = False) -> dict:
    fixtures.set_threads()
    n_cases = 16 if quick else 96
    cases = fixtures.cases(n_cases)
    n_items = sum(len(c.candidates) for c in cases)
    out: dict = {"n_cases": n_cases, "n_candidates": n_items}
    for dtype in dtypes():
        model = fixtures.tiny_model(dtype)
        llara_scores(model, cases[:4])  # warm-up
        kv, kv_s = _time(lambda: llara_scores(model, cases, batch_size=16))
        naive, naive_s = _time(lambda: naive_scores(model, cases))
        one, one_s = _time(lambda: llara_scores(model, cases, batch_size=1))
        diff = float(np.max(np.abs(np.array(kv) - np.array(naive))))
        out[dtype] = {"kv_items_per_s": round(n_items / kv_s, 1), "naive_items_per_s": round(n_items / naive_s, 1),
                      "kv_unbatched_items_per_s": round(n_items / one_s, 1),
                      "speedup_kv_vs_naive": round(naive_s / kv_s, 2),
                      "speedup_batching_users": round(one_s / kv_s, 2), "max_abs_score_diff": round(diff, 5)}
    out["variants"] = variants(fixtures.tiny_model("fp32"), cases)
    best = max(dtypes(), key=lambda d: out[d]["kv_items_per_s"])
    out["items_per_s"] = out[best]["kv_items_per_s"]
    out["speedup_kv_vs_naive"] = out[best]["speedup_kv_vs_naive"]
    out["best_dtype"] = best
    if not quick:  # ~100 s here; the ratios above do not need it
        model = fixtures.tiny_model(best)
        all_cases = fixtures.cases()
        _, full_s = _time(lambda: llara_scores(model, all_cases, batch_size=16))
        out["all_943_users_s"] = round(full_s, 1)
    return out
