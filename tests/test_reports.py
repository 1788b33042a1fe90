"""Exports and the one-file run report: formula-safe tables, escaped titles, self-contained HTML."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from core.errors import InputError, ResourceError
from core.views import plots, reports

EVIL = '<script>alert("x")</script> =HYPERLINK("http://evil")'


def make_run(store, run_id="attack-1"):
    store.create_run(run_id, "attack", "synthetic", {"poison_ratio": 0.01, "victim": "llara"}, 0, {"python": "3"})
    store.log_train(run_id, "finetune", 1, 2, 2.5, 100.0)
    store.log_train(run_id, "finetune", 2, 2, 2.0, 100.0)
    recs = pd.DataFrame({"run_id": run_id, "model": "poisoned", "variant": "triggered", "user_id": "u1",
                         "rank": [1, 2], "item_id": ["7", "8"], "title": [EVIL, "Plain (1995)"],
                         "score": [-1.0, -2.0], "is_attack_item": [True, False], "is_target": [False, True]})
    store.finish_run(run_id, {"asr": 0.5}, {"seconds": 3.0},
                     {"clean": {"hr@1": 0.3}, "poisoned": {"hr@1": 0.29, "asr": 0.5}}, {"recommendations": recs})
    return run_id


def test_csv_export_defuses_formulas():
    df = pd.DataFrame({"title": ["=1+1", "@SUM(A1)", "ok"], "score": [0.1, 0.2, 0.3]})
    text = reports.table_bytes(df, "csv").decode()
    assert "'=1+1" in text and "'@SUM(A1)" in text and "\nok," in text


def test_parquet_export_round_trips():
    df = pd.DataFrame({"title": ["+x", "y"], "score": [0.5, 0.25]})
    back = pd.read_parquet(io.BytesIO(reports.table_bytes(df, "parquet")))
    assert back["title"].tolist() == ["'+x", "y"]
    assert back["score"].tolist() == [0.5, 0.25]
    with pytest.raises(InputError):
        reports.table_bytes(df, "xlsx")


def test_figures_report_carries_plotly_js_once_and_escapes_its_title():
    figs = [plots.popularity_tail([3, 2, 1]), plots.score_histogram([0.1, 0.9]), plots.loss_curve(
        pd.DataFrame({"phase": ["clean"], "step": [1], "loss": [2.0]}))]
    doc = reports.figures_report_html("Scan <b>x.csv</b>", figs, ["threshold 0.5"]).decode()
    assert "<b>x.csv</b>" not in doc and "Scan &lt;b&gt;x.csv&lt;/b&gt;" in doc
    assert 'src="http' not in doc and doc.count("Plotly.newPlot") == 3
    one = len(reports.figures_report_html("one", figs[:1]))
    assert len(doc) < one + 200_000  # the library once (~4.8 MB), then a few kB per plot


def test_scan_label_names_file_time_and_scanner_without_upload_ids():
    row = {"source": "file:3f2a1b4c-1d2e-4f5a-9b8c-0123456789ab-shop.csv", "method": "scanner",
           "created_at": pd.Timestamp("2026-11-30 15:02:11"), "scanner_model": "mini"}
    assert reports.scan_label(row) == "shop.csv · 2026-11-30 15:02:11 · mini scanner"
    assert reports.scan_label({**row, "source": "dataset:ml-100k", "method": "tokenstats"}) == \
        "dataset ml-100k · 2026-11-30 15:02:11 · tokenstats baseline"


def test_image_export_says_what_is_missing():
    fig = plots.popularity_tail([3, 2, 1])
    if reports.image_engine_available():
        assert reports.figure_image(fig, "svg").startswith(b"<svg")
    else:
        with pytest.raises(ResourceError, match="kaleido"):
            reports.figure_image(fig)


def test_run_report_escapes_titles_and_embeds_plots(store):
    run_id = make_run(store)
    doc = reports.run_report_html(store, run_id).decode()
    assert "<script>alert" not in doc
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in doc
    assert "Metrics" in doc and "Training loss" in doc and "poison_ratio" in doc
    assert 'src="http' not in doc and doc.count("Plotly.newPlot") == 2  # plotly.js inline
    assert "0.2900" in doc


def test_report_of_failed_run_shows_error(store):
    store.create_run("r2", "attack", "d", {}, 0, {})
    store.fail_run("r2", "poison_ratio <b>too</b> high")
    doc = reports.run_report_html(store, "r2").decode()
    assert "poison_ratio &lt;b&gt;too&lt;/b&gt; high" in doc and "failed" in doc


def test_report_of_unknown_run(store):
    with pytest.raises(InputError, match="no run"):
        reports.run_report_html(store, "nope")
