"""Home: what the tool does, the threat model, where to start, and what is running now."""

import streamlit as st

from core.data.dataset import dataset_status
from pages.shared import jobs, page, store

page("BadRec Lab", "Backdoor attacks on LLM-based recommenders, and a scanner that finds them.")

st.markdown(
    "**What it does.** BadRec Lab reproduces *BadRec* and *P-Scanner* from \"Exploring Backdoor Attack and "
    "Defense for LLM-empowered Recommendations\" (arXiv 2504.11182). You fine-tune a recommender that reads "
    "item titles (LLaRA-style next-item choice or TALLRec-style yes/no), poison about 1% of its training data "
    "with a *trigger* appended to a few item titles, and watch the triggered items jump to the top of the "
    "recommendations. Then you scan the catalog for poisoned titles and measure what the scanner catches.")
st.markdown(
    "**Threat model.** The attacker is an item producer: it owns some items, can edit their titles and can "
    "register fake users. It cannot touch the model, the training code or other users' data.")

st.subheader("Where to start")
st.markdown(
    "1. **Dataset**: import ml-100k (found locally or downloaded once) or upload your own catalog.\n"
    "2. **Triggers**: design a trigger and preview it on real titles.\n"
    "3. **Attack**: train a clean and a poisoned recommender in the background (the *tiny* model is a "
    "small stand-in for a real LLM that trains on a CPU in minutes).\n"
    "4. **Compare**: a test user's clean and triggered recommendations side by side.\n"
    "5. **Scanner**: score every title for poisoning; **Reports**: export plots, tables and a run report.")

status = {r["name"]: r for r in dataset_status(store())}
ml = status.get("ml-100k")
if ml and ml["status"] == "imported":
    st.success(f"ml-100k is imported ({ml['n_users']:,} users, {ml['n_items']:,} items): go to Attack.")
elif ml and ml["status"] == "available":
    st.info("ml-100k was found on this machine: import it on the Dataset page (a few seconds, no network).")
else:
    st.warning("ml-100k must be downloaded once (about 5 MB) on the Dataset page.")
if st.button("Open the Dataset page", key="home_go_dataset", help="Import or upload data first."):
    st.switch_page("pages/dataset.py")

active = store().active_runs()
if len(active):
    st.subheader("Running now")
    st.dataframe(active, hide_index=True)
st.caption(f"{jobs().stale_marked} interrupted run(s) from an earlier session were marked failed."
           if jobs().stale_marked else "Jobs run in the background: you can leave a page and come back.")
