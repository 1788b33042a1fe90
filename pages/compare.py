"""Compare: one test user's clean and triggered recommendations side by side, clean vs poisoned model,
the run's metrics, and ASR against ρ across runs."""

import pandas as pd
import streamlit as st

from core.views import plots, reports
from pages.shared import figure, page, reads, store

VARIANTS = {"clean": "test candidates", "no_trigger": "attacker's item inserted, no trigger",
            "trigger": "attacker's item inserted with trigger", "transfer": "trigger on another item"}
USER_FILTERS = {"all": "all test users", "changed": "users whose list changed", "hit": "users where the trigger wins"}
LIST_COLUMNS = {
    "rank": st.column_config.NumberColumn("rank", width="small", help="1 = recommended first"),
    "score": st.column_config.NumberColumn("score", format="%.2f", width="small",
                                           help="the model's log-likelihood of the title as its answer"),
    "is_attack_item": st.column_config.CheckboxColumn("attacker's", width="small",
                                                      help="the attacker's (poisoned) item"),
    "is_target": st.column_config.CheckboxColumn("true next", width="small",
                                                 help="the user's held-out next item (the test item)"),
    "rank_change": st.column_config.NumberColumn(
        "rank change", width="small", help="rank in the left list minus rank here; positive = moved up, "
                                           "empty = not in the left list's top"),
}

page("Compare", "What the backdoor does to one user: the same candidate list ranked without and with the "
                "trigger on the attacker's item.")

runs = reads().list_runs("attack")
done = runs[runs["status"] == "done"] if len(runs) else runs
if done.empty:
    st.info("No finished attack run yet: launch one on the Attack page.")
    st.stop()

options = done["run_id"].tolist()
linked = st.query_params.get("run")  # a link (…/compare?run=ID) or the Attack page's "Open in Compare"
if linked in options and "compare_run" not in st.session_state:
    st.session_state["compare_run"] = linked
run_id = st.selectbox("Run", options, key="compare_run", help="A finished attack run (newest first).")
st.query_params["run"] = run_id  # the address names the run shown, so it can be shared
run = reads().get_run(run_id)
for caveat in reports.run_caveats(run):  # a toy victim or a reduced run says so before any number
    if caveat.startswith("Victim:"):
        st.caption(caveat)
    else:
        st.warning(caveat, icon=":material/science:")

metrics = reads().run_metrics(run_id)
if len(metrics):
    wide = metrics.pivot_table(index="model", columns="name", values="value")
    headline = [("poisoned", "asr", "ASR", "share of test cases where the triggered item ranks first; "
                                           "higher = stronger attack (lower is better after defence)"),
                ("poisoned", "asr_no_trigger", "ASR without trigger", "the same item without its trigger; "
                                                                       "low means the trigger is the cause"),
                ("clean", "hr@1", "HR@1 clean model", "hit rate at 1 on clean test cases; higher is better"),
                ("poisoned", "hr@1", "HR@1 poisoned model", "close to the clean model = a stealthy attack")]
    cols = st.columns(len(headline))
    for col, (model, name, label, help_text) in zip(cols, headline):
        if model in wide.index and name in wide.columns and pd.notna(wide.loc[model, name]):
            col.metric(label, f"{wide.loc[model, name]:.3f}", help=help_text)

lists = reads().rec_variants(run_id)
if lists.empty:
    st.warning("This run stored no recommendation lists.")
    st.stop()
models = sorted(lists["model"].unique())
model = st.radio("Model", models, index=models.index("poisoned") if "poisoned" in models else 0,
                 key="compare_model", horizontal=True,
                 help="poisoned: trained with the attacker's data; clean: the same recipe without it.")
available = lists[lists["model"] == model]["variant"].tolist()
v1, v2 = st.columns(2)
baseline = v1.selectbox("Left list", [v for v in ("no_trigger", "clean") if v in available], key="compare_left",
                        format_func=VARIANTS.get,
                        help="The same candidates as the right list but without the trigger (no_trigger), or the "
                             "plain test candidates (clean).")
variant = v2.selectbox("Right list", [v for v in ("trigger", "transfer") if v in available], key="compare_right",
                       format_func=VARIANTS.get,
                       help="trigger: the attacker's item with its trigger; transfer: the trigger on an item never "
                            "used in poisoning (does the backdoor key on the trigger alone?).")

users = reads().rec_users(run_id, model=model, left=baseline or "", right=variant or "")
u1, u2 = st.columns([1, 2])
show = u1.radio("Show", list(USER_FILTERS), format_func=USER_FILTERS.get, key="compare_filter",
                help="list changed: the right list orders the candidates differently from the left one; "
                     "trigger wins: the poisoned model's triggered list ranks the attacker's item first.")
shown = users if show == "all" else users[users[show]]
flags = users.set_index("user_id")
if shown.empty:
    u2.info(f"No test user of this run matches “{USER_FILTERS[show]}”.")
    st.stop()
user = u2.selectbox(f"Test user ({len(shown):,} of {len(users):,})", shown["user_id"].tolist(), key="compare_user",
                    format_func=lambda u: f"user {u}" + (" · trigger wins" if flags.loc[u, "hit"] else "")
                    + (" · list changed" if flags.loc[u, "changed"] else ""),
                    help="In numeric order of user id.")

with st.expander(f"History of user {user} (newest first; the newest is the held-out test item)"):
    history = reads().user_history(run["dataset"], user, limit=11)
    roles = ["test item (held out)", "validation item"] + ["history"] * max(len(history) - 2, 0)
    history = history.assign(role=roles[:len(history)])
    st.caption("Interactions with the same timestamp keep the order the dataset file lists them in, as the "
               "evaluation protocol does, so the newest row is the test item highlighted in the lists.")
    st.dataframe(history[["role", "title", "rating", "ts"]].style.apply(
        lambda row: ["background-color: #E3F2E6"] * len(row) if row["role"].startswith("test") else [""] * len(row),
        axis=1), hide_index=True, key="compare_history")


def highlight(row: pd.Series) -> list[str]:
    if row.get("is_attack_item"):
        return ["background-color: #FDE2E1; font-weight: 600"] * len(row)
    if row.get("is_target"):
        return ["background-color: #E3F2E6"] * len(row)
    return [""] * len(row)


recs = reads().recommendations_for(run_id, user)
top_k = int((run.get("config") or {}).get("top_k") or 10)
left, right = st.columns(2)
plain = recs[(recs["model"] == model) & (recs["variant"] == baseline)]
left.markdown(f"**{VARIANTS.get(baseline, baseline)}**")
left.dataframe(plain[["rank", "title", "score", "is_attack_item", "is_target"]].style.apply(highlight, axis=1),
               hide_index=True, key="compare_left_list", column_config=LIST_COLUMNS)
side = reads().rec_side_by_side(run_id, user, model, variant, baseline) if variant else plain.iloc[0:0]
right.markdown(f"**{VARIANTS.get(variant, variant)}** (red: the attacker's item; green: the true next item)")
right.dataframe(side[["rank", "rank_change", "title", "score", "is_attack_item", "is_target"]]
                .style.apply(highlight, axis=1), hide_index=True, key="compare_right_list",
                column_config=LIST_COLUMNS)
attack = side[side["is_attack_item"]]
for a in attack.itertuples():  # the inserted item, and any other attacker's item among the candidates
    beyond = f" (below the top {top_k}, shown after it)" if int(a.rank) > top_k else ""
    st.text(f"Attacker's item at rank {int(a.rank)}{beyond}: {a.title}")
if variant and attack.empty:
    st.text(f"Attacker's item: below the top {top_k} (this run stored only the top {top_k} of each list)")
st.markdown("**The attacker's item for this user in every list** (rank; 1 = recommended first)")
ranks = reads().attack_item_ranks(run_id, user).set_index("model")
# a run that stored only its top lists cannot know a lower rank: say "> 10" rather than nothing
st.dataframe(ranks.apply(lambda col: col.map(lambda r: f"> {top_k}" if pd.isna(r) else str(int(r)))).reset_index(),
             hide_index=True, key="compare_ranks")

if len(metrics):
    st.subheader("Run metrics")
    intervals = reports.interval_table(run)
    if len(intervals):
        st.caption("95 % intervals over the run's test users (Wilson for a rate, normal for a mean rank; for "
                   "poisoned − clean, over the differences of the same users' answers): a difference whose interval "
                   "holds 0 is not resolved by this many users. A mean rank is the inserted item's place among the "
                   "candidates (1 = first): the untriggered attacker's item climbing under the poisoned model is a "
                   "backdoor keyed on the item as well as on the trigger.")
        st.dataframe(intervals, hide_index=True, key="compare_intervals")
    st.dataframe(metrics.pivot_table(index="name", columns="model", values="value").reset_index(), hide_index=True)
    figure(plots.metrics_bars(metrics), f"{run_id}-metrics", "compare_metrics")
    st.download_button("Download run report (HTML, all plots)", lambda: reports.run_report_html(store(), run_id),
                       file_name=f"{run_id}.html", mime="text/html", key="compare_report", on_click="ignore",
                       help="One self-contained file: caveats, config, metrics, every plot of the run, tables.")

st.subheader("Across runs")
m1, m2 = st.columns(2)
metric = m1.selectbox("Metric", ["asr", "asr_no_trigger", "asr_transfer", "hr@1"], key="compare_metric",
                      help="Plotted against the dose, one line per recipe: dataset · victim · model · candidates · "
                           "clean training samples · epochs.")
dose = m2.radio("Dose as", list(plots.DOSE_AXES), format_func=plots.DOSE_AXES.get, key="compare_dose",
                help="ρ is a share; what forms a backdoor is closer to the number of poisoned samples.")
points = reports.dose_points(reads().metrics_across_runs("attack"), metric)
if len(points):
    figure(plots.metric_vs_dose(points, metric, dose), f"{metric}-vs-dose", "compare_rho")
else:
    st.caption("No finished run has this metric yet.")
