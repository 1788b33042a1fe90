"""Victim recommenders on top of a causal LM (DESIGN.md §2): LLaRA choice and TALLRec yes/no.

* `llara` rank mode: each candidate's score is the summed log-likelihood of its
  title (and EOS) as the answer to the LLaRA prompt. The prompt is encoded once
  per user and its KV cache reused for every candidate; users are batched.
* `llara` generate mode: greedy decoding; an answer is valid when exactly one
  candidate title is a case-insensitive substring of its first line (LLaRA's
  rule) -> ValidRatio and HR@1 = correct / valid.
* `tallrec`: P(Yes) from the first answer token, normalised over {Yes, No};
  the shared history part of the prompt is cached, only the target differs.

The same functions score clean, triggered and transferred candidate lists, so
an attack is measured with exactly the scoring that makes recommendations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .metrics import roc_auc
from .models import LoadedModel
from .progress import Progress
from .prompts import llara_prompt, tallrec_prompt
from .train import left_pad, model_parts, prompt_prefix_ids

TARGET_MARK = "\x00TARGET\x00"


@dataclass(frozen=True)
class Case:
    """One scoring task: a user's history and the candidate list, as titles (triggers already applied).

    Args:
        user (`str`): the user id.
        history (`tuple[str, ...]`): history titles, oldest first.
        candidates (`tuple[str, ...]`): candidate titles in prompt order.
        items (`tuple[int, ...]`): the candidates' item indices (for storing recommendations).
        target_pos (`int`): index of the ground truth in `candidates`.
        liked (`tuple[bool, ...]`): per history title, rating > 3 (TALLRec's preference split).
        label (`bool | None`): TALLRec label of the target (rating > 3), when known.
    """

    user: str
    history: tuple[str, ...]
    candidates: tuple[str, ...]
    items: tuple[int, ...]
    target_pos: int
    liked: tuple[bool, ...] = ()
    label: bool | None = None


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _autocast(loaded: LoadedModel):
    import torch
    dtype = loaded.autocast_dtype
    return torch.autocast(loaded.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _new_cache(decoder):
    from transformers import DynamicCache
    return DynamicCache(config=decoder.config)


def _encode_prompts(loaded: LoadedModel, prompts: Sequence[str]):
    """Left-padded prompt batch: ids, mask, positions."""
    tok = loaded.tokenizer
    return left_pad([prompt_prefix_ids(tok) + _encode(tok, p) for p in prompts], tok.pad_token_id, loaded.device)


_LOGIT_BYTES = 256 * 2**20  # logits held at once while scoring continuations: bounds memory, not results


def _pack(fed: Sequence[Sequence[Sequence[int]]], mask, pad_id: int, dtype):
    """Each prompt's continuations side by side in one row after its prompt: token ids, position ids
    (each continuation restarts right after the prompt) and a 4-D additive attention mask in which a
    continuation token sees its prompt and the earlier tokens of its own continuation only."""
    import torch
    B, P = mask.shape
    width = max(1, max(sum(len(f) for f in row) for row in fed))
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    offset = torch.zeros((B, width), dtype=torch.long)
    seg = torch.full((B, width), -1, dtype=torch.long)
    for b, row in enumerate(fed):
        at = 0
        for j, f in enumerate(row):
            ids[b, at:at + len(f)] = torch.tensor(f, dtype=torch.long)
            offset[b, at:at + len(f)] = torch.arange(len(f))
            seg[b, at:at + len(f)] = j
            at += len(f)
    idx = torch.arange(width)
    sees = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0) & (idx[None, None, :] <= idx[None, :, None])
    prompt = mask[:, None, :].bool().cpu().expand(B, width, P)
    allowed = torch.cat([prompt, sees], -1)[:, None]  # (B, 1, width, P + width)
    bias = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return ids, mask.sum(-1).cpu()[:, None] + offset, bias


def _score_batch(loaded: LoadedModel, prompts: Sequence[str], conts: Sequence[Sequence[str]],
                 add_eos: bool, next_ids: Sequence[int] | None) -> list[list]:
    """For each prompt and each continuation: summed log-prob of the continuation tokens, or (with
    `next_ids`) the log-probs of those next tokens after the continuation, as a flat list per cont.

    The prompts are encoded once; then all continuations of all prompts go through one forward pass,
    packed side by side after their prompt's KV cache (`_pack`), so the cost is one pass over the
    continuation tokens however many candidates there are.
    """
    import torch
    tok = loaded.tokenizer
    decoder, head = model_parts(loaded.model)
    ids, mask, pos = _encode_prompts(loaded, prompts)
    dev = ids.device
    seqs = [[_encode(tok, text) + ([tok.eos_token_id] if add_eos else []) for text in c] for c in conts]
    # feed a continuation's tokens when we need the distribution after them, else all but the last
    fed = [[s if next_ids is not None else s[:-1] for s in row] for row in seqs]
    results: list[list] = [[None] * len(c) for c in conts]
    with torch.no_grad(), _autocast(loaded):
        cache = _new_cache(decoder)
        out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
        last = torch.log_softmax(head(out.last_hidden_state[:, -1]).float(), -1)  # (B, V)
        feed, fpos, bias = _pack(fed, mask, tok.pad_token_id, out.last_hidden_state.dtype)
        h = decoder(input_ids=feed.to(dev), attention_mask=bias.to(dev), position_ids=fpos.to(dev),
                    cache=cache, use_cache=True).last_hidden_state
        rows_at_once = max(1, _LOGIT_BYTES // (4 * h.shape[1] * last.shape[-1]))
        for r0 in range(0, len(prompts), rows_at_once):
            logp = torch.log_softmax(head(h[r0:r0 + rows_at_once]).float(), -1)  # (rows, width, V)
            for b in range(r0, min(r0 + rows_at_once, len(prompts))):
                at = 0
                for j, (s, f) in enumerate(zip(seqs[b], fed[b])):
                    lp = logp[b - r0, at:at + len(f)]
                    if next_ids is not None:
                        dist = lp[-1] if f else last[b]
                        results[b][j] = [float(dist[i]) for i in next_ids]
                    elif s:
                        tgt = torch.tensor(s[1:], dtype=torch.long, device=dev)
                        results[b][j] = float(last[b, s[0]] + lp.gather(1, tgt[:, None]).sum())
                    else:
                        results[b][j] = 0.0
                    at += len(f)
    return results


def _batched(loaded, prompts, conts, add_eos, next_ids, batch_size, progress, message):
    out: list[list] = []
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad less
    done: dict[int, list] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        res = _score_batch(loaded, [prompts[i] for i in idx], [conts[i] for i in idx], add_eos, next_ids)
        done.update(zip(idx, res))
        if progress:
            progress.update(min(start + batch_size, len(order)), len(order), message)
    out = [done[i] for i in range(len(prompts))]
    return out


def answer_logprobs(loaded: LoadedModel, prompts: Sequence[str], answers_per_prompt: Sequence[Sequence[str]],
                    batch_size: int = 16, progress: Progress | None = None,
                    message: str = "scoring") -> list[list[float]]:
    """Summed log-probability of each answer (followed by EOS) after its prompt.

    Each prompt is encoded once; its KV cache serves all of its answers. Answers
    are the exact text that follows the prompt (LLaRA answers start with a space).

    Returns:
        `list[list[float]]`, one score per answer, in input order.
    """
    return _batched(loaded, list(prompts), [list(a) for a in answers_per_prompt], True, None, batch_size,
                    progress, message)


def next_token_logprobs(loaded: LoadedModel, prefixes: Sequence[str], suffixes_per_prefix: Sequence[Sequence[str]],
                        token_ids: Sequence[int], batch_size: int = 16, progress: Progress | None = None,
                        message: str = "scoring") -> list[list[list[float]]]:
    """Log-probabilities of `token_ids` as the next token after prefix + suffix, prefix cached once."""
    return _batched(loaded, list(prefixes), [list(s) for s in suffixes_per_prefix], False, list(token_ids),
                    batch_size, progress, message)


# -- LLaRA ----------------------------------------------------------------------------------
def llara_answer(title: str) -> str:
    return " " + title


def llara_example(history: Sequence[str], candidates: Sequence[str], answer: str, noun: str = "movie") -> tuple[str, str]:
    return llara_prompt(history, candidates, noun), llara_answer(answer)


def llara_scores(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", batch_size: int = 16,
                 progress: Progress | None = None, message: str = "llara ranking") -> list[list[float]]:
    """Rank mode: per case, the summed log-likelihood of every candidate title as the answer."""
    prompts = [llara_prompt(c.history, c.candidates, noun) for c in cases]
    answers = [[llara_answer(t) for t in c.candidates] for c in cases]
    return answer_logprobs(loaded, prompts, answers, batch_size, progress, message)


def llara_generate(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", max_new_tokens: int = 48,
                   batch_size: int = 32, progress: Progress | None = None) -> list[str]:
    """Generate mode: greedy answers (first line, EOS stripped)."""
    import torch
    tok = loaded.tokenizer
    decoder, head = model_parts(loaded.model)
    outputs: list[str] = []
    # Only the first non-blank line counts (LLaRA's rule), so a row is done at EOS or at a newline
    # that follows some text; leading blank lines are stripped from the answer, so they go on.
    pieces = [tok.decode([i]) for i in range(len(tok))]
    for start in range(0, len(cases), batch_size):
        chunk = cases[start:start + batch_size]
        ids, mask, pos = _encode_prompts(loaded, [llara_prompt(c.history, c.candidates, noun) for c in chunk])
        B = ids.shape[0]
        gen = [[] for _ in range(B)]
        started = [False] * B
        alive = torch.ones(B, dtype=torch.bool, device=ids.device)
        with torch.no_grad(), _autocast(loaded):
            cache = _new_cache(decoder)
            out = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            h, nxt = out.last_hidden_state[:, -1], mask.sum(-1)
            for _ in range(max_new_tokens):
                token = head(h).float().argmax(-1)
                for b in range(B):
                    if alive[b]:
                        t = int(token[b])
                        if t == tok.eos_token_id:
                            alive[b] = False
                            continue
                        gen[b].append(t)
                        done, started[b] = first_line_done(pieces[t], started[b])
                        if done:
                            alive[b] = False
                if not alive.any():
                    break
                mask = torch.cat([mask, alive[:, None].long()], 1)
                out = decoder(input_ids=token[:, None], attention_mask=mask, position_ids=nxt[:, None],
                              cache=cache, use_cache=True)
                h, nxt = out.last_hidden_state[:, -1], nxt + 1
        outputs += [tok.decode(g, skip_special_tokens=True).strip().split("\n")[0] for g in gen]
        if progress:
            progress.update(min(start + batch_size, len(cases)), len(cases), "llara generating")
    return outputs


def first_line_done(piece: str, started: bool) -> tuple[bool, bool]:
    """After a generated piece of text: (is the answer's first non-blank line complete, has text started)."""
    before, newline, _ = piece.partition("\n")
    return bool(newline) and (started or bool(before.strip())), started or bool(piece.strip())


def validity(answer: str, candidates: Sequence[str]) -> int | None:
    """LLaRA's rule: the index of the one candidate whose title is in the answer's first line, else None."""
    line = answer.split("\n")[0].lower()
    hits = [i for i, t in enumerate(candidates) if t.lower() in line]
    return hits[0] if len(hits) == 1 else None


def generate_metrics(answers: Sequence[str], cases: Sequence[Case]) -> dict[str, float]:
    picks = [validity(a, c.candidates) for a, c in zip(answers, cases)]
    valid = [(p, c) for p, c in zip(picks, cases) if p is not None]
    correct = sum(p == c.target_pos for p, c in valid)
    return {"valid_ratio": len(valid) / len(cases) if cases else 0.0,
            "hr@1_generate": correct / len(valid) if valid else 0.0}


# -- TALLRec ------------------------------------------------------------------------------------
def tallrec_parts(case: Case, noun: str = "movie") -> tuple[str, str]:
    """(shared prefix, per-target suffix template) of the TALLRec prompt; the target goes between."""
    liked = [t for t, ok in zip(case.history, case.liked) if ok]
    disliked = [t for t, ok in zip(case.history, case.liked) if not ok]
    full = tallrec_prompt(liked, disliked, TARGET_MARK, noun)
    prefix, suffix = full.split(TARGET_MARK)
    return prefix, suffix


def tallrec_example(case: Case, target_title: str, label: bool, noun: str = "movie"):
    prefix, suffix = tallrec_parts(case, noun)
    return [(prefix, 0.0), (target_title + suffix, 0.0), (" Yes." if label else " No.", 1.0)]


def yes_no_ids(tokenizer) -> tuple[int, int]:
    return _encode(tokenizer, " Yes.")[0], _encode(tokenizer, " No.")[0]


def tallrec_scores(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", batch_size: int = 16,
                   progress: Progress | None = None, message: str = "tallrec scoring") -> list[list[float]]:
    """P(Yes) (normalised over the Yes/No first tokens) for every candidate of every case."""
    yes, no = yes_no_ids(loaded.tokenizer)
    parts = [tallrec_parts(c, noun) for c in cases]
    suffixes = [[t + suf for t in c.candidates] for c, (_, suf) in zip(cases, parts)]
    raw = next_token_logprobs(loaded, [p for p, _ in parts], suffixes, [yes, no], batch_size, progress, message)
    return [[1.0 / (1.0 + math.exp(n - y)) for y, n in row] for row in raw]


def tallrec_auc(scores: Sequence[Sequence[float]], cases: Sequence[Case]) -> float:
    """TALLRec's AUC: P(Yes) of each test target against its rating label (rating > 3)."""
    pairs = [(s[c.target_pos], c.label) for s, c in zip(scores, cases) if c.label is not None]
    return roc_auc([p for p, _ in pairs], [bool(lab) for _, lab in pairs])
