"""Metric definitions shared by every evaluation (DESIGN.md §2-§4).

Ranking metrics use *expected* tie-breaking: when the target ties with other
candidates, it is credited with its expected value under a uniformly random
order of the tied group. Constant scores therefore give exactly 1/n for HR@1,
the random baseline's definition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile: two-sided 95 % intervals


def _rank_range(scores: Sequence[float], target: int) -> tuple[int, int]:
    s = np.asarray(scores, dtype=float)
    t = s[target]
    greater = int(np.sum(s > t))
    ties = int(np.sum(s == t)) - 1
    return greater, ties


def hit_at_k(scores: Sequence[float], target: int, k: int) -> float:
    """P(target in top k) with ties broken uniformly at random."""
    greater, ties = _rank_range(scores, target)
    return float(min(max((k - greater) / (ties + 1), 0.0), 1.0))


def expected_rank(scores: Sequence[float], target: int) -> float:
    """The target's rank (1 = first) averaged over the orders of its tied group, as `hit_at_k` breaks ties."""
    greater, ties = _rank_range(scores, target)
    return greater + 1 + ties / 2


def ndcg_at_k(scores: Sequence[float], target: int, k: int) -> float:
    """NDCG@k of the target, averaged over the ranks it could take among tied scores (ties are not luck)."""
    greater, ties = _rank_range(scores, target)
    ranks = range(greater + 1, greater + ties + 2)
    return float(np.mean([1.0 / math.log2(r + 1) if r <= k else 0.0 for r in ranks]))


def ranking_metrics(score_lists: Sequence[Sequence[float]], targets: Sequence[int]) -> dict[str, float]:
    """HR@1, HR@5, HR@10, NDCG@5, NDCG@10 averaged over test cases."""
    if not len(targets):
        return {}
    out = {}
    for k in (1, 5, 10):
        out[f"hr@{k}"] = float(np.mean([hit_at_k(s, t, k) for s, t in zip(score_lists, targets)]))
    for k in (5, 10):
        out[f"ndcg@{k}"] = float(np.mean([ndcg_at_k(s, t, k) for s, t in zip(score_lists, targets)]))
    return out


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties count one half); NaN if one class is absent."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((_midranks(s)[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _midranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of `s`, tied values sharing the mean of their ranks."""
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # where each run of equal values starts
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(s)] - 1
    ranks = np.empty(len(s), dtype=float)
    ranks[order] = ((starts + ends) / 2.0 + 1.0)[np.cumsum(first) - 1]
    return ranks


def auc_delong(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """The ROC-AUC and its standard error by DeLong's variance of the placements; NaN with fewer than 2 of
    either class. Independent AUCs (a suite's seeds) combine by their variances."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < 2 or n_neg < 2:
        return float("nan"), float("nan")
    ranks = _midranks(s)
    below = (ranks[y] - _midranks(s[y])) / n_neg  # each positive: share of negatives it outranks (ties 1/2)
    above = 1.0 - (ranks[~y] - _midranks(s[~y])) / n_pos  # each negative: share of positives above it
    return float(below.mean()), math.sqrt(below.var(ddof=1) / n_pos + above.var(ddof=1) / n_neg)


def auc_interval(scores: Sequence[float], labels: Sequence[bool], z: float = Z95) -> tuple[float, float]:
    """95 % interval of the ROC-AUC: DeLong's standard error (`auc_delong`), on the logit scale.

    A held-out suite puts ~20 poisoned titles among 1,500, so its AUC moves by ~0.003 with one title's rank and
    its interval is a few hundredths wide: that is what tells whether 0.977 misses a target of 0.98. The logit
    scale keeps the interval inside (0, 1) near 1, where detection AUCs live. A perfect (or perfectly wrong)
    ranking has DeLong variance 0 and gets the point itself; NaN with fewer than 2 of either class.
    """
    auc, se = auc_delong(scores, labels)
    if math.isnan(auc) or auc in (0.0, 1.0):
        return auc, auc
    centre, half = math.log(auc / (1 - auc)), z * se / (auc * (1 - auc))
    return 1 / (1 + math.exp(-(centre - half))), 1 / (1 + math.exp(-(centre + half)))


def detection_metrics(flagged: Sequence[bool], labels: Sequence[bool],
                      scores: Sequence[float] | None = None) -> dict[str, float]:
    """Precision, recall, F1, false-positive rate (and ROC-AUC when scores are given)."""
    f = np.asarray(flagged, dtype=bool)
    y = np.asarray(labels, dtype=bool)
    tp, fp = int(np.sum(f & y)), int(np.sum(f & ~y))
    fn, tn = int(np.sum(~f & y)), int(np.sum(~f & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out = {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0,
           "tp": tp, "fp": fp, "fn": fn, "tn": tn}
    if scores is not None:
        out["auc"] = roc_auc(scores, labels)
    return out


def wilson_interval(hits: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a rate from its per-case hits (0/1, or tie-expected fractions).

    Unlike mean ± 1.96·se it stays inside [0, 1] and keeps a width at 0 and 1, where attack rates live:
    an ASR of 0.95 on 200 test users is 0.91-0.97, which is what a target of 0.90 is compared with.
    """
    n = len(hits)
    if not n:
        return float("nan"), float("nan")
    p = float(np.mean(hits))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """95 % interval of a mean over test cases (normal approximation): for a mean rank, which is not a rate."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = z * float(v.std(ddof=1)) / math.sqrt(len(v))
    return float(v.mean()) - half, float(v.mean()) + half


def paired_difference_interval(before: Sequence[float], after: Sequence[float],
                               z: float = Z95) -> tuple[float, float]:
    """95 % interval of mean(after − before) over the same cases (normal approximation on the differences).

    The clean and the poisoned model answer the same test users, so their difference (ΔHR@1, or an attack rate
    over its base rate) is far less noisy than two independent rates would make it look.
    """
    return mean_interval(np.asarray(after, dtype=float) - np.asarray(before, dtype=float), z)


def rate_intervals(clean: dict[str, Sequence[float]], poisoned: dict[str, Sequence[float]],
                   interval=wilson_interval) -> dict[str, dict]:
    """95 % intervals of each rate of both models (HR@1, ASR ...: per-case hits keyed by metric), and of
    poisoned − clean on the same cases: what "ASR ≥ 0.90" or "|ΔHR@1| ≤ 0.03" is read against.
    `interval=mean_interval` does the same for per-case values that are not hits (mean ranks).

    Returns:
        `dict`: {"clean": {metric: [low, high]}, "poisoned": {...}, "poisoned_minus_clean": {...}}, rounded to 4.
    """
    def r(interval: tuple[float, float]) -> list[float]:
        return [round(interval[0], 4), round(interval[1], 4)]

    return {"clean": {k: r(interval(v)) for k, v in clean.items()},
            "poisoned": {k: r(interval(v)) for k, v in poisoned.items()},
            "poisoned_minus_clean": {k: r(paired_difference_interval(clean[k], v))
                                     for k, v in poisoned.items() if k in clean}}
