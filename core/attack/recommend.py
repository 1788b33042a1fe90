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

from core.data.prompts import llara_prompt, tallrec_prompt
from core.lm.lmscore import Row, encode, run_rows, score_together
from core.lm.models import LoadedModel
from core.metrics import roc_auc
from core.progress import Progress

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


# -- LLaRA ----------------------------------------------------------------------------------
def llara_answer(title: str) -> str:
    """The answer LLaRA is trained and scored on: the chosen title after a space."""
    return " " + title


def llara_example(history: Sequence[str], candidates: Sequence[str], answer: str, noun: str = "movie") -> tuple[str, str]:
    """One LLaRA training example: the prompt and the answer to learn."""
    return llara_prompt(history, candidates, noun), llara_answer(answer)


def _llara_row(case: Case, noun: str, generate: bool = False) -> Row:
    return Row(llara_prompt(case.history, case.candidates, noun), tuple(llara_answer(t) for t in case.candidates),
               case.user, generate)


def llara_scores(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", batch_size: int = 16,
                 progress: Progress | None = None, message: str = "llara ranking") -> list[list[float]]:
    """Rank mode: per case, the summed log-likelihood of every candidate title as the answer."""
    return score_variants(loaded, "llara", {"cases": cases}, noun, batch_size=batch_size, progress=progress,
                          message=message)[0]["cases"]


def llara_generate(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", max_new_tokens: int = 48,
                   batch_size: int = 16, progress: Progress | None = None) -> list[str]:
    """Generate mode: greedy answers (first line, EOS stripped)."""
    rows = [Row(llara_prompt(c.history, c.candidates, noun), (), c.user, True) for c in cases]
    return run_rows(loaded, rows, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                    message="llara generating")[1]


def score_variants(loaded: LoadedModel, victim: str, variants: dict[str, Sequence[Case]], noun: str = "movie",
                   generate: str | None = None, max_new_tokens: int = 48, batch_size: int = 16,
                   progress: Progress | None = None,
                   message: str = "scoring") -> tuple[dict[str, list[list[float]]], list[str] | None]:
    """Several variants of the same users' cases (clean, triggered, ...) scored together.

    A user's variants differ in one candidate slot, so their prompts share the history and the
    candidates before it: batched together, that common prefix is encoded once (`core.lm.lmscore`). Each
    score equals what `llara_scores` / `tallrec_scores` give for its variant alone (up to float rounding).

    Args:
        victim (`str`): "llara" (scores = log-likelihoods) or "tallrec" (scores = P(Yes)).
        generate (`str`, *optional*): a variant whose LLaRA greedy answers are decoded too.
        batch_size (`int`): users per batch, all their variants together (greedy decoding of one variant
            gains from the larger batch; measured in docs/RESULTS.md, E20).

    Returns:
        `(scores per variant, answers of the generate variant or None)`.
    """
    llara = victim == "llara"
    rows = _variant_rows(victim, variants, noun, generate)
    raw, answers = run_rows(loaded, rows, add_eos=llara, next_ids=None if llara else yes_no_ids(loaded.tokenizer),
                            max_new_tokens=max_new_tokens if llara else 0, batch_size=batch_size * len(variants),
                            progress=progress, message=message)
    picked = [a or "" for a in _split(variants, answers)[generate]] if llara and generate else None
    return _split(variants, raw if llara else _p_yes(raw)), picked


def score_variants_together(models: Sequence[LoadedModel], victim: str, variants: dict[str, Sequence[Case]],
                            noun: str = "movie", batch_size: int = 16, progress: Progress | None = None,
                            message: str = "scoring") -> list[dict[str, list[list[float]]]]:
    """`score_variants` for several models at once (the clean and the poisoned victim): the blocks they
    share run once (`core.lm.lmscore.score_together`); each model's scores are what `score_variants` gives
    it alone. No generate mode: greedy answers differ per model, so they cannot share a pass.

    Returns:
        `list[dict]`: per model, the scores per variant.
    """
    llara = victim == "llara"
    raw = score_together(models, _variant_rows(victim, variants, noun), add_eos=llara,
                         next_ids=None if llara else yes_no_ids(models[0].tokenizer),
                         batch_size=batch_size * len(variants), progress=progress, message=message)
    return [_split(variants, r if llara else _p_yes(r)) for r in raw]


def _variant_rows(victim: str, variants: dict[str, Sequence[Case]], noun: str, generate: str | None = None) -> list[Row]:
    """Every variant's cases as rows, variant after variant; a user's rows form one group (shared prefix)."""
    if victim == "llara":
        return [_llara_row(c, noun, name == generate) for name, cases in variants.items() for c in cases]
    return [_tallrec_row(c, noun) for cases in variants.values() for c in cases]


def _split(variants: dict[str, Sequence[Case]], values: list) -> dict[str, list]:
    """Per-row values (in `_variant_rows` order) split back per variant."""
    out, at = {}, 0
    for name, cases in variants.items():
        out[name] = values[at:at + len(cases)]
        at += len(cases)
    return out


def validity(answer: str, candidates: Sequence[str]) -> int | None:
    """LLaRA's rule: the index of the one candidate whose title is in the answer's first line, else None."""
    line = answer.split("\n")[0].lower()
    hits = [i for i, t in enumerate(candidates) if t.lower() in line]
    return hits[0] if len(hits) == 1 else None


def generate_metrics(answers: Sequence[str], cases: Sequence[Case]) -> dict[str, float]:
    """LLaRA's generate-mode metrics: share of valid answers and HR@1 among them."""
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
    """One TALLRec training example as weighted segments: loss only on the Yes/No answer."""
    prefix, suffix = tallrec_parts(case, noun)
    return [(prefix, 0.0), (target_title + suffix, 0.0), (" Yes." if label else " No.", 1.0)]


def yes_no_ids(tokenizer) -> tuple[int, int]:
    """The first token ids of ` Yes.` and ` No.`: TALLRec's score compares their logits."""
    return encode(tokenizer, " Yes.")[0], encode(tokenizer, " No.")[0]


def _tallrec_row(case: Case, noun: str) -> Row:
    prefix, suffix = tallrec_parts(case, noun)
    return Row(prefix, tuple(t + suffix for t in case.candidates), case.user)


def _p_yes(raw: list[list]) -> list[list[float]]:
    return [[1.0 / (1.0 + math.exp(n - y)) for y, n in row] for row in raw]


def tallrec_scores(loaded: LoadedModel, cases: Sequence[Case], noun: str = "movie", batch_size: int = 16,
                   progress: Progress | None = None, message: str = "tallrec scoring") -> list[list[float]]:
    """P(Yes) (normalised over the Yes/No first tokens) for every candidate of every case."""
    return score_variants(loaded, "tallrec", {"cases": cases}, noun, batch_size=batch_size, progress=progress,
                          message=message)[0]["cases"]


def tallrec_auc(scores: Sequence[Sequence[float]], cases: Sequence[Case]) -> float:
    """TALLRec's AUC: P(Yes) of each test target against its rating label (rating > 3)."""
    pairs = [(s[c.target_pos], c.label) for s, c in zip(scores, cases) if c.label is not None]
    return roc_auc([p for p, _ in pairs], [bool(lab) for _, lab in pairs])
