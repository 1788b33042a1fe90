"""Exports: tables as CSV/Parquet, one-file HTML reports with all plots of a run or scan (PNG/SVG server-side only
where an engine exists).

Everything a user downloads passes through here. Text cells of exported tables
are defused against spreadsheet formulas (`sanitize.csv_safe`); every string in
the HTML report is escaped, so a title is shown as the text it is.
"""

from __future__ import annotations

import html
import importlib.util
import io
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import pandas as pd
import plotly.graph_objects as go

from core import __version__
from core.errors import InputError, ResourceError
from core.runs.store import Store
from core.sanitize import csv_safe, to_csv_bytes

from . import plots

TableFormat = Literal["csv", "parquet"]
ImageFormat = Literal["png", "svg"]


def table_bytes(df: pd.DataFrame, fmt: TableFormat = "csv") -> bytes:
    """A table as a download: CSV (formula-safe) or Parquet (formula-safe text too, for round trips)."""
    if fmt == "csv":
        return to_csv_bytes(df)
    if fmt == "parquet":
        buf = io.BytesIO()
        csv_safe(df).to_parquet(buf, index=False)
        return buf.getvalue()
    raise InputError(f"table format must be csv or parquet, not {fmt!r}")


def image_engine_available() -> bool:
    """Server-side PNG/SVG needs kaleido (with a browser); the app works without it."""
    return importlib.util.find_spec("kaleido") is not None


def figure_image(fig: go.Figure, fmt: ImageFormat = "png") -> bytes:
    """A figure as PNG/SVG bytes for a download; without kaleido, a `ResourceError` naming the alternatives."""
    if not image_engine_available():
        raise ResourceError("server-side PNG/SVG export needs the optional package kaleido; "
                            "use the camera icon of the plot (PNG) or the HTML download")
    return fig.to_image(format=fmt)


def _table_html(df: pd.DataFrame, max_rows: int = 50) -> str:
    """An escaped HTML table (never `DataFrame.to_html(escape=False)`: cells are data)."""
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    more = f"<p class='note'>{len(df) - max_rows} more rows in the CSV export</p>" if len(df) > max_rows else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


_STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#1F2933}
h1{color:#B3261E}h2{border-bottom:1px solid #E4E7EB;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #E4E7EB;padding:3px 8px;text-align:left}th{background:#F3F4F6}
pre{background:#F3F4F6;padding:1em;overflow:auto;font-size:12px}.note{color:#52606D;font-size:12px}
.caveat{background:#FFF4E5;border-left:4px solid #B7791F;padding:.2em 1em;margin:1em 0}
"""


_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-")  # older uploads' prefix


def scan_label(row: dict | pd.Series) -> str:
    """A scan as a person names it: what was scanned, when, and by which scanner or baseline.

    Args:
        row (`dict` or `pd.Series`): a `Store.list_scans` row (source, created_at, method, scanner_model).

    Returns:
        `str`: e.g. "catalog.csv · 2026-11-30 15:02:11 · mini scanner"; no upload ids.
    """
    kind, _, what = str(row.get("source") or "").partition(":")
    name = {"file": _UPLOAD_ID.sub("", what), "dataset": f"dataset {what}", "run": f"run {what}"}.get(kind) \
        or str(row.get("source"))
    when = pd.Timestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M:%S") if pd.notna(row.get("created_at")) else ""
    model = row.get("scanner_model")
    by = f"{row['method']} baseline" if row.get("method") not in (None, "scanner") else \
        f"{model} scanner" if isinstance(model, str) and model else "P-Scanner"
    return " · ".join(p for p in (name, when, by) if p)


def run_caveats(run: dict) -> list[str]:
    """What a reader must know before trusting an attack run's numbers: a toy victim, a reduced run.

    Args:
        run (`dict`): a `Store.get_run` row (config and result already parsed).

    Returns:
        `list[str]`: one sentence per caveat; empty for a full-size run.
    """
    from core.lm.tinylm import SIZES

    config = _json_field(run.get("config"))
    result = _json_field(run.get("result"))
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    notes = []
    if model.get("name", "tiny") == "tiny":
        size = next((name for name, cfg in SIZES.items() if cfg.to_dict() == config.get("tiny")), None)
        if size == "smoke":
            notes.append("Toy victim: the tiny model's smoke size builds in seconds and its numbers mean nothing; "
                         "use it to check the pipeline, not the attack.")
        else:
            notes.append(f"Victim: the embedded tiny model ({size or 'custom'} size), a small stand-in for a "
                         "real LLM built on this CPU.")
    if config.get("eval_users"):
        users = result.get("n_test_users", config["eval_users"])
        notes.append(f"Reduced run: only the first {users} test users were evaluated (not all of the dataset's "
                     "test users); a few users make every rate coarse.")
    protocol = config.get("protocol") if isinstance(config.get("protocol"), dict) else {}
    off = [f"{protocol[key]} {what} (LLaRA: {full})" for key, what, full in
           (("n_candidates", "candidates", 20), ("history_len", "history items", 10))
           if protocol.get(key) not in (None, full)]
    if off:
        notes.append("Off-protocol: " + ", ".join(off) + "; numbers do not compare with the paper's.")
    return notes


INTERVAL_METRICS = {"hr@1": "HR@1", "asr": "ASR", "asr_no_trigger": "ASR without trigger",
                    "asr_transfer": "ASR, trigger on another item", "mean_rank": "Mean rank, triggered item",
                    "mean_rank_no_trigger": "Mean rank, attacker's item without trigger",
                    "mean_rank_transfer": "Mean rank, trigger on another item"}


def interval_table(run: dict) -> pd.DataFrame:
    """Each rate of an attack run with its 95 % interval, for both models, and poisoned − clean on the same users.

    A reduced run's rates are coarse (200 users: ±0.04 around 0.9): the table says which differences the run can
    resolve. Runs stored before intervals were recorded give an empty table.

    Args:
        run (`dict`): a `Store.get_run` row.

    Returns:
        `pd.DataFrame`: metric, clean, clean 95 % CI, poisoned, poisoned 95 % CI, poisoned − clean, its 95 % CI.
    """
    result = _json_field(run.get("result"))
    ci = result.get("intervals") or {}
    rows = []
    for key, label in INTERVAL_METRICS.items():
        if key not in ci.get("poisoned", {}):
            continue
        clean, pois = result.get("clean", {}).get(key), result.get("poisoned", {}).get(key)
        diff = None if clean is None or pois is None else round(pois - clean, 4)
        rows.append({"metric": label, "clean": clean, "clean 95 % CI": _span(ci["clean"].get(key)),
                     "poisoned": pois, "poisoned 95 % CI": _span(ci["poisoned"][key]),
                     "poisoned − clean": diff, "difference 95 % CI": _span(ci["poisoned_minus_clean"].get(key))})
    return pd.DataFrame(rows, columns=["metric", "clean", "clean 95 % CI", "poisoned", "poisoned 95 % CI",
                                       "poisoned − clean", "difference 95 % CI"])


def _span(interval) -> str:
    return f"{interval[0]:.3f} to {interval[1]:.3f}" if interval else ""


def run_report_html(store: Store, run_id: str) -> bytes:
    """A self-contained HTML report of one run: config, status, metrics, loss curve, sample recommendations.

    Raises:
        InputError: when the run does not exist.
    """
    run = store.get_run(run_id)
    if run is None:
        raise InputError(f"no run {run_id!r}; see the run history for valid ids")
    esc = html.escape
    parts = [f"<h1>BadRec Lab run report</h1><p class='note'>run <b>{esc(run_id)}</b> · kind {esc(str(run['kind']))}"
             f" · dataset {esc(str(run['dataset']))} · status {esc(str(run['status']))} · generated "
             f"{datetime.now():%Y-%m-%d %H:%M} by badrec {esc(__version__)}</p>"]
    caveats = run_caveats(run) if run.get("kind") == "attack" else []
    if caveats:
        parts.append("<div class='caveat'>" + "".join(f"<p>{esc(c)}</p>" for c in caveats) + "</div>")
    if run.get("error"):
        parts.append(f"<h2>Error</h2><pre>{esc(str(run['error']))}</pre>")
    metrics = store.run_metrics(run_id)
    if len(metrics):
        wide = metrics.pivot_table(index="name", columns="model", values="value").reset_index()
        parts.append("<h2>Metrics</h2>" + _table_html(wide))
        parts.append(_fig_div(plots.metrics_bars(metrics), first=True))
    intervals = interval_table(run)
    if len(intervals):
        parts.append("<h2>Rates with 95 % intervals</h2>" + _table_html(intervals))
    log = store.train_log(run_id)
    if len(log):
        parts.append("<h2>Training</h2>" + _fig_div(plots.loss_curve(log), first=not len(metrics)))
    recs = store.top_recommendations(run_id, top=5, limit=60)
    if len(recs):
        parts.append("<h2>Sample recommendations (top 5)</h2>" + _table_html(recs, max_rows=60))
    poison = store.poison_records(run_id, limit=40)
    if len(poison):
        parts.append("<h2>Poison records</h2>" + _table_html(poison))
    for key in ("config", "result", "timings", "versions"):
        if run.get(key):
            parts.append(f"<h2>{key.capitalize()}</h2><pre>{esc(json.dumps(run[key], indent=2, default=str))}</pre>")
    return _document(f"BadRec run {run_id}", parts)


def figures_report_html(title: str, figures: Sequence[go.Figure], notes: Sequence[str] = ()) -> bytes:
    """Several plots in one self-contained HTML file: plotly.js inlined once (~4.8 MB), not once per plot.

    Args:
        title (`str`): the heading (escaped: it may carry a file name).
        figures (`Sequence[go.Figure]`): the plots, in order.
        notes (`Sequence[str]`): lines under the heading (escaped).
    """
    esc = html.escape
    parts = [f"<h1>{esc(title)}</h1><p class='note'>generated {datetime.now():%Y-%m-%d %H:%M} by badrec "
             f"{esc(__version__)}" + "".join(f" · {esc(n)}" for n in notes) + "</p>"]
    parts += [_fig_div(fig, first=i == 0) for i, fig in enumerate(figures)]
    return _document(title, parts)


def _document(title: str, parts: Sequence[str]) -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>").encode("utf-8")


def _fig_div(fig: go.Figure, first: bool) -> str:
    """A figure as a div; the first one carries plotly.js inline so the file works offline."""
    return fig.to_html(include_plotlyjs=True if first else False, full_html=False)


def dose_points(rows: pd.DataFrame, metric: str = "asr", model: str = "poisoned") -> pd.DataFrame:
    """One point per finished run: its dose, as ρ and as the number of poisoned samples, and one metric.

    The paper's "1 %" is a count that depends on the training-set size (ρ 0.01 of 1,886 samples is 19
    samples, of all windows ~970): the dose law is read against both. A series is one recipe — dataset,
    victim, model, candidates per prompt (the chance level), clean training samples and epochs — so only runs
    that differ in their dose are joined by a line (E32's 943 and 10,373-sample runs at ρ 0.01 are not one
    curve).

    Args:
        rows (`pd.DataFrame`): `Store.metrics_across_runs()` (run_id, dataset, config and result JSON, model,
            name, value).

    Returns:
        `pd.DataFrame`: columns run_id, poison_ratio, n_poison_samples and n_clean_samples (None for runs that
        did not record them), value, low and high (its 95 % interval; NaN for runs stored before intervals),
        series (dataset · victim · model · candidates · clean samples · epochs).
    """
    sub = rows[(rows["name"] == metric) & (rows["model"] == model)]
    out = []
    for r in sub.itertuples():
        cfg = _json_field(r.config)
        ratio = cfg.get("poison_ratio")
        if ratio is None:
            continue
        result = _json_field(getattr(r, "result", None))
        poisoning = result.get("poisoning", {})
        model_cfg = cfg.get("model")
        model_name = model_cfg.get("name") if isinstance(model_cfg, dict) else model_cfg
        low, high = result.get("intervals", {}).get(model, {}).get(metric, (float("nan"), float("nan")))
        out.append({"run_id": r.run_id, "poison_ratio": float(ratio),
                    "n_poison_samples": poisoning.get("n_poison_samples"),
                    "n_clean_samples": poisoning.get("n_clean_samples"), "value": float(r.value), "low": low,
                    "high": high, "series": _recipe(r.dataset, cfg, model_name, poisoning.get("n_clean_samples"))})
    return pd.DataFrame(out, columns=["run_id", "poison_ratio", "n_poison_samples", "n_clean_samples", "value",
                                      "low", "high", "series"])


def _recipe(dataset: str, cfg: dict, model_name: str | None, n_clean: int | None) -> str:
    """A dose series' label: what a run holds fixed while its dose varies (parts a run did not record left out)."""
    candidates = (cfg.get("protocol") or {}).get("n_candidates")
    epochs = (cfg.get("train") or {}).get("epochs")
    parts = (dataset, cfg.get("victim"), model_name, candidates and f"{candidates} candidates",
             n_clean and f"{n_clean:,} clean samples", epochs and f"{epochs:g} epoch{'s' if epochs != 1 else ''}")
    return " · ".join(str(p) for p in parts if p)


def _json_field(value) -> dict:
    if isinstance(value, str):
        return json.loads(value)
    return value if isinstance(value, dict) else {}
