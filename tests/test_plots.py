"""Figure builders: the curves agree with core.metrics, and each figure carries the data it was given."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.metrics import detection_metrics, roc_auc
from core.views import plots


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.2
    scores = np.where(labels, rng.beta(5, 2, 400), rng.beta(2, 5, 400)).round(2)  # rounding makes ties
    return scores, labels


def test_roc_area_equals_rank_auc_with_ties(scored):
    scores, labels = scored
    pts = plots.roc_points(scores, labels)
    assert pts["fpr"].iloc[0] == 0 and pts["tpr"].iloc[0] == 0
    assert pts["fpr"].iloc[-1] == pytest.approx(1) and pts["tpr"].iloc[-1] == pytest.approx(1)
    area = float(np.trapezoid(pts["tpr"], pts["fpr"]))
    assert area == pytest.approx(roc_auc(scores, labels), abs=1e-9)


def test_pr_points_match_detection_metrics_at_each_threshold(scored):
    scores, labels = scored
    pts = plots.pr_points(scores, labels)
    for row in pts.iloc[[0, len(pts) // 3, len(pts) // 2, -1]].itertuples():
        m = detection_metrics(scores >= row.threshold, labels)
        assert row.precision == pytest.approx(m["precision"])
        assert row.recall == pytest.approx(m["recall"])
    assert pts["recall"].is_monotonic_increasing


def test_curves_handle_a_single_class():
    pts = plots.roc_points([0.1, 0.5, 0.9], [False, False, False])
    assert pts["tpr"].eq(0).all()
    fig = plots.pr_curve([0.1, 0.9], [False, False])
    assert len(fig.data) == 1


def test_score_histogram_splits_by_label_and_marks_threshold(scored):
    scores, labels = scored
    fig = plots.score_histogram(scores, labels, threshold=0.5)
    names = [t.name for t in fig.data]
    assert names == ["clean", "poisoned"]
    assert sum(fig.data[1].y) == int(labels.sum()) and sum(fig.data[0].y) == int((~labels).sum())
    assert any(s.x0 == 0.5 for s in fig.layout.shapes)
    assert [t.name for t in plots.score_histogram(scores).data] == ["items"]


def test_dataset_plots_carry_the_counts():
    fig = plots.dataset_counts({"name": "x", "n_users": 3, "n_items": 10, "n_interactions": 40})
    assert list(fig.data[0].y) == [3, 10, 40]
    hist = plots.seq_length_histogram([5, 6, 20], min_interactions=5)
    assert list(hist.data[0].x) == [5, 6, 20]
    tail = plots.popularity_tail([1, 50, 3, 0])
    assert list(tail.data[0].y) == [50, 3, 1, 1]  # sorted; zero shown as 1 on the log axis


def test_loss_curve_one_line_per_phase():
    log = pd.DataFrame({"phase": ["pretrain"] * 3 + ["finetune"] * 2, "step": [1, 2, 3, 1, 2],
                        "loss": [3.0, 2.5, 2.0, 1.5, 1.2]})
    fig = plots.loss_curve(log)
    assert [t.name for t in fig.data] == ["pretrain", "finetune"]
    assert list(fig.data[1].y) == [1.5, 1.2]


def test_metric_vs_dose_sorted_per_series():
    df = pd.DataFrame({"poison_ratio": [0.05, 0.01, 0.02, 0.01], "value": [0.9, 0.2, 0.5, 0.1],
                       "n_poison_samples": [50, 10, 20, None],
                       "series": ["llara", "llara", "llara", "tallrec"], "run_id": ["a", "b", "c", "d"]})
    fig = plots.metric_vs_dose(df)
    assert [t.name for t in fig.data] == ["llara", "tallrec"]
    assert list(fig.data[0].x) == [0.01, 0.02, 0.05]
    assert list(fig.data[0].y) == [0.2, 0.5, 0.9]
    by_count = plots.metric_vs_dose(df, x="n_poison_samples")
    assert [t.name for t in by_count.data] == ["llara"] and by_count.layout.xaxis.type == "log"


def test_metric_vs_dose_draws_the_stored_intervals_as_error_bars():
    df = pd.DataFrame({"poison_ratio": [0.01, 0.1], "value": [0.2, 0.9], "low": [0.15, 0.85],
                       "high": [0.27, 0.94], "series": ["s", "s"]})
    bars = plots.metric_vs_dose(df).data[0].error_y
    assert list(bars.array) == pytest.approx([0.07, 0.04]) and list(bars.arrayminus) == pytest.approx([0.05, 0.05])
    assert plots.metric_vs_dose(df.drop(columns=["low", "high"])).data[0].error_y.array is None


def test_one_run_gets_an_axis_from_zero_to_past_its_dose():
    fig = plots.metric_vs_dose(pd.DataFrame({"poison_ratio": [0.01], "value": [0.5], "series": ["x"]}))
    low, high = fig.layout.xaxis.range
    assert low == 0 and 0.01 < high < 0.02


def test_one_point_on_a_log_axis_or_one_logged_step_gets_a_range_around_it():
    one = pd.DataFrame({"n_poison_samples": [100], "poison_ratio": [0.1], "value": [0.5], "series": ["x"]})
    low, high = plots.metric_vs_dose(one, x="n_poison_samples").layout.xaxis.range
    assert low < 2 < high and high - low == pytest.approx(1.0)  # a decade around 10^2
    fig = plots.loss_curve(pd.DataFrame({"phase": ["clean"], "step": [5], "loss": [2.0]}))
    assert fig.data[0].mode == "markers" and fig.layout.xaxis.range == (0, 5 * 1.15)


def test_metrics_bars_group_by_model():
    m = pd.DataFrame({"model": ["clean", "clean", "poisoned"], "name": ["hr@1", "other", "asr"],
                      "value": [0.3, 9.0, 0.8]})
    fig = plots.metrics_bars(m)
    assert [t.name for t in fig.data] == ["clean", "poisoned"]
    assert list(fig.data[0].x) == ["hr@1"]


def test_large_inputs_make_small_figures():
    rng = np.random.default_rng(1)
    scores, labels = rng.random(100_000), rng.random(100_000) < 0.01
    assert len(plots.roc_curve(scores, labels).data[0].x) <= 2001
    assert len(plots.pr_curve(scores, labels).data[0].x) <= 2001
    assert len(plots.score_histogram(scores, labels).data[0].x) == 50
