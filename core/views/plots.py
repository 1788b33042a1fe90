"""Plotly figure builders for the dashboard and the reports: pure functions, data in, figure out.

Every builder takes plain frames or arrays (from `core` functions or DuckDB)
and returns a `plotly.graph_objects.Figure`; nothing here reads the store.
Titles are passed to plotly as data (it escapes text in hover labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

ACCENT = "#B3261E"
NEUTRAL = "#52606D"
LAYOUT = dict(template="plotly_white", margin=dict(l=50, r=20, t=50, b=45), height=340,
              font=dict(family="Helvetica, Arial, sans-serif", size=12))


def _fig(title: str, x: str, y: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, **LAYOUT)
    return fig


def dataset_counts(info: dict) -> go.Figure:
    """Users, items and interactions of a dataset as bars (log scale: they differ by orders)."""
    keys = [("n_users", "users"), ("n_items", "items"), ("n_interactions", "interactions")]
    names = [label for key, label in keys if info.get(key)]
    values = [info[key] for key, _ in keys if info.get(key)]
    fig = _fig(f"{info.get('name', 'dataset')}: size", "", "count (log)")
    fig.add_bar(x=names, y=values, marker_color=NEUTRAL, text=[f"{v:,}" for v in values], textposition="outside")
    fig.update_yaxes(type="log")
    return fig


def seq_length_histogram(lengths: Sequence[int], min_interactions: int | None = None) -> go.Figure:
    """Interactions per user; a dashed line marks the protocol's minimum."""
    fig = _fig("Sequence length per user", "interactions per user", "users")
    fig.add_histogram(x=np.asarray(lengths), nbinsx=60, marker_color=NEUTRAL, name="users")
    if min_interactions:
        fig.add_vline(x=min_interactions, line_dash="dash", line_color=ACCENT,
                      annotation_text=f"min {min_interactions}")
    return fig


def popularity_tail(counts: Sequence[int]) -> go.Figure:
    """Interactions per item in decreasing order: the long tail an attacker's items usually sit in."""
    c = np.sort(np.asarray(counts))[::-1]
    fig = _fig("Item popularity (long tail)", "item rank", "interactions (log)")
    fig.add_scatter(x=np.arange(1, len(c) + 1), y=np.maximum(c, 1), mode="lines", line_color=NEUTRAL,
                    name="interactions")
    fig.update_yaxes(type="log")
    if len(c):
        share = c[: max(1, len(c) // 5)].sum() / max(c.sum(), 1)
        fig.add_annotation(x=0.98, y=0.95, xref="paper", yref="paper", showarrow=False, xanchor="right",
                           text=f"top 20% of items: {share:.0%} of interactions")
    return fig


def _one_x(fig: go.Figure, xs: pd.Series, log: bool = False, start: float | None = 0.0) -> None:
    """Give an axis with a single x value a range around it: plotly's own is -1..1 with the point on it
    (or at its edge), which reads as a broken plot."""
    values = pd.to_numeric(xs, errors="coerce").dropna().unique()
    if len(values) != 1:
        return
    x = float(values[0])
    if log and x > 0:
        fig.update_xaxes(range=[np.log10(x) - 0.5, np.log10(x) + 0.5])
    elif start is not None and x > start:
        fig.update_xaxes(range=[start, x * 1.15])
    else:
        fig.update_xaxes(range=[x - max(abs(x), 1.0) * 0.5, x + max(abs(x), 1.0) * 0.5])


def loss_curve(log: pd.DataFrame) -> go.Figure:
    """Training loss per step, one line per phase (columns phase, step, loss); markers while a phase has
    one logged step (a line of one point draws nothing)."""
    fig = _fig("Training loss", "step", "loss")
    for phase, part in log.sort_values("step").groupby("phase", sort=False):
        fig.add_scatter(x=part["step"], y=part["loss"], mode="lines" if len(part) > 1 else "markers",
                        name=str(phase))
    _one_x(fig, log["step"] if len(log) else pd.Series(dtype=float))
    return fig


DOSE_AXES = {"poison_ratio": "ρ (poisoned / all training samples)",
             "n_poison_samples": "poisoned training samples (log scale)"}


def metric_vs_dose(df: pd.DataFrame, metric: str = "asr", x: str = "poison_ratio") -> go.Figure:
    """ASR (or another metric) against the dose across runs: ρ, or the number of poisoned samples.

    Args:
        df (`pd.DataFrame`): columns `x`, `value`, `series` (a label: the run's recipe), optionally
            `run_id` for the hover text and `low`/`high` for 95 % error bars (`core.views.reports.dose_points`).
        x (`str`): `"poison_ratio"` or `"n_poison_samples"` (drawn on a log axis: doses span 10-1000).
    """
    fig = _fig(f"{metric} vs {'ρ' if x == 'poison_ratio' else 'poisoned samples'}", DOSE_AXES[x], metric)
    df = df.dropna(subset=[x])
    for series, part in df.sort_values(x).groupby("series", sort=True):
        hover = part["run_id"] if "run_id" in part else None
        bars = None
        if {"low", "high"} <= set(part.columns) and part["low"].notna().any():  # the run's 95 % interval
            bars = dict(type="data", symmetric=False, array=(part["high"] - part["value"]).tolist(),
                        arrayminus=(part["value"] - part["low"]).tolist(), thickness=1)
        fig.add_scatter(x=part[x], y=part["value"], mode="lines+markers", name=str(series), text=hover,
                        error_y=bars, hovertemplate="%{x}<br>%{y:.3f}<br>%{text}<extra></extra>")
    if x == "n_poison_samples":
        fig.update_xaxes(type="log")
        _one_x(fig, df[x], log=True)
    elif len(df):  # ρ from 0: also keeps one run alone off an axis from -1 to 1
        fig.update_xaxes(range=[0, float(df[x].max()) * 1.15])
    fig.update_yaxes(range=[0, 1.02])
    return fig


def metrics_bars(metrics: pd.DataFrame, names: Sequence[str] = ("hr@1", "hr@5", "ndcg@5", "asr")) -> go.Figure:
    """One run's metrics per model side by side (columns model, name, value)."""
    sub = metrics[metrics["name"].isin(names)]
    fig = _fig("Metrics by model", "", "value")
    for model, part in sub.groupby("model", sort=True):
        fig.add_bar(x=part["name"], y=part["value"], name=str(model))
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def score_histogram(scores: Sequence[float], labels: Sequence[bool] | None = None,
                    threshold: float | None = None, bins: int = 50) -> go.Figure:
    """Scanner scores in fixed bins over [0, 1] (counted here, so 100k items stay a small figure); split by
    ground truth when it exists, the threshold as a line."""
    s = np.asarray(scores, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = _fig("Scanner score distribution", "score (P(poisoned))", "items (log)")
    groups = [("items", s, NEUTRAL)] if labels is None else [
        ("clean", s[~np.asarray(labels, dtype=bool)], NEUTRAL), ("poisoned", s[np.asarray(labels, dtype=bool)], ACCENT)]
    for name, values, color in groups:
        counts, _ = np.histogram(np.clip(values, 0.0, 1.0), bins=edges)
        fig.add_bar(x=centers, y=counts, width=1.0 / bins, name=name, marker_color=color, opacity=0.75)
    fig.update_layout(barmode="overlay", bargap=0)
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dash", line_color="#1F2933", annotation_text=f"threshold {threshold:g}")
    fig.update_yaxes(type="log")
    return fig


def _thin(df: pd.DataFrame, max_points: int = 2000) -> pd.DataFrame:
    """At most `max_points` rows, first and last kept: a curve over 100k thresholds stays a small figure."""
    if len(df) <= max_points:
        return df
    idx = np.unique(np.r_[np.linspace(0, len(df) - 1, max_points).astype(int), len(df) - 1])
    return df.iloc[idx]


def _sorted_counts(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Cumulative TP/FP at each distinct threshold, from the highest score down."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.diff(s) != 0, True]  # the last index of each run of equal scores
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return s[last], tp, fp, int(y.sum()), int((~y).sum())


def roc_points(scores: Sequence[float], labels: Sequence[bool]) -> pd.DataFrame:
    """False- and true-positive rates at every threshold (from (0,0) to (1,1))."""
    thr, tp, fp, n_pos, n_neg = _sorted_counts(scores, labels)
    fpr = np.r_[0.0, fp / n_neg] if n_neg else np.r_[0.0, np.zeros(len(fp))]
    tpr = np.r_[0.0, tp / n_pos] if n_pos else np.r_[0.0, np.zeros(len(tp))]
    return pd.DataFrame({"threshold": np.r_[np.inf, thr], "fpr": fpr, "tpr": tpr})


def pr_points(scores: Sequence[float], labels: Sequence[bool]) -> pd.DataFrame:
    """Precision and recall at every threshold, highest threshold first."""
    thr, tp, fp, n_pos, _ = _sorted_counts(scores, labels)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / n_pos if n_pos else np.zeros(len(tp))
    return pd.DataFrame({"threshold": thr, "precision": precision, "recall": recall})


def roc_curve(scores: Sequence[float], labels: Sequence[bool], auc: float | None = None) -> go.Figure:
    """The ROC curve of a labelled scan, thinned to a few hundred points so a 1M-title scan plots fast."""
    pts = _thin(roc_points(scores, labels))
    title = "ROC curve" + (f" (AUC {auc:.3f})" if auc is not None and not np.isnan(auc) else "")
    fig = _fig(title, "false-positive rate", "true-positive rate")
    fig.add_scatter(x=pts["fpr"], y=pts["tpr"], mode="lines", line_color=ACCENT, name="scanner")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#9AA5B1"), name="chance")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig


def pr_curve(scores: Sequence[float], labels: Sequence[bool]) -> go.Figure:
    """The precision-recall curve with the poisoned share as baseline: at ~1 % poisoned the ROC hides false alarms."""
    pts = _thin(pr_points(scores, labels))
    base = float(np.mean(np.asarray(labels, dtype=bool))) if len(labels) else 0.0
    fig = _fig("Precision-recall curve", "recall", "precision")
    fig.add_scatter(x=pts["recall"], y=pts["precision"], mode="lines", line_color=ACCENT, name="scanner",
                    line_shape="hv")
    fig.add_hline(y=base, line_dash="dot", line_color="#9AA5B1", annotation_text=f"base rate {base:.3f}")
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig
