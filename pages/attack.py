"""Attack: configure BadRec (victim, model, quantization, LoRA, target items, ρ, fake users), launch it as a
background job, follow it live, and browse the run history."""

import streamlit as st

from pages.shared import dataset_picker, job_monitor, page, store

page("Attack", "Train a clean and a poisoned recommender on the same data and candidates; the difference is "
               "the backdoor.")

dataset = dataset_picker(kind="interactions")
if dataset is None:
    st.stop()

st.header("Running and queued")
job_monitor("attack", "attack_monitor")

st.header("Run history")
runs = store().list_runs("attack")
if runs.empty:
    st.caption("No attack run yet.")
else:
    st.dataframe(runs[["run_id", "dataset", "status", "progress", "message", "error", "created_at", "finished_at"]],
                 hide_index=True, key="attack_history")
