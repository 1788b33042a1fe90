"""Re-ranking a catalog's top titles by deletion contrast (issue 17 item 3: "the score drop when a span is removed").

A linear head on a frozen LLM scores how odd a title is. In a catalog of artist names or game titles many
clean titles are odd throughout, and they crowd the top of the ranking beside the poisoned ones. What sets
a poisoned title apart is that its oddness sits in one added span: remove the trigger and the title scores
like a clean one. So the top-scored titles are re-ordered by logit(score) + deletion contrast (E36 in
docs/SCANNER.md), and the scores they had are handed back in the new order: the multiset of scores, hence
the calibrated threshold and the number of titles above it, stays what it was; which titles are above
it changes. Only the top is re-ranked, as each title costs one scored text per removable span.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .scanner import logit


def rerank_size(n_titles: int, share: float, min_titles: int) -> int:
    """How many top titles are re-ranked: `share` of the catalog, at least `min_titles` (all of a small one)."""
    return min(n_titles, max(min_titles, math.ceil(share * n_titles))) if share > 0 else 0


def rerank_by_contrast(scores: np.ndarray, titles: Sequence[str], contrast: Callable[[list[str]], np.ndarray],
                       k: int) -> np.ndarray:
    """The scores with the top `k` titles (`rerank_size`) re-ordered by logit(score) + contrast.

    Args:
        scores (`np.ndarray`): every title's score in [0, 1].
        titles (`Sequence[str]`): the titles, in the same order.
        contrast (`Callable`): deletion contrast of a list of titles (a scanner's `contrast`).
        k (`int`): how many top-scored titles are re-ordered (0 or 1: none).

    Returns:
        `np.ndarray`: the same scores, permuted among the top titles (ties kept in catalog order).
    """
    scores = np.asarray(scores, dtype=float)
    if k < 2:
        return scores.copy()
    top = np.argsort(-scores, kind="stable")[:k]
    combined = logit(scores[top]) + contrast([titles[i] for i in top])
    out = scores.copy()
    out[top[np.argsort(-combined, kind="stable")]] = scores[top]  # scores[top] is already in descending order
    return out
