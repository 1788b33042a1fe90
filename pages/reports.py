"""Reports: a one-file HTML report of a run, its tables as CSV/Parquet, and its plots as HTML."""

import streamlit as st

from core.attack import sweep
from core.views import plots, reports
from pages.shared import figure, page, reads, store, table_downloads

page("Reports", "Everything downloadable: run reports (one HTML file with all plots), tables (CSV/Parquet), "
                 "plots (PNG from each plot's camera icon).")

if reports.image_engine_available():
    st.caption("Server-side PNG/SVG export is available (kaleido found).")
else:
    st.caption("Each plot's camera icon saves a PNG at report resolution (3x); a run's plots download together "
               "in its HTML report. Server-side PNG/SVG needs the optional package kaleido, which is not installed.")

scans = reads().list_scans()
if len(scans):
    st.subheader("Scans")
    st.dataframe(scans, hide_index=True)
    scan_labels = {row["scan_id"]: f"{reports.scan_label(row)} · {row['scan_id']}" for _, row in scans.iterrows()}
    scan_id = st.selectbox("Scan", list(scan_labels), key="reports_scan", format_func=scan_labels.get,
                           help="Its per-item results (all items, with score, flag, span and label).")
    left, right = st.columns(2)
    left.download_button("Scan results (CSV)", lambda: reports.table_bytes(store().scan_results(scan_id), "csv"),
                         file_name=f"{scan_id}.csv", mime="text/csv", key="reports_scan_csv", on_click="ignore",
                         help="Formula-safe CSV of every scored item.")
    right.download_button("Scan results (Parquet)",
                          lambda: reports.table_bytes(store().scan_results(scan_id), "parquet"),
                          file_name=f"{scan_id}.parquet", mime="application/octet-stream",
                          key="reports_scan_parquet", on_click="ignore", help="The same table as Parquet.")

overview = reads().runs_overview()
st.subheader("All runs")
if overview.empty:
    st.info("No runs yet: launch an attack on the Attack page or a scan on the Scanner page.")
    st.stop()
st.caption("`machine`, `dtype` and `bnb_kernel` say where a run's numbers come from: the same seed gives "
           "different numbers in bf16 (AVX512-BF16/AMX CPUs, CUDA) and fp32 (AVX2-only CPUs).")
st.dataframe(overview, hide_index=True)
table_downloads(overview, "runs", "reports_runs")

points = reports.dose_points(reads().metrics_across_runs("attack"), "asr")
if len(points):
    st.subheader("Dose law")
    left, right = st.columns(2)
    with left:
        figure(plots.metric_vs_dose(points, "asr", "n_poison_samples"), "asr-vs-samples", "reports_dose")
    with right:
        figure(plots.metric_vs_dose(points, "asr", "poison_ratio"), "asr-vs-rho", "reports_rho")
    table_downloads(points, "asr-vs-dose", "reports_rho_table")

sweeps = reads().list_runs("sweep")
sweeps = sweeps[sweeps["status"] == "done"] if len(sweeps) else sweeps
if len(sweeps):
    st.subheader("Sweeps")
    sweep_id = st.selectbox("Sweep", sweeps["run_id"].tolist(), key="reports_sweep",
                            help="A grid of attacks (python -m core sweep): ASR and HR@1 over its axes.")
    sweep_run = reads().get_run(sweep_id)
    grid = sweep.sweep_points(sweep_run)
    figure(sweep.sweep_figure(grid, sweep_run["result"]["axes"]), sweep_id, "reports_sweep")
    st.dataframe(grid, hide_index=True, key="reports_sweep_runs")
    table_downloads(grid, sweep_id, "reports_sweep_table")

st.subheader("One run")
run_id = st.selectbox("Run", overview["run_id"].tolist(), key="reports_run",
                      help="Any run, finished or not; failed runs report their error.")
st.download_button("Download run report (HTML, all plots)", lambda: reports.run_report_html(store(), run_id),
                   file_name=f"{run_id}.html", mime="text/html",
                   key="reports_report", type="primary", on_click="ignore",
                   help="One self-contained file: config, metrics, plots (interactive, offline), tables.")

metrics = reads().run_metrics(run_id)
if len(metrics):
    st.markdown("**Metrics**")
    st.dataframe(metrics, hide_index=True)
    table_downloads(metrics, f"{run_id}-metrics", "reports_metrics")
    figure(plots.metrics_bars(metrics), f"{run_id}-metrics", "reports_metrics_fig")
log = reads().train_log(run_id)
if len(log):
    st.markdown("**Training log**")
    figure(plots.loss_curve(log), f"{run_id}-loss", "reports_loss_fig")
    table_downloads(log, f"{run_id}-train-log", "reports_log")
