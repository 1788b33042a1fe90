"""Re-ranking a catalog's top titles by deletion contrast (issue 17 item 3: "the score drop when a span is removed").

A linear head on a frozen LLM scores how odd a title is. In a catalog of artist names or game titles many
clean titles are odd throughout, and they crowd the top of the ranking beside the poisoned ones. What sets
a poisoned title apart is that its oddness sits in one added span: remove the trigger and the title scores
like a clean one. So the top-scored titles are re-ordered by logit(score) + deletion contrast (E36 in
docs/SCANNER.md), and the scores they had are handed back in the new order: the multiset of scores, hence
the calibrated threshold and the number of titles above it, stays what it was; which titles are above
it changes. Only the top is re-ranked, as each title costs one scored text per removable span.

Whether re-ranking helps depends on the catalog (E36: it lifted artist names, it cost game titles, whose
numbers and codes are removable spans too), and the analyst has no labels to tell. A scan can check it on
the catalog itself (`check_rerank`, `ScanConfig.rerank_probes`; off by default, E41: it chose wrong on the
held-out triggers): fresh agent triggers on a sample of its own titles are ranked among the catalog with and
without the re-ranking, and it is kept only where they rank better.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .agent import AgentConfig, offline_triggers
from .scanner import logit
from .scanner_frozen import triggered

PROBE_SEED = 7_919  # offsets the probes' agent seed from the scanner's, so their triggers are fresh


def rerank_size(n_titles: int, share: float, min_titles: int) -> int:
    """How many top titles are re-ranked: `share` of the catalog, at least `min_titles` (all of a small one)."""
    return min(n_titles, max(min_titles, math.ceil(share * n_titles))) if share > 0 else 0


def top_titles(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the `k` top-scored titles, best first (ties in catalog order)."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")[:k]


def reorder_top(scores: np.ndarray, top: np.ndarray, top_contrast: np.ndarray) -> np.ndarray:
    """The scores with the `top` titles re-ordered by logit(score) + contrast, the scores themselves kept."""
    scores = np.asarray(scores, dtype=float)
    out = scores.copy()
    if len(top) < 2:
        return out
    combined = logit(scores[top]) + top_contrast
    out[top[np.argsort(-combined, kind="stable")]] = np.sort(scores[top])[::-1]
    return out


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
    if k < 2:
        return np.asarray(scores, dtype=float).copy()
    top = top_titles(scores, k)
    return reorder_top(scores, top, contrast([titles[i] for i in top]))


def probe_texts(titles: Sequence[str], agent: AgentConfig, exclude: set[str]) -> tuple[list[str], list[str]]:
    """`agent.n` catalog titles with a fresh agent trigger each (families in turn): `(texts, hosts)`.

    Ask with the scanner's agent config at its own seed (`ScannerConfig.agent(n, PROBE_SEED + seed)`: its
    families, positions and excluded strings) and `exclude` the scanner's pool, so the scanner never trained
    on a probe's trigger; hosts are a sample of the catalog seeded by the same seed.
    """
    unique = sorted(set(titles))
    hosts = random.Random(f"rerank-probes:{agent.seed}").sample(unique, min(agent.n, len(unique)))
    triggers = offline_triggers(replace(agent, n=len(hosts)), exclude={t.lower() for t in exclude})
    pairs = [(e.title, h) for i, (t, h) in enumerate(zip(triggers, hosts)) if (e := triggered(t, h, seed=i))]
    return [t for t, _ in pairs], [h for _, h in pairs]


@dataclass(frozen=True)
class RerankCheck:
    """How fresh synthetic triggers on the catalog's own titles rank among its titles, without and with re-ranking.

    Args:
        keep (`bool`): re-rank this catalog: the probes rank higher among its titles on average with it
            (`auc_with > auc_without`). The mean rank, not the recall at the cut, decides: on the tuning seeds
            (E41) it told the catalogs the re-ranking helps from the one it hurts with 30 probes already, where
            the recall at the cut needed 120.
        n_probes (`int`): triggered copies of catalog titles ranked.
        cut (`int`): catalog titles allowed above a probe for it to count as found (target FPR x catalog size).
        recall_without, recall_with (`float`): share of probes found at the cut.
        auc_without, auc_with (`float`): mean share of catalog titles ranked below a probe (its ROC-AUC
            against the catalog, which may hold a few poisoned titles).
    """

    keep: bool
    n_probes: int
    cut: int
    recall_without: float
    recall_with: float
    auc_without: float
    auc_with: float


def check_rerank(scores: np.ndarray, top: np.ndarray, top_contrast: np.ndarray, probe_scores: np.ndarray,
                 probe_contrast: Callable[[np.ndarray], np.ndarray], target_fpr: float) -> RerankCheck:
    """Rank each probe among the catalog's titles as the scan would, with and without `reorder_top`.

    A probe scoring at least the lowest of the `top` titles joins the re-ranked block (ranked by logit(score)
    + its contrast among the top titles'); one below it keeps its place, under the whole block either way.

    Args:
        scores (`np.ndarray`): the catalog's scores; top (`np.ndarray`): its re-ranked titles (`top_titles`);
        top_contrast (`np.ndarray`): their deletion contrasts.
        probe_scores (`np.ndarray`): the probes' scores (`probe_texts`, each by its host's scanner).
        probe_contrast (`Callable`): deletion contrasts of the probes at the given indices (only those in the block
            need one).
        target_fpr (`float`): the cut is this share of the catalog (at least one title).
    """
    scores, probe_scores = np.asarray(scores, dtype=float), np.asarray(probe_scores, dtype=float)
    n = len(scores)
    ranked = np.sort(scores)
    above_without = n - np.searchsorted(ranked, probe_scores, side="right")
    above_with = above_without.copy()
    entering = np.flatnonzero(probe_scores >= scores[top].min()) if len(top) >= 2 else np.zeros(0, int)
    if len(entering):
        block = np.sort(logit(scores[top]) + top_contrast)
        mine = logit(probe_scores[entering]) + probe_contrast(entering)
        above_with[entering] = len(block) - np.searchsorted(block, mine, side="right")
    cut = max(1, int(target_fpr * n))
    rw, rv = float(np.mean(above_without < cut)), float(np.mean(above_with < cut))
    aw, av = 1 - float(np.mean(above_without)) / n, 1 - float(np.mean(above_with)) / n
    return RerankCheck(keep=av > aw, n_probes=len(probe_scores), cut=cut,
                       recall_without=rw, recall_with=rv, auc_without=aw, auc_with=av)
