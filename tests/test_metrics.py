from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import (
    detection_metrics,
    expected_rank,
    hit_at_k,
    mean_interval,
    ndcg_at_k,
    paired_difference_interval,
    ranking_metrics,
    rate_intervals,
    roc_auc,
    wilson_interval,
)


def test_hits_with_expected_tie_breaking():
    assert hit_at_k([3, 1, 2], 0, 1) == 1.0
    assert hit_at_k([3, 1, 2], 1, 1) == 0.0
    assert hit_at_k([1, 1, 1, 1], 2, 1) == pytest.approx(0.25)
    assert hit_at_k([5, 1, 1, 1], 1, 2) == pytest.approx(1 / 3)


def test_expected_rank_breaks_ties_as_hits_do():
    assert expected_rank([3, 1, 2], 0) == 1 and expected_rank([3, 1, 2], 1) == 3
    assert expected_rank([1, 1, 1, 1], 2) == 2.5  # a random place among four tied: the mean of 1..4
    assert expected_rank([5, 1, 1, 1], 1) == 3  # behind one, tied with two: places 2, 3, 4
    scores = [0.2, 0.9, 0.9, 0.1]
    assert expected_rank(scores, 1) == 1.5 and hit_at_k(scores, 1, 1) == 0.5


def test_ndcg():
    assert ndcg_at_k([3, 1, 2], 0, 5) == 1.0
    assert ndcg_at_k([3, 1, 2], 2, 5) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([3, 2, 1], 2, 2) == 0.0


def test_ranking_metrics_average():
    m = ranking_metrics([[1, 0], [0, 1]], [0, 0])
    assert m["hr@1"] == 0.5


def test_auc():
    assert roc_auc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert roc_auc([0.5, 0.5], [1, 0]) == 0.5
    assert math.isnan(roc_auc([0.1], [1]))


def test_detection_metrics():
    m = detection_metrics([1, 1, 0, 0], [1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1])
    assert m["precision"] == 0.5 and m["recall"] == 0.5 and m["f1"] == 0.5 and m["fpr"] == 0.5
    assert m["auc"] == 0.75


def test_wilson_interval_textbook_values_and_bounds():
    assert wilson_interval([1] * 5 + [0] * 5) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson_interval([0] * 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)  # width at 0, where mean ± 1.96 se has none
    assert wilson_interval([1] * 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval([]))


def test_wilson_interval_covers_the_true_rate_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [(lo <= 0.9 <= hi) for lo, hi in (wilson_interval(rng.random(200) < 0.9) for _ in range(2000))]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_paired_difference_interval():
    low, high = paired_difference_interval([0, 0, 1, 1], [1, 0, 1, 0])  # differences 1, 0, 0, -1
    assert (low + high) / 2 == pytest.approx(0) and high == pytest.approx(1.96 * math.sqrt(2 / 3) / 2, abs=1e-3)
    assert paired_difference_interval([1, 0, 1], [1, 0, 1]) == (0.0, 0.0)  # same answers: nothing differs
    # users who agree across models make the paired interval narrower than even one model's own rate's interval
    rng = np.random.default_rng(1)
    before = (rng.random(200) < 0.25).astype(float)
    after = before.copy()
    after[:10] = 1 - after[:10]
    low, high = paired_difference_interval(before, after)
    assert low <= after.mean() - before.mean() <= high
    assert high - low < (wilson_interval(before)[1] - wilson_interval(before)[0]) * 0.6


def test_rate_intervals_pair_the_models_on_the_same_cases():
    out = rate_intervals({"hr@1": [1, 0, 0, 1], "asr": [0, 0, 0, 0]}, {"hr@1": [1, 0, 0, 0], "asr": [1, 1, 1, 0]})
    assert set(out) == {"clean", "poisoned", "poisoned_minus_clean"}
    assert out["poisoned"]["asr"][0] < 0.75 < out["poisoned"]["asr"][1]
    low, high = out["poisoned_minus_clean"]["hr@1"]
    assert low < -0.25 < high and out["clean"]["asr"][0] == 0


def test_mean_interval_and_rank_intervals():
    low, high = mean_interval([1, 3, 5, 7])
    assert (low + high) / 2 == 4 and high - low == pytest.approx(2 * 1.96 * math.sqrt(20 / 3) / 2, abs=1e-3)
    assert math.isnan(mean_interval([2])[0])
    # ranks are not rates: a Wilson interval would not hold a mean rank of 6 at all
    out = rate_intervals({"mean_rank": [6, 5, 7, 6]}, {"mean_rank": [4, 5, 5, 4]}, interval=mean_interval)
    assert out["clean"]["mean_rank"][0] < 6 < out["clean"]["mean_rank"][1]
    low, high = out["poisoned_minus_clean"]["mean_rank"]
    assert low < -1.5 < high < 0  # the same cases, each moved up: the shift is resolved on four


def test_auc_interval_matches_delong_by_pairs_and_covers_the_true_auc():
    from math import erf, log, sqrt

    from core.metrics import auc_interval, roc_auc

    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=60), 1)  # rounded: ties between and within the classes
    y = np.arange(60) < 15
    s[y] += 1.0
    # DeLong by brute force over every (positive, negative) pair
    psi = (s[y][:, None] > s[~y][None, :]) + 0.5 * (s[y][:, None] == s[~y][None, :])
    auc = psi.mean()
    var = psi.mean(axis=1).var(ddof=1) / 15 + psi.mean(axis=0).var(ddof=1) / 45
    se = sqrt(var) / (auc * (1 - auc))
    low, high = auc_interval(s, y)
    assert roc_auc(s, y) == pytest.approx(auc)
    assert log(low / (1 - low)) == pytest.approx(log(auc / (1 - auc)) - 1.959963984540054 * se)
    assert log(high / (1 - high)) == pytest.approx(log(auc / (1 - auc)) + 1.959963984540054 * se)
    # a suite's shape (20 poisoned among 300) and a high AUC: the interval holds the true AUC ~95 % of the time
    true_auc = 0.5 * (1 + erf(2.0 / sqrt(2) / sqrt(2)))  # P(N(2, 1) > N(0, 1))
    labels = np.arange(320) < 20
    hits = 0
    for _ in range(1000):
        x = rng.normal(size=320) + 2.0 * labels
        lo, hi = auc_interval(x, labels)
        hits += lo <= true_auc <= hi
    assert 0.91 <= hits / 1000 <= 0.98
    assert auc_interval([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == (1.0, 1.0)  # perfect: no spread
    assert all(np.isnan(auc_interval([0.9, 0.1, 0.2], [True, False, False])))  # one positive: no interval
