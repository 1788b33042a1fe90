"""Cross-fitted scanning of a catalog that has no trusted reference (issue 17).

A scanner trained on the catalog it scans learns the catalog's poisoned titles as "No". Here the
catalog's distinct titles are split into K seeded folds; fold k is scored by a scanner that trained on
the other folds only, so no title is ever scored by a model that saw it as clean. All folds share one
pre-trained base (tokenizer + LM on every title: unsupervised, label-free), so only the fine-tuning
is repeated. The threshold is calibrated on the cross-fitted scores of the catalog itself
(`calibrate_catalog`): they are scores of titles the scorer never saw, like those of a new clean title.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from core.errors import InputError
from core.progress import Progress

from .scanner import Scanner, ScannerConfig, logit
from .scanner_train import get_scanner

CALIBRATION_SAMPLE = 20_000  # cross-fitted scores the threshold is fitted on (a sample on huge catalogs)


@dataclass(frozen=True)
class Calibration:
    """How the threshold of a cross-fitted scan was set, and the false-positive rate it implies.

    Args:
        threshold (`float`): flag at score >= threshold.
        target_fpr (`float`): the FPR asked for.
        expected_fpr (`float`): share of clean titles expected at or above the threshold (tail model).
        tail_threshold (`float`): the threshold the tail model alone gives for `target_fpr`.
        floor (`float`): the decision floor (P(Yes) >= 0.5): the threshold is never below it.
        share_above (`float`): share of the scanned catalog's titles at or above the threshold (an upper
            bound of the FPR: it includes any poisoned titles).
        n_scores (`int`): cross-fitted scores the fit used.
        method (`str`): what was fitted.
    """

    threshold: float
    target_fpr: float
    expected_fpr: float
    tail_threshold: float
    floor: float
    share_above: float
    n_scores: int
    method: str = "exponential tail fitted to the cross-fitted logits between their 70th and 90th percentiles"


def calibrate_catalog(scores: np.ndarray, target_fpr: float, floor: float = 0.5, low: float = 0.70,
                      high: float = 0.90, max_set_aside: float = 0.0) -> Calibration:
    """A threshold for `target_fpr` from cross-fitted scores of a catalog that may hold a few poisoned titles.

    An empirical (1 - target_fpr) quantile would sit among the poisoned titles (2-3 % of a poisoned
    catalog lie above the clean 99th percentile). The body of the distribution is barely moved by them: the
    logit tail between the `low` and `high` quantiles is fitted as exponential (anchors lower than 0.95 keep
    3 % of poisoned titles from raising the threshold much; on synthetic logistic, Gumbel and t tails the
    clean FPR lands within 0.3-1.7 % for a 1 % target), P(logit > x) =
    (1 - high) * exp(-(x - q_high) / scale), and extrapolated to `target_fpr`. The threshold never falls
    below `floor` (the scanner's own decision, P(Yes) >= 0.5): a catalog whose clean titles all score low
    gets an FPR below the target, not a threshold among its clean titles.

    `max_set_aside` > 0: where poisoned titles are more than a few per cent of the catalog (a small upload), they
    reach the anchors and lift the fit, often above every title. The top titles are then set aside as not clean,
    as many as lie above the threshold fitted without them beyond the target's share: starting from this share
    of the catalog set aside and refitting until the count holds (the largest such count, as the count grows
    with the titles set aside); a clean catalog, whose share above its fit is the target's, sets aside none.
    """
    s = np.asarray(scores, dtype=float)
    if len(s) < 20:
        raise InputError(f"calibration needs at least 20 cross-fitted scores; got {len(s)}")
    z = np.sort(logit(s))
    aside = int(max_set_aside * len(z))
    fit = _tail_fit(z[:len(z) - aside], target_fpr, low, high)
    while aside > 0:
        fewer = max(0, round(float(np.sum(z >= fit[0]) - target_fpr * len(z))))
        if fewer >= aside:
            break
        aside, fit = fewer, _tail_fit(z[:len(z) - fewer], target_fpr, low, high)
    x_target, tail = fit
    tail_threshold = float(1 / (1 + math.exp(-x_target)))
    threshold = max(tail_threshold, floor)
    x = float(logit(np.array([threshold]))[0])
    method = Calibration.method + (f", {aside} titles above the threshold beyond the target's share set aside"
                                   if aside else "")
    return Calibration(threshold=threshold, target_fpr=target_fpr, expected_fpr=tail(x),
                       tail_threshold=tail_threshold, floor=floor, share_above=float(np.mean(s >= threshold)),
                       n_scores=len(s), method=method)


def _tail_fit(z: np.ndarray, target_fpr: float, low: float, high: float):
    """The logit at which the exponential tail fitted between the `low` and `high` quantiles of `z` reaches
    `target_fpr`, and the tail model (share of these titles at or above a logit)."""
    q_low, q_high = np.quantile(z, [low, high])
    scale = max((q_high - q_low) / math.log((1 - low) / (1 - high)), 1e-3)

    def tail(x: float) -> float:
        return float(min(1.0, (1 - high) * math.exp(-(x - q_high) / scale))) if x > q_high else \
            float(np.mean(z >= x))

    x_target = q_high + scale * math.log((1 - high) / target_fpr) if target_fpr < 1 - high else \
        float(np.quantile(z, 1 - target_fpr))
    return x_target, tail


def assign_folds(titles: Sequence[str], k: int, seed: int) -> dict[str, int]:
    """Each distinct title's fold, seeded and balanced (a shuffled round robin over the sorted titles)."""
    unique = sorted(set(titles))
    random.Random(f"folds:{seed}").shuffle(unique)
    return {t: i % k for i, t in enumerate(unique)}


def n_folds(n_titles: int, folds: int, max_titles: int) -> int:
    """Folds actually used: `folds`, but 2 once each half alone fills a scanner's training sample
    (`max_titles`: every scanner then sees as many titles, and the scan trains 2 scanners instead of K),
    and more on a catalog so small that a fold's scanner would keep fewer than 20 titles.

    Raises:
        InputError: fewer than 22 titles (20 folds could not leave 20 titles to each scanner).
    """
    k = 2 if n_titles >= 2 * max_titles else folds
    while k < 20 and n_titles - math.ceil(n_titles / k) < 20:
        k += 1
    if n_titles - math.ceil(n_titles / k) < 20:
        raise InputError(f"cross-fitting needs at least 22 distinct titles; got {n_titles} (give a trusted "
                         "reference with --dataset NAME, or --crossfit 0)")
    return k


@dataclass
class CrossFitScanner:
    """K scanners, each scoring the fold of titles it never trained on; the same interface as `Scanner`.

    A title outside the catalog (a variant the recurring-trigger check makes) gets the mean of the K scores.
    """

    scanners: list[Scanner]
    fold: dict[str, int]
    cfg: ScannerConfig
    calibration: Calibration | None = None
    threshold: float = 0.5
    history: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def groups(self, titles: Sequence[str]) -> dict[int, list[int]]:
        """Indices of `titles` per fold (-1: titles outside the catalog)."""
        groups: dict[int, list[int]] = {}
        for i, t in enumerate(titles):
            groups.setdefault(self.fold.get(t, -1), []).append(i)
        return groups

    def score(self, titles: Sequence[str], hosts: Sequence[str] | None = None) -> np.ndarray:
        """P(poisoned) of each title from the scanner of its fold, so no title is scored by one that saw it as clean.

        `hosts` (one catalog title per text) scores new texts made from catalog titles, such as a title with a
        trigger added, by their host's fold scanner, which never saw the host either.
        """
        out = np.empty(len(titles))
        for k, idx in self.groups(titles if hosts is None else hosts).items():
            sub = [titles[i] for i in idx]
            out[idx] = self.scanners[k].score(sub) if k >= 0 else \
                np.mean([s.score(sub) for s in self.scanners], axis=0)
        return out

    def spans(self, titles: Sequence[str]) -> list[str | None]:
        """The suspicious span of each title, found by its own fold's scanner as `score` does."""
        out: list[str | None] = [None] * len(titles)
        for k, idx in self.groups(titles).items():
            for i, sp in zip(idx, self.scanners[max(k, 0)].spans([titles[i] for i in idx])):
                out[i] = sp
        return out

    def contrast(self, titles: Sequence[str], hosts: Sequence[str] | None = None) -> np.ndarray:
        """Each title's deletion contrast (`core.pscanner.scanner.deletion_contrast`) by its own (or its host's)
        fold scanner: the variants are new texts, which `score` would give the mean of all K scanners, one of
        which saw the title."""
        out = np.zeros(len(titles))
        for k, idx in self.groups(titles if hosts is None else hosts).items():
            out[idx] = self.scanners[max(k, 0)].contrast([titles[i] for i in idx])
        return out


def fold_plan(titles: Sequence[str], cfg: ScannerConfig, folds: int, rng: random.Random
              ) -> tuple[list[str], dict[str, int], list[list[str]], list[str]]:
    """The distinct titles, each one's fold, each fold scanner's training titles and the shared base's titles:
    one plan for training (`crossfit_scanner`) and for telling whether it is cached (`core.views.estimate`)."""
    unique = sorted({t for t in titles if t and t.strip()})
    k = n_folds(len(unique), folds, cfg.max_titles)
    fold = assign_folds(unique, k, cfg.seed)
    base = unique if len(unique) <= cfg.max_titles else sorted(rng.sample(unique, cfg.max_titles))
    return unique, fold, [[t for t in unique if fold[t] != j] for j in range(k)], base


def crossfit_scanner(titles: Sequence[str], cfg: ScannerConfig, folds: int = 5, progress: Progress | None = None,
                     client=None, domain: str = "", use_cache: bool = True, set_aside: float = 0.0
                     ) -> tuple[CrossFitScanner, bool]:
    """Train (or load) one scanner per fold and calibrate the threshold on the cross-fitted scores.

    Args:
        titles (`Sequence[str]`): the catalog's titles (may hold poisoned ones).
        cfg (`ScannerConfig`): each fold's scanner (self-cleaning stays on: the other folds may hold poison too).
        folds (`int`): K (>= 2), adjusted to the catalog's size by `n_folds`.
        set_aside (`float`): the calibration's `max_set_aside` (`calibrate_catalog`).

    Returns:
        `(CrossFitScanner, cached)`: cached when every fold's scanner came from the cache.
    """
    if folds < 2:
        raise InputError(f"cross-fitting needs at least 2 folds; got {folds}")
    t0 = time.monotonic()
    rng = random.Random(f"crossfit:{cfg.seed}")
    unique, fold, trains, base = fold_plan(titles, cfg, folds, rng)
    k = len(trains)
    scanners, all_cached, history = [], True, []
    for j, train in enumerate(trains):
        if progress:
            progress.phase(f"cross-fitting: scanner {j + 1} of {k} (never sees fold {j + 1} as clean)")
        s, cached = get_scanner(train, cfg, progress, client, f"{domain} fold {j + 1}/{k}", use_cache,
                                base_titles=base)
        scanners.append(s)
        all_cached &= cached
        history.append({"fold": j + 1, "n_train_titles": len(train), "cached": cached,
                        "threshold_own_holdout": s.threshold, "seconds": s.info.get("seconds")})
    cf = CrossFitScanner(scanners, fold, cfg, history=history)
    sample = unique if len(unique) <= CALIBRATION_SAMPLE else rng.sample(unique, CALIBRATION_SAMPLE)
    cf.calibration = calibrate_catalog(cf.score(sample), cfg.target_fpr, max_set_aside=set_aside)
    cf.threshold = cf.calibration.threshold
    cf.info = {"domain": domain, "folds": k, "n_titles": len(unique), "seconds": round(time.monotonic() - t0, 1),
               "warnings": sorted({w for s in scanners for w in s.info.get("warnings", [])}),
               "n_params": scanners[0].info.get("n_params"),
               "prior": next((s.info["prior"] for s in scanners if s.info.get("prior")), None)}
    return cf, all_cached

