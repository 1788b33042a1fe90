"""Triggers: design a trigger with a live preview on real titles, see the augmentation agent's samples,
save named trigger sets."""

import pandas as pd
import streamlit as st

from core.attack.badrec import default_trigger
from core.errors import BadRecError
from core.pscanner.agent import AgentConfig, propose
from core.triggers import LEVELS, POSITIONS, PRESETS, Trigger, apply_trigger
from pages.shared import dataset_picker, page, reads, show_error, store

DEFAULT_POSITION = default_trigger().position  # one default everywhere: AttackConfig's, which the CLI uses

page("Triggers", "A trigger is a short string an attacker adds to its item titles; the poisoned model learns "
                 "to favour any title that carries it.")

dataset = dataset_picker()
if dataset is None:
    st.stop()
if "triggers_pending" not in st.session_state:
    st.session_state.triggers_pending = []

design, preview = st.columns([1, 2])
with design:
    level = st.selectbox("Level", LEVELS, key="triggers_level",
                         help="char: a rare character pair (5v); word: a rare word; sentence: a short phrase.")
    preset = st.selectbox("Preset", [*PRESETS[level], "(custom)"], key="triggers_preset",
                          help="The paper's examples; choose (custom) to type your own.")
    text = st.text_input("Custom trigger", key="triggers_custom", disabled=preset != "(custom)",
                         help="Up to 80 characters; shown and stored as plain text.")
    position = st.radio("Position", POSITIONS, index=POSITIONS.index(DEFAULT_POSITION), key="triggers_position",
                        horizontal=True, help=f"Default {DEFAULT_POSITION}, as on the Attack page and the CLI "
                                              "(the small model needs the first answer token to see it); suffix "
                                              "as in the paper; or a random word boundary.")
    seed = st.number_input("Seed", 0, 10_000, 0, key="triggers_seed",
                           help="Picks the preview titles and the random position.")

trigger = None
try:
    trigger = Trigger(text if preset == "(custom)" else preset, level, position, int(seed))
except BadRecError as exc:
    with design:
        show_error(exc)

with preview:
    st.subheader("Preview on real titles")
    titles = reads().sample_titles(dataset, 8, int(seed))
    if trigger is not None:
        try:
            shown = pd.DataFrame({"original": titles, "with trigger": [apply_trigger(t, trigger) for t in titles]})
            st.dataframe(shown, hide_index=True, key="triggers_preview")
        except BadRecError as exc:
            show_error(exc)

st.subheader("Trigger sets")
set_left, set_right = st.columns([1, 2])
with set_left:
    if st.button("Add this trigger to the set", key="triggers_add", disabled=trigger is None,
                 help="Collect triggers, then save them under a name for the attack and the scanner."):
        if trigger.to_dict() not in st.session_state.triggers_pending:
            st.session_state.triggers_pending.append(trigger.to_dict())
    set_name = st.text_input("Set name", key="triggers_set_name", help="Saving under an existing name replaces it.")
    if st.button("Save set", key="triggers_save", type="primary",
                 disabled=not (set_name.strip() and st.session_state.triggers_pending),
                 help="Store the collected triggers in DuckDB."):
        store().save_trigger_set(set_name.strip(), st.session_state.triggers_pending)
        st.session_state.triggers_pending = []
        st.success(f"Saved {set_name.strip()!r}.")
    if st.session_state.triggers_pending:
        st.dataframe(pd.DataFrame(st.session_state.triggers_pending), hide_index=True)
with set_right:
    saved = reads().trigger_sets()
    if saved:
        st.dataframe(pd.DataFrame([{"set": name, **t} for name, ts in saved.items() for t in ts]),
                     hide_index=True, key="triggers_saved")
    else:
        st.caption("No saved trigger sets yet.")

st.subheader("Augmentation agent samples")
st.caption("Synthetic triggers the scanner is trained to flag: a seeded offline generator (an LLM endpoint "
           "can add more when configured with BADREC_LLM_BASE_URL / BADREC_LLM_MODEL).")
a1, a2, a3 = st.columns(3)
n = a1.number_input("How many", 1, 200, 12, key="triggers_agent_n", help="Number of synthetic triggers to show.")
agent_seed = a2.number_input("Agent seed", 0, 10_000, 0, key="triggers_agent_seed",
                             help="The same seed gives the same triggers.")
families = a3.multiselect("Families", LEVELS, default=list(LEVELS), key="triggers_agent_families",
                          help="Trigger levels to generate.")
if families:
    try:
        proposal = propose(AgentConfig(n=int(n), seed=int(agent_seed), families=tuple(families)))
        examples = titles or ["Example title (1995)"]
        samples = pd.DataFrame([{"trigger": t.text, "family": t.family, "position": t.position, "glue": t.glue,
                                 "example": t.render(examples[i % len(examples)], i)}
                                for i, t in enumerate(proposal.triggers)])
    except BadRecError as exc:
        show_error(exc)
    else:
        for warning in proposal.warnings:
            st.warning(warning)
        st.dataframe(samples, hide_index=True, key="triggers_agent_table")
