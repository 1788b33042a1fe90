"""Attack: configure BadRec (victim, model, quantization, LoRA, target items, ρ, fake users), launch it as a
background job, follow it live, and browse the run history."""

import pandas as pd
import streamlit as st

from core.errors import BadRecError
from core.triggers import LEVELS, POSITIONS, PRESETS, Trigger
from pages.shared import dataset_picker, job_monitor, jobs, page, show_error, store, submit_job

ENGINE_MISSING = None
try:
    from core.attack import AttackConfig
    from core.experiment import run_attack
    from core.models import ModelConfig
except ImportError as exc:  # the attack engine lands separately (issue 3); the history still works
    ENGINE_MISSING = str(exc)

page("Attack", "Train a clean and a poisoned recommender on the same data and candidates; the difference is "
               "the backdoor.")

dataset = dataset_picker(kind="interactions")
if dataset is None:
    st.stop()

st.subheader("Target items")
t1, t2 = st.columns([1, 2])
search = t1.text_input("Find target items", key="attack_target_search",
                       help="Type part of a title; matching items appear in the list to the right.")
found = store().search_items(dataset, search, limit=100)
labels = {r.item_id: f"{r.title} · {r.n} interactions" for r in found.itertuples()}
chosen = st.session_state.get("attack_targets", [])
labels.update({i: st.session_state.get("attack_target_labels", {}).get(i, i) for i in chosen if i not in labels})
targets = t2.multiselect("Target items", list(labels), format_func=labels.get, key="attack_targets",
                         help="The attacker's own items (several teach the model that the trigger matters). "
                              "Empty = picked automatically from the less popular half.")
st.session_state["attack_target_labels"] = {i: labels[i] for i in targets}

with st.form("attack_form"):
    st.subheader("Victim and model")
    c1, c2, c3 = st.columns(3)
    victim = c1.radio("Victim", ["llara", "tallrec"], key="attack_victim", horizontal=True,
                      help="llara: choose the next item from 20 candidates; tallrec: yes/no per item.")
    model_kind = c2.selectbox("Model", ["tiny", "Hugging Face id or local folder"], key="attack_model_kind",
                              help="tiny: a small Llama-style LM built here on the dataset's titles — a stand-in "
                                   "for a real LLM that trains on a CPU in minutes.")
    model_id = c2.text_input("Model id or path", key="attack_model_id", placeholder="Qwen/Qwen2.5-0.5B",
                             help="Used when Model is not tiny. Weights as safetensors; remote code stays off.")
    quant = c3.selectbox("Quantization", ["none", "8bit", "4bit"], key="attack_quant",
                         help="8bit/4bit (NF4, QLoRA) through bitsandbytes; none = bf16/fp32.")
    l1, l2, l3 = st.columns(3)
    lora_r = l1.number_input("LoRA rank", 0, 256, 16, key="attack_lora_r",
                             help="0 = full fine-tuning (tiny model only).")
    lora_alpha = l2.number_input("LoRA alpha", 1, 512, 32, key="attack_lora_alpha", help="LoRA scaling factor.")
    seed = l3.number_input("Seed", 0, 1_000_000, 0, key="attack_seed",
                           help="Seeds the split, the poison and training: same seed, same numbers.")

    st.subheader("Poison")
    p1, p2, p3 = st.columns(3)
    level = p1.selectbox("Trigger level", LEVELS, key="attack_level",
                         help="Design and preview triggers on the Triggers page.")
    trigger_text = p1.text_input("Trigger text", key="attack_trigger", placeholder="preset of the level",
                                 help="Empty = the level's preset (5v / ineffable / I watched this 3D movie).")
    position = p1.radio("Position", POSITIONS, key="attack_position", horizontal=True,
                        help="Where the trigger goes in the attacker's titles.")
    ratio = p2.number_input("Poisoning ratio ρ", 0.001, 0.5, 0.01, 0.001, format="%.3f", key="attack_ratio",
                            help="Poisoned training samples / all training samples (the paper uses ~1%).")
    fake = p2.radio("Fake users", ["random", "copy"], key="attack_fake", horizontal=True,
                    help="random: benign histories drawn at random; copy: copies of real users' histories.")
    with st.expander("Advanced (size of the run)"):
        a1, a2, a3 = st.columns(3)
        epochs = a1.number_input("Epochs", 1, 50, 2, key="attack_epochs", help="Fine-tuning passes.")
        max_users = a2.number_input("Max test users", 0, 100_000, 0, key="attack_max_users",
                                    help="0 = all; fewer makes evaluation faster (e.g. 20 for a smoke test).")
        tiny_size = a3.selectbox("Tiny model size", ["small", "tiny-test"], key="attack_tiny_size",
                                 help="tiny-test: a toy model for smoke tests (seconds, not meaningful numbers).")
    submitted = st.form_submit_button("Launch attack", type="primary", disabled=ENGINE_MISSING is not None)

if ENGINE_MISSING:
    st.info(f"The attack engine is not installed in this build ({ENGINE_MISSING}); the run history below "
            "shows runs made elsewhere (CLI).")
elif submitted:
    try:
        trigger = Trigger(trigger_text.strip() or PRESETS[level][0], level, position, int(seed))
        cfg = AttackConfig(dataset=dataset, victim=victim, trigger=trigger, poison_ratio=float(ratio),
                           fake_users=fake, target_items=tuple(targets), seed=int(seed),
                           model=ModelConfig(name="tiny" if model_kind == "tiny" else model_id.strip(), quant=quant,
                                             lora_r=int(lora_r), lora_alpha=int(lora_alpha)))
        job_store = jobs().store
        run_id = submit_job("attack", dataset, cfg.to_dict(),
                            lambda progress, rid: run_attack(job_store, cfg, progress, rid), "attack_monitor",
                            seed=int(seed))
    except BadRecError as exc:
        show_error(exc)
    else:
        st.success(f"Queued {run_id}.")

st.header("Running and queued")
job_monitor("attack", "attack_monitor")

st.header("Run history")
runs = store().list_runs("attack")
if runs.empty:
    st.caption("No attack run yet.")
else:
    history = runs[["run_id", "dataset", "status", "progress", "message", "error", "created_at", "finished_at"]]
    st.dataframe(history.assign(progress=pd.to_numeric(history["progress"]).fillna(0.0)), hide_index=True,
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                            max_value=1.0)})
