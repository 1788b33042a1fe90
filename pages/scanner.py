"""Scanner: run P-Scanner on a catalog as a background job, then inspect per-item scores with a live
threshold, detection metrics, score plots, the recurring triggers found, the suspicious span of each
flagged title and the Unicode-hygiene reason (hidden characters, look-alike letters) where there is one."""

import json
from dataclasses import replace

import streamlit as st

from core import settings
from core.data import uploads
from core.errors import BadRecError, InputError
from core.lm.models import ModelConfig
from core.metrics import detection_metrics
from core.pscanner import campaign
from core.pscanner.defend import defence_table, run_defend
from core.pscanner.scan import calibration_caption, flagged_warning, run_scan
from core.pscanner.scan_config import ScanConfig
from core.pscanner.scanner import AUTO_LLM_MAX_TITLES, LLM_SCANNER, SCANNER_TRAIN, FrozenHeadConfig, ScannerConfig
from core.runs.jobs import scan_job
from core.runs.ray_engine import RayConfig
from core.runs.store import Store
from core.views import plots, reports
from pages.shared import (
    figure,
    imported_datasets,
    job_monitor,
    jobs,
    page,
    reads,
    scan_scores,
    scan_time,
    show_error,
    store,
    submit_job,
)

page("Scanner", "P-Scanner scores every title for a backdoor trigger (P(poisoned)); flagged items can be "
                "removed before training.")


st.header("Run a scan")
with st.container(border=True):
    source = st.radio("What to scan", ["dataset", "run", "catalog"], key="scanner_source", horizontal=True,
                      format_func={"dataset": "a dataset in the store", "run": "an attack run's poisoned catalog",
                                   "catalog": "an uploaded catalog file"}.get,
                      help="A run's catalog carries its ground truth (which titles were poisoned), so precision "
                           "and recall can be measured.")
    datasets = imported_datasets()
    done_runs = reads().list_runs("attack")
    done_runs = done_runs[done_runs["status"] == "done"]["run_id"].tolist() if len(done_runs) else []
    s1, s2 = st.columns(2)
    dataset = s1.selectbox("Dataset (domain)", datasets, key="scanner_dataset",
                           help="The catalog to scan, or for a file/run the domain whose clean titles the scanner "
                                "trains on.") if datasets else None
    run_id = s2.selectbox("Attack run", done_runs, key="scanner_run", disabled=source != "run",
                          help="Finished attack runs.") if done_runs else None
    upload = st.file_uploader("Catalog file", type=["csv", "tsv", "txt", "parquet", "jsonl", "ndjson"],
                              key="scanner_upload", disabled=source != "catalog",
                              help="item id + title columns, optionally is_poisoned (0/1) as ground truth. "
                                   "Checked as soon as it is uploaded: a file that cannot be scanned is refused "
                                   "before any job starts.")
    upload_error = None
    if source == "catalog" and upload is not None:
        checked = st.session_state.setdefault("scanner_checked", {})  # one parse per uploaded file
        if upload.file_id not in checked:
            try:
                read = uploads.read_upload(upload.getvalue(), upload.name)
                checked[upload.file_id] = (None, read.warnings, len(read.items))
            except BadRecError as exc:
                checked[upload.file_id] = (str(exc), [], 0)
        upload_error, upload_warnings, upload_items = checked[upload.file_id]
        if upload_error:
            st.error(f"{upload.name}: {upload_error}", icon="⚠️")
        elif upload_warnings:
            st.warning(f"{upload.name}: " + "; ".join(upload_warnings))
    m1, m2, m3, m4 = st.columns(4)
    model = m1.selectbox("Scanner model", ["auto", "mini", "smollm2-135m", "tiny"], key="scanner_model",
                         help=f"auto: {LLM_SCANNER} for an uploaded catalog or a dataset scanned by itself up to "
                              f"{AUTO_LLM_MAX_TITLES:,} titles (it knows language: triggers it never saw stand out), "
                              "mini above (bulk) and whenever a trusted reference trains the scanner (an attack "
                              "run's dataset, or the domain chosen for an upload: fine-tuned on it, mini learns its "
                              "odd-but-clean titles); offline on a first run it falls back to mini and says so. "
                              "mini: a 0.7M-parameter LM built here, fine-tuned per scan (fast; bulk catalogs). "
                              "smollm2-135m: a real pretrained LLM (fetched once, offline), frozen, with a linear "
                              "head on its features: it knows language, so marketing sentences and invented words "
                              "stand out in any catalog; ~45 texts/s on a 2-core CPU with AVX512-BF16, ~15 on an "
                              "AVX2-only one, where it computes in fp32 (docs/SCANNER.md E58-E60). "
                              "tiny: the project's domain LM.")
    target_fpr = m2.number_input("Target false-positive rate", 0.001, 0.4, 0.01, 0.001, format="%.3f",
                                 key="scanner_fpr", help="The threshold flags about this share of clean titles.")
    rounds = m3.number_input("Adversarial rounds", 0, 10, 2, key="scanner_rounds",
                             help="Rounds where the augmentation agent adds triggers the scanner missed.")
    methods = m4.multiselect("Baselines", ["tokenstats", "onion", "ensemble"], default=["tokenstats"],
                             key="scanner_methods", help="Compared in the same scan (each gets its own scan id).")
    e1, e2 = st.columns(2)
    engine = e1.radio("Engine", ["local", "ray"], key="scanner_engine", horizontal=True,
                      help="local: scored in this process. ray: Ray Data reads the catalog and an actor pool scores "
                           "it on a Ray cluster; the same scores and flags, progress below as chunks finish.")
    address = e2.text_input("Ray cluster", key="scanner_address", disabled=engine != "ray",
                            placeholder="empty: a cluster started here (127.0.0.1 only)",
                            help="auto (this machine joined a cluster with `ray start`), ray://HOST:PORT or HOST:PORT.")
    with st.expander("Advanced (size of the scanner's training)"):
        a1, a2, a3, a4, a5 = st.columns(5)
        epochs = a1.number_input("Epochs", 1, 20, int(SCANNER_TRAIN.epochs), key="scanner_epochs",
                                 help="Training passes of round 0.")
        n_triggers = a2.number_input("Synthetic triggers", 3, 5000, 600, key="scanner_triggers",
                                     help="Triggers made by the agent for round 0.")
        max_titles = a3.number_input("Max training titles", 50, 100_000, 4000, key="scanner_max_titles",
                                     help="Titles sampled to train on (fewer = faster, e.g. 200 for a smoke test).")
        folds = a4.number_input("Cross-fitting folds", 0, 20, ScanConfig.crossfit, key="scanner_folds",
                                help="Without a trusted reference (an upload scanned by itself, a dataset): each "
                                     "title is scored by one of K scanners that never trained on it as clean "
                                     "(core.pscanner.crossfit). Fewer folds = fewer scanners to train with mini; "
                                     "0 = one scanner on the whole catalog, whose poisoned titles it learns as "
                                     "clean.")
        probes = a5.number_input("Probes per title", 0, 50, FrozenHeadConfig.probes_per_title, key="scanner_probes",
                                 help="LLM scanner: each adversarial round probes at most this many fresh triggers "
                                      "per title (0 = the agent's 300 whatever the catalog's size). Only catalogs "
                                      "under ~125 titles feel it: there 3 (the default) scans 1.6x faster, and "
                                      "their heads start from a prior head trained on other catalogs "
                                      "(docs/SCANNER.md E61-E62).")
        spans = st.toggle("Find suspicious spans", value=True, key="scanner_spans",
                          help="The words whose removal lowers a flagged title's score most; about a quarter of "
                               "a large scan's time (off = faster, same scores and flags).")
        recurring = st.radio("Catch recurring triggers", ["auto", "on", "off"], key="scanner_campaigns",
                             horizontal=True,
                             help="Also flag every title carrying a word or phrase that recurs among the "
                                  "top-scored tenth of the catalog (or, with the default LLM scanner, on two or more "
                                  "titles all in the top third) and whose removal lowers their scores, unless "
                                  "those titles read as one series (a franchise name leaves fragments or shared "
                                  "words once removed) (core.pscanner.campaign): BadRec writes one trigger into "
                                  "several unrelated items. auto = "
                                  "on when no title is scored by a scanner that trained on it as clean (a trusted "
                                  "reference, or the default cross-fitted scan of an upload); off when one scanner "
                                  "trains on the catalog itself (series and franchise names recur there).")
        unicode_check = st.checkbox("Check Unicode hygiene", value=True, key="scanner_unicode",
                                    help="Also flag titles with invisible or bidi characters, words mixing scripts "
                                         "or look-alike letters (Cyrillic о in a Latin word), and emoji or symbols "
                                         "rare in this catalog (core.pscanner.unicode_hygiene); no training needed. "
                                         "The reason is shown next to the title.")

    def saved_catalog() -> str | None:
        """The uploaded file, validated and kept for the job (None for a dataset or a run)."""
        if source != "catalog":
            return None
        if upload is None:
            raise InputError("choose a catalog file to upload first")
        return str(uploads.save_upload(upload.getvalue(), upload.name, settings.home() / "uploads")[0])

    def scan_config(catalog_path: str | None) -> ScanConfig:
        return ScanConfig(source=source, catalog_path=catalog_path, dataset=dataset,
                          run_id=run_id if source == "run" else None, methods=("scanner", *methods),
                          scanner=ScannerConfig(model=ModelConfig(name=model),
                                                train=replace(SCANNER_TRAIN, epochs=int(epochs)),
                                                target_fpr=float(target_fpr), rounds=int(rounds),
                                                n_triggers=int(n_triggers), max_titles=int(max_titles),
                                                frozen=FrozenHeadConfig(probes_per_title=int(probes))),
                          spans=spans, campaigns=recurring, crossfit=int(folds),
                          unicode_check=unicode_check, engine=engine, ray=RayConfig(address=address.strip() or None))

    try:  # time before launch, for the settings as they stand (the file is not written for this)
        planned = scan_config(upload.name if upload is not None and source == "catalog" else None)
    except BadRecError:
        planned = None
    if planned is not None and not upload_error:
        scanned = reads().get_run(run_id)["dataset"] if source == "run" else dataset
        n_items = upload_items if source == "catalog" else int(reads().dataset_row(scanned)["n_items"])
        n_domain = int(reads().dataset_row(dataset)["n_items"]) if dataset else n_items
        st.caption("**Time before launch**: scan " + scan_time(planned, n_items, n_domain) +
                   ("; defence " + scan_time(planned, n_items, n_domain, reads().get_run(run_id))
                    if source == "run" else ""))
    b1, b2 = st.columns(2)
    job_store = jobs().store
    if b1.button("Start scan", key="scanner_start", type="primary", disabled=bool(upload_error),
                 help="Runs in the background; follow it below. Its id is the scan's id in Results."):
        try:
            cfg = scan_config(saved_catalog())
            job_id = submit_job("scan", dataset or "", cfg.to_dict(), scan_job(run_scan, job_store, cfg),
                                "scanner_monitor", seed=cfg.scanner.seed)
        except BadRecError as exc:
            show_error(exc)
        else:
            st.success(f"Queued {job_id}.")
    if b2.button("Defend the run", key="scanner_defend", disabled=source != "run",
                 help="Scan the attack run's catalog with these settings, drop every flagged item, retrain the "
                      "poisoned victim without them and measure ASR and HR@1 again (python -m core defend)."):
        try:
            if run_id is None:
                raise InputError("choose a finished attack run first")
            cfg = scan_config(saved_catalog())
            job_id = submit_job("defend", dataset or "", {"attack_run": run_id, **cfg.to_dict()},
                                lambda progress, rid: run_defend(job_store, run_id, cfg, progress), "scanner_monitor",
                                seed=cfg.scanner.seed)
        except BadRecError as exc:
            show_error(exc)
        else:
            st.success(f"Queued {job_id}.")
    job_monitor(("scan", "defend"), "scanner_monitor")

defences = defence_table(reads().list_runs("defend"))
if len(defences):
    st.header("Defences")
    st.caption("Each row: an attack run scanned, its flagged items dropped and the poisoned victim retrained "
               "(core.pscanner.defend.run_defend). ASR after near 0 with HR@1 near the clean model's = the backdoor "
               "is gone.")
    st.dataframe(defences, hide_index=True, key="scanner_defences",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                for c in ("f1", "asr before", "asr after", "hr@1 before", "hr@1 after")})

scans = reads().list_scans()
if scans.empty:
    if not (store().active_runs()["kind"] == "scan").any():  # a running scan is shown in the panel above
        st.info("No scan yet: start one above.")
    st.stop()

st.header("Results")
# The box follows the newest scan as it finishes (this session's or another's); an older one stays
# chosen until a newer scan arrives.
newest = scans["scan_id"].iloc[0]
if st.session_state.get("scanner_newest") != newest:
    st.session_state["scanner_newest"] = st.session_state["scanner_scan"] = newest
labels = {row["scan_id"]: reports.scan_label(row) for _, row in scans.iterrows()}
scan_id = st.selectbox("Scan", list(labels), key="scanner_scan", format_func=labels.get,
                       help="Newest first: what was scanned, when, and by which scanner or baseline.")
st.caption(f"Scan id `{scan_id}` (the id its job had in the queue).")


@st.fragment
def scan_view(scan_id: str, label: str) -> None:
    """The chosen scan at the slider's threshold: a fragment, so moving the slider or a filter reruns this part
    only, over the scan's rows read once (`scan_scores`: a scan never changes once written)."""
    scan = reads().scan_row(scan_id)
    scores = scan_scores(scan_id)
    has_labels = bool(scores["label"].notna().any())
    stored_threshold = float(scan["threshold"]) if scan.get("threshold") is not None else 0.5
    threshold = st.slider("Threshold", 0.0, 1.0, round(stored_threshold, 3), 0.001, key="scanner_threshold",
                          format="%.3f", help="Items scoring at or above it are flagged. The scan's calibrated "
                                              "threshold is the default; moving it updates the numbers below.")
    flags = campaign.flagged_at(scores["score"].to_numpy(), threshold,
                                (scores["campaign"].notna() | scores["reason"].notna()).to_numpy())
    cols = st.columns(5)
    cols[0].metric("Items", f"{len(scores):,}")
    cols[1].metric("Flagged", f"{int(flags.sum()):,}",
                   help="at the threshold above, plus every item carrying a recurring trigger or a Unicode-hygiene "
                        "finding")
    if has_labels:
        labelled = scores["label"].notna().to_numpy()
        m = detection_metrics(flags[labelled], scores["label"][labelled].astype(bool).to_numpy(),
                              scores["score"].to_numpy()[labelled])
        cols[2].metric("Precision", f"{m['precision']:.3f}", help="flagged items that are poisoned; higher is better")
        cols[3].metric("Recall", f"{m['recall']:.3f}", help="poisoned items that are flagged; higher is better")
        cols[4].metric("F1", f"{m['f1']:.3f}", help=f"harmonic mean; FPR {m['fpr']:.4f}, AUC {m['auc']:.3f}")
    else:
        cols[2].caption("No ground truth in this catalog: precision/recall need an is_poisoned column.")
    metrics = json.loads(scan["metrics"]) if scan.get("metrics") else {}
    calibration = metrics.get("calibration")
    if calibration:
        st.caption(calibration_caption(calibration))
        too_many = flagged_warning(float(flags.mean()), calibration.get("target_fpr"))
        if too_many:
            st.warning(too_many)

    campaigns = reads().scan_campaigns(scan_id)
    if len(campaigns):
        st.subheader("Recurring triggers")
        st.caption("Text that recurs among the top-scored titles and lifts their scores: every item carrying it is "
                   "flagged whatever its own score (core.pscanner.campaign.find_campaigns).")
        st.dataframe(campaigns if has_labels else campaigns.drop(columns="poisoned"), hide_index=True,
                     key="scanner_campaigns_table",
                     column_config={"trigger": st.column_config.TextColumn("trigger", help="plain text"),
                                    "min_score": st.column_config.NumberColumn("lowest score", format="%.3f"),
                                    "max_score": st.column_config.NumberColumn("highest score", format="%.3f")})

    series = metrics.get("series_passed")
    if series:
        with st.expander(f"Series names passed over ({len(series)})"):
            st.caption("Text that recurs among the top-scored titles and lifts their scores like a trigger, but whose "
                       "titles read as one series (once it is removed they leave fragments or share words), so its "
                       "items were not flagged for it (core.pscanner.campaign.series_like). A franchise name, "
                       "usually; an attacker who triggers a franchise's titles would show here too.")
            st.dataframe(series, hide_index=True, key="scanner_series_table",
                         column_config={"text": st.column_config.TextColumn("text", help="plain text"),
                                        "n_titles": st.column_config.NumberColumn("items"),
                                        "median_score": st.column_config.NumberColumn("median score", format="%.3f"),
                                        "median_without": st.column_config.NumberColumn("median without it",
                                                                                        format="%.3f")})

    st.subheader("Items")
    f1, f2, f3, f4 = st.columns([2, 1, 1, 1])
    search = f1.text_input("Search", key="scanner_search", help="Substring of the title, or an exact item id.")
    show = f2.selectbox("Show", ["flagged", "all", "not flagged"], key="scanner_show",
                        help="Flagged = score at or above the threshold, or carrying a recurring trigger or a "
                             "Unicode-hygiene finding.")
    sort = f3.selectbox("Sort by", list(Store.SCAN_SORTS), key="scanner_sort", help="Sorted in the database.")
    descending = f4.toggle("Descending", value=True, key="scanner_desc", help="Highest first.")
    flag_filter = {"flagged": True, "all": None, "not flagged": False}[show]
    total = reads().scan_results_count(scan_id, search, flag_filter, threshold=threshold)
    rows = reads().scan_results_page(scan_id, search, flag_filter, threshold=threshold, sort=sort,
                                     descending=descending, limit=500)
    st.caption(f"{total:,} matching items" + (" (first 500 shown)" if total > 500 else ""))
    st.dataframe(rows, hide_index=True, key="scanner_table",
                 column_config={"score": st.column_config.ProgressColumn("score", min_value=0.0, max_value=1.0,
                                                                         format="%.3f"),
                                "span": st.column_config.TextColumn("suspicious span",
                                                                    help="the part of the title the scanner "
                                                                         "suspects (plain text)"),
                                "marked": st.column_config.TextColumn("title with span marked",
                                                                      help="the suspicious span between ⟦ ⟧"),
                                "campaign": st.column_config.TextColumn("recurring trigger",
                                                                        help="flagged because it carries this"),
                                "reason": st.column_config.TextColumn("unicode finding",
                                                                      help="what Unicode hygiene found, e.g. 'contains "
                                                                           "U+200B ZERO WIDTH SPACE' (plain text)")})


    def flagged_csv() -> bytes:
        return reports.table_bytes(reads().scan_results_page(scan_id, flagged=True, threshold=threshold,
                                                             limit=10**7), "csv")


    st.download_button("Export flagged items (CSV)", flagged_csv, file_name=f"{scan_id}-flagged.csv", mime="text/csv",
                       key="scanner_export", type="primary", on_click="ignore",
                       help="Every flagged item (at or above the threshold, or carrying a recurring trigger or a "
                            "Unicode-hygiene finding); formula-safe CSV.")

    st.subheader("Scores")
    labels_gt = scores["label"].fillna(False).astype(bool).to_numpy() if has_labels else None
    histogram = plots.score_histogram(scores["score"].to_numpy(), labels_gt, threshold)
    figures = {"scores": histogram}
    if has_labels:  # ROC and PR beside the histogram; without ground truth the histogram takes the width
        figures["roc"] = plots.roc_curve(scores["score"][labelled].to_numpy(), labels_gt[labelled], m["auc"])
        figures["pr"] = plots.pr_curve(scores["score"][labelled].to_numpy(), labels_gt[labelled])
    for column, (name, fig) in zip(st.columns(len(figures)), figures.items()):
        with column:
            figure(fig, f"{scan_id}-{name}", f"scanner_{name}")
    st.download_button("Download scan report (HTML, all plots)",
                       lambda: reports.figures_report_html(f"Scan {label}", list(figures.values()),
                                                           [f"scan id {scan_id}", f"threshold {threshold:.3f}"]),
                       file_name=f"{scan_id}-report.html", mime="text/html", key="scanner_report", on_click="ignore",
                       help="One self-contained file with every plot above (interactive, offline; plotly.js once).")


scan_view(scan_id, labels[scan_id])
