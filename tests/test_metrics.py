from __future__ import annotations

import math

import pytest

from core.metrics import detection_metrics, hit_at_k, ndcg_at_k, ranking_metrics, roc_auc


def test_hits_with_expected_tie_breaking():
    assert hit_at_k([3, 1, 2], 0, 1) == 1.0
    assert hit_at_k([3, 1, 2], 1, 1) == 0.0
    assert hit_at_k([1, 1, 1, 1], 2, 1) == pytest.approx(0.25)
    assert hit_at_k([5, 1, 1, 1], 1, 2) == pytest.approx(1 / 3)


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
