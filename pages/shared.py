"""What every page shares: the store and job manager (one per process), the dataset picker, downloads.

Caching is a UI concern, so it lives here and not in `core`: `cache_resource`
keeps one `Store` and one `JobManager` per database file for the whole
process, which is what lets a reloaded page or a second browser session see
the same running jobs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import settings
from core.data.dataset import dataset_status
from core.errors import BadRecError
from core.pscanner.scan_config import contrasted_titles, has_reference, planned_scanner
from core.runs.jobs import JobManager
from core.runs.store import Store
from core.views import estimate, reports

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DATASET_KEY = "app_dataset"  # the dataset chosen on any page; a plain key so it survives page switches


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(path)


@st.cache_resource(show_spinner=False)
def _jobs(path: str) -> JobManager:
    # Its own Store (own lock): a job holding a long write transaction must not block the pages' reads.
    return JobManager(Store(path))


def store() -> Store:
    return _store(str(settings.db_path()))


@st.cache_data(max_entries=8, show_spinner=False)
def _scan_scores(path: str, scan_id: str) -> pd.DataFrame:
    return _store(path).scan_scores(scan_id)


def scan_scores(scan_id: str) -> pd.DataFrame:
    """A scan's per-item scores, read once per scan (written in one transaction, never changed after)."""
    return _scan_scores(str(settings.db_path()), scan_id)


# The store's reads that pages may take through `reads()`; writes, and reads that must be live (the job panel's
# active runs), go through `store()`.
CACHED_READS = frozenset({
    "list_datasets", "dataset_row", "get_run", "list_runs", "runs_overview", "run_metrics", "trigger_sets",
    "item_popularity", "user_lengths", "search_items", "user_history", "train_log", "rec_users", "attack_history",
    "rec_variants", "recommendations_for", "rec_side_by_side", "attack_item_ranks", "metrics_across_runs",
    "list_scans", "scan_row", "scan_campaigns", "scan_results", "scan_results_count", "scan_results_page",
    "sample_titles"})


@st.cache_data(ttl=600, max_entries=256, show_spinner=False)
def _read(path: str, version: tuple, method: str, *args, **kwargs):
    return getattr(_store(path), method)(*args, **kwargs)


class CachedReads:
    """`Store` reads (`CACHED_READS`) whose results are kept until the database is next written by any
    process (`Store.write_version`), so a widget change reruns a page without querying DuckDB again."""

    def __init__(self, s: Store):
        self._path, self._version = str(s.path), s.write_version()

    def __getattr__(self, method: str):
        if method not in CACHED_READS:
            raise AttributeError(f"Store.{method} is not a cached read; call it on store()")
        return lambda *args, **kwargs: _read(self._path, self._version, method, *args, **kwargs)


def reads() -> CachedReads:
    """The store's reads as of now, cached: `reads().run_metrics(run_id)` is `Store.run_metrics(run_id)`."""
    return CachedReads(store())


def jobs() -> JobManager:
    """The process-wide job manager; created once, which also marks runs of a dead process failed."""
    return _jobs(str(settings.db_path()))


def page(title: str, caption: str) -> None:
    """Common frame of a page: logo, title, one-line caption."""
    st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"), size="large")
    jobs()  # the first page view of a process starts the job manager (and fails runs left by a dead one)
    st.title(title)
    st.caption(caption)


def imported_datasets(kind: str | None = None) -> list[str]:
    rows = dataset_status(store())
    return [r["name"] for r in rows if r["status"] == "imported" and (kind is None or r["kind"] == kind)]


def dataset_picker(kind: str | None = None, label: str = "Dataset") -> str | None:
    """Sidebar choice among imported datasets, shared by all pages; None (with a hint) when none is imported."""
    names = imported_datasets(kind)
    if not names:
        st.sidebar.info("No dataset imported yet: open the Dataset page and import ml-100k.")
        return None
    current = st.session_state.get(DATASET_KEY)
    # The plain key is the truth (pages may set it, e.g. after an import); the widget follows it.
    st.session_state["shared_dataset_widget"] = current if current in names else names[0]

    def remember():
        st.session_state[DATASET_KEY] = st.session_state["shared_dataset_widget"]

    choice = st.sidebar.selectbox(label, names, key="shared_dataset_widget", on_change=remember,
                                  help="The dataset this page works on (imported datasets only; "
                                       "import more on the Dataset page).")
    st.session_state[DATASET_KEY] = choice
    return choice


def show_error(exc: BadRecError) -> None:
    st.error(str(exc), icon="⚠️")


PNG_EXPORT = {"format": "png", "scale": 3, "width": 1000, "height": 560}  # ~3000 px wide: report resolution


def figure(fig: go.Figure, name: str, key: str) -> None:
    """A plot whose camera icon saves a report-resolution PNG named `name` (all plots of a run or scan
    download together as one HTML report, so plotly.js is not shipped once per plot)."""
    st.plotly_chart(fig, key=f"{key}_chart", config={"toImageButtonOptions": {**PNG_EXPORT, "filename": name}})


def table_downloads(df: pd.DataFrame, name: str, key: str) -> None:
    """CSV (formula-safe) and Parquet downloads of a table, built when clicked."""
    left, right = st.columns(2)
    left.download_button("CSV", lambda: reports.table_bytes(df, "csv"), file_name=f"{name}.csv", mime="text/csv",
                         key=f"{key}_csv", on_click="ignore",
                         help="Comma-separated; cells that could start a spreadsheet formula are prefixed "
                              "with a quote.")
    right.download_button("Parquet", lambda: reports.table_bytes(df, "parquet"), file_name=f"{name}.parquet",
                          mime="application/octet-stream", key=f"{key}_parquet", on_click="ignore",
                          help="Columnar file for pandas/DuckDB/Spark.")


def run_label(row: dict | pd.Series) -> str:
    return f"{row['run_id']} · {row['status']}"


def submit_job(kind: str, dataset: str, config: dict, fn, monitor_key: str, seed: int = 0,
               resume: str | None = None) -> str:
    """Queue a job (or, with `resume`, that stopped run again under its id) and let this session's monitor
    panel watch it, so the page refreshes when it ends."""
    run_id = jobs().resubmit(resume, fn) if resume else jobs().submit(kind, dataset, config, fn, seed=seed)
    st.session_state.setdefault(f"{monitor_key}_watched", set()).add(run_id)
    return run_id


@st.fragment(run_every=2.0)
def job_monitor(kinds: str | tuple[str, ...], key: str) -> None:
    """Live panel of these kinds' queued and running jobs (polls the store every 2 s): progress, message
    with counts and ETA, loss curve, cancel. Any session sees it; a reload re-attaches. When a job this
    session watched ends, its outcome is noted and the whole page reruns to show the new results. One
    panel per page, whatever kinds of job the page starts."""
    from core.views import plots  # local: only pages with jobs draw this panel

    watched = st.session_state.setdefault(f"{key}_watched", set())
    notes = st.session_state.setdefault(f"{key}_notes", [])
    active = store().active_runs()
    active = active[active["kind"].isin([kinds] if isinstance(kinds, str) else kinds)]
    ended = watched - set(active["run_id"])
    for run_id in sorted(ended):
        row = store().get_run(run_id) or {"status": "deleted", "error": None}
        notes.append((run_id, row["status"], row.get("error")))
    watched.clear()
    watched.update(active["run_id"])
    for run_id, status, error in notes[-3:]:
        if status == "done":
            st.success(f"{run_id} finished.")
        elif status == "cancelled":  # the user asked for it: a note, not an error
            st.info(f"{run_id} cancelled.")
        else:
            st.error(f"{run_id} {status}: {error}")
    if ended:
        st.rerun(scope="app")
    if active.empty:
        st.caption("No job of this kind is queued or running.")
        return
    for row in active.itertuples():
        box = st.container(border=True)
        head, stop = box.columns([5, 1])
        head.markdown(f"**{row.run_id}** · {row.status}")
        head.text(row.message or "")
        box.progress(float(row.progress or 0.0))
        if stop.button("Cancel", key=f"{key}_cancel_{row.run_id}", help="Stop this job; nothing of it is kept."):
            if not jobs().cancel(row.run_id):
                box.warning("This job belongs to another process; it cannot be cancelled from here.")
        if row.status == "running":
            log = store().train_log(row.run_id)
            if len(log):
                box.plotly_chart(plots.loss_curve(log), key=f"{key}_loss_{row.run_id}")


# -- time before launch (core.views.estimate) -----------------------------------------------------------------
@st.cache_data(ttl=60, show_spinner=False)
def _attack_cached(config_json: str, finished: int, _cfg) -> list[str]:  # key: the config and finished runs
    from core.attack.experiment import cached_stages
    return sorted(cached_stages(store(), _cfg))


@st.cache_data(ttl=60, show_spinner=False)
def _scanner_cached(config_json: str, finished: int, _cfg) -> bool:
    return estimate.scanner_cached(store(), _cfg)


def throughput() -> estimate.Rates:
    """This machine's recorded speeds where runs exist, else the reference table (assets/throughput.json)."""
    return estimate.scan_rates_from_runs(store().list_runs("scan"),
                                         estimate.rates_from_runs(store().list_runs("attack"), estimate.load_rates()))


def attack_estimate(cfg) -> estimate.Estimate | None:
    """How long the attack `cfg` would take here, its cached stages skipped."""
    row = store().dataset_row(cfg.dataset) or {}
    cached = set(_attack_cached(json.dumps(cfg.to_dict(), sort_keys=True), store().n_finished_runs(), cfg))
    return estimate.attack_estimate(cfg, int(row.get("n_users") or 0), int(row.get("n_interactions") or 0), cached,
                                    throughput())


def attack_time(cfg) -> str:
    est = attack_estimate(cfg)
    return est.text() if est else "no speed measured for this model here yet: the first run records it."


def scan_time(cfg, n_items: int, n_domain_titles: int, attack_run: dict | None = None) -> str:
    """How long the scan `cfg` would take here (its scanner skipped when cached); with `attack_run`, the
    defence of that run (scan, retrain, evaluate); `auto` counted as the model it resolves to for `n_items`."""
    cfg = replace(cfg, scanner=planned_scanner(cfg, n_items))
    cached = _scanner_cached(json.dumps(cfg.to_dict(), sort_keys=True, default=str), store().n_finished_runs(), cfg)
    est = estimate.scan_estimate(cfg.scanner, n_domain_titles, n_items, cached, throughput(),
                                 trains_on_catalog=not has_reference(cfg), reranked=contrasted_titles(cfg, n_items))
    if est is None:
        return f"no speed measured for a {cfg.scanner.model.name} scanner here yet."
    if attack_run is not None:
        from core.attack.badrec import AttackConfig
        attack = attack_estimate(AttackConfig.from_dict(attack_run["config"]))
        if attack is None:
            return "no speed measured for this run's model here yet."
        est = estimate.defend_estimate(est, attack)
    return est.text()
