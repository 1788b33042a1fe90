"""Dataset: which datasets exist and where from; import or upload one; its statistics and plots."""

import pandas as pd
import streamlit as st

from core.data.dataset import dataset_info, dataset_status, ensure_dataset, save_upload
from core.data.uploads import ColumnMap, read_table, read_upload
from core.errors import BadRecError
from core.progress import CallbackProgress
from core.views import plots
from pages.shared import DATASET_KEY, dataset_picker, figure, page, reads, show_error, store

page("Dataset", "Built-in datasets are found on this machine or downloaded once; uploads are validated "
                "before anything is written.")

STATUS_TEXT = {"imported": "imported (ready)", "available": "found on this machine, not imported yet",
               "downloadable": "must be downloaded once"}

rows = dataset_status(store())
overview = pd.DataFrame(rows)[["name", "status", "kind", "n_users", "n_items", "n_interactions", "terms"]]
overview["status"] = overview["status"].map(STATUS_TEXT)
overview = overview.astype({c: "Int64" for c in ("n_users", "n_items", "n_interactions")})
st.dataframe(overview, hide_index=True, column_config={"terms": st.column_config.TextColumn("terms", width="large")})

builtin_tab, upload_tab = st.tabs(["Built-in dataset", "Upload a file"])

with builtin_tab:
    builtins = [r["name"] for r in rows if r["builtin"]]
    name = st.selectbox("Built-in dataset", builtins, key="dataset_builtin",
                        help="ml-100k is the default: MovieLens 100K, the dataset of LLaRA and TALLRec.")
    row = next(r for r in rows if r["name"] == name)
    if row["status"] == "imported":
        st.success(f"{name} is imported.")
    elif row["status"] == "available":
        st.info(f"{name} was found on this machine; importing takes seconds and needs no network.")
    else:
        st.warning(f"{name} is not on this machine: importing downloads it from its official source "
                   "(checksummed). Without network, put its files in a folder on BADREC_DATA_DIRS.")
    if row["status"] != "imported" and st.button(f"Import {name}", key="dataset_import", type="primary",
                                                 help="Copy the dataset into the local DuckDB store."):
        bar = st.progress(0.0, text=f"importing {name}")

        def on_progress(done, total, message, eta):
            bar.progress(min(done / total, 1.0) if total else 0.0, text=message or f"importing {name}")

        try:
            ensure_dataset(store(), name, progress=CallbackProgress(on_progress))
        except BadRecError as exc:
            show_error(exc)
        else:
            st.session_state[DATASET_KEY] = name
            bar.progress(1.0, text="done")
            st.rerun()

with upload_tab:
    st.markdown("A **catalog** (item id + title, optionally an `is_poisoned` label for scanner evaluation) or "
                "**interactions** (user id + item id + title, optional timestamp and rating). CSV, TSV, "
                "Parquet or JSON Lines.")
    upload = st.file_uploader("File", type=["csv", "tsv", "txt", "parquet", "jsonl", "ndjson"],
                              key="dataset_upload", help="Up to 200 MB. Titles are stored and shown as text.")
    if upload is not None:
        raw = upload.getvalue()
        try:
            columns = list(read_table(raw, upload.name)[0].columns)
        except BadRecError as exc:
            show_error(exc)
            columns = None
        if columns is not None:
            auto = "(guess)"
            with st.form("dataset_mapping"):
                st.caption("Column mapping: leave '(guess)' to use common names (id, title, user_id, timestamp...).")
                cols = st.columns(3)
                picks = {}
                for i, (field, label) in enumerate([("item_id", "Item id"), ("title", "Title"),
                                                    ("user_id", "User id"), ("ts", "Timestamp"),
                                                    ("rating", "Rating"), ("label", "Poison label")]):
                    picks[field] = cols[i % 3].selectbox(label, [auto, *columns], key=f"dataset_map_{field}",
                                                         help=f"Which column holds the {label.lower()}.")
                new_name = st.text_input("Dataset name", value=upload.name.rsplit(".", 1)[0][:64],
                                         key="dataset_upload_name",
                                         help="Letters, digits, '.', '_' or '-'; not a built-in name.")
                check = st.form_submit_button("Validate and preview")
                save = st.form_submit_button("Import", type="primary")
            if check or save:
                mapping = ColumnMap(**{k: (None if v == auto else v) for k, v in picks.items()})
                try:
                    parsed = read_upload(raw, upload.name, mapping)
                    for warning in parsed.warnings:
                        st.warning(warning)
                    st.caption(f"{len(parsed.items):,} items, {len(parsed.interactions):,} interactions "
                               f"({parsed.kind}).")
                    st.dataframe(parsed.items.head(20), hide_index=True)
                    if len(parsed.interactions):
                        st.dataframe(parsed.interactions.head(20), hide_index=True)
                    if save:
                        save_upload(store(), new_name, parsed, f"upload:{upload.name}")
                        st.session_state[DATASET_KEY] = new_name
                        st.success(f"Imported as {new_name}.")
                except BadRecError as exc:
                    show_error(exc)

current = dataset_picker()
if current is None:
    st.stop()

st.header(f"Statistics: {current}")
try:
    info = dataset_info(store(), current, allow_network=False)
except BadRecError as exc:
    show_error(exc)
    st.stop()
cols = st.columns(5)
cols[0].metric("Users", f"{info['n_users']:,}")
cols[1].metric("Items", f"{info['n_items']:,}")
cols[2].metric("Interactions", f"{info['n_interactions']:,}")
if "density" in info:
    cols[3].metric("Density", f"{info['density']:.4f}", help="interactions / (users × items)")
    cols[4].metric("Median sequence", f"{info['median_seq_len']:.0f}", help="interactions per user (median)")
for note in info.get("notes", []):
    st.caption(note)
if info.get("terms"):
    st.caption(f"Terms: {info['terms']}")

left, right = st.columns(2)
if info["kind"] == "interactions":
    with left:
        figure(plots.seq_length_histogram(reads().user_lengths(current).to_numpy(), 5), f"{current}-seq-lengths",
               "dataset_seq")
    with right:
        figure(plots.popularity_tail(reads().item_popularity(current)["n"].to_numpy()), f"{current}-popularity",
               "dataset_pop")
st.subheader("Items")
st.dataframe(reads().search_items(current, st.text_input("Search titles", key="dataset_search",
                                                         help="Case-insensitive substring of the title."),
                                  limit=200), hide_index=True)
