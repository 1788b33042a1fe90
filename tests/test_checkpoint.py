"""Resumable training: a run killed mid-epoch (SIGKILL) and resumed equals an unbroken run, step for step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tiny_helpers import TINY

from core.lm.checkpoint import STATE_FILE, Checkpointing
from core.lm.models import ModelConfig, add_lora, load_model
from core.lm.train import TrainConfig, train_lm

PAIRS = [(f"This user has watched Movie {chr(65 + i)}{i} (1980).", f" Movie {chr(66 + i)}{i + 1} (1981)")
         for i in range(12)]
CFG = TrainConfig(epochs=2, batch_size=2, lr=1e-2, seed=5, log_every=1)
ROOT = Path(__file__).resolve().parents[1]

# the same training in a child process, slowed down per step, checkpointing after every step
CHILD = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from conftest import make_synthetic
from test_checkpoint import CFG, PAIRS, victim
from core.lm.checkpoint import Checkpointing
from core.progress import CallbackProgress
from core.lm.train import train_lm
slow = CallbackProgress(lambda *a: time.sleep(0.3))
train_lm(victim(make_synthetic()), PAIRS, CFG, slow, checkpoint=Checkpointing(__import__("pathlib").Path({ck!r}), "k", 0))
"""


def victim(synthetic):
    return add_lora(load_model(ModelConfig(dtype="fp32"), synthetic, tiny=TINY), ModelConfig(lora_r=4), seed=1)


def adapter(loaded) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in loaded.model.named_parameters() if p.requires_grad}


def test_a_killed_run_resumes_to_the_same_weights_and_losses(home, synthetic, tmp_path):
    unbroken = victim(synthetic)  # also builds the tiny base once in this home
    full = train_lm(unbroken, PAIRS, CFG)
    ck = tmp_path / "ck"
    code = CHILD.format(root=str(ROOT), tests=str(ROOT / "tests"), ck=str(ck))
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    step = 0
    while step < 4 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
        try:
            step = json.loads((ck / STATE_FILE).read_text())["step"]
        except (OSError, ValueError, KeyError):
            continue
    assert child.poll() is None, child.stderr.read().decode()[-2000:]
    child.send_signal(signal.SIGKILL)  # mid-epoch: epoch 1 has 6 steps of 12
    child.wait()
    killed_at = json.loads((ck / STATE_FILE).read_text())["step"]
    assert 4 <= killed_at < full.steps

    resumed_victim = victim(synthetic)
    resumed = train_lm(resumed_victim, PAIRS, CFG, checkpoint=Checkpointing(ck, "k", 0))
    assert resumed.resumed_at == killed_at and resumed.steps == full.steps and resumed.losses == full.losses
    got, want = adapter(resumed_victim), adapter(unbroken)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_a_checkpoint_of_other_training_is_ignored(home, synthetic, tmp_path):
    ck = Checkpointing(tmp_path / "ck", "first", 0)
    train_lm(victim(synthetic), PAIRS[:4], TrainConfig(epochs=2, batch_size=2, seed=5), checkpoint=ck)
    assert (ck.folder / STATE_FILE).exists()
    other = train_lm(victim(synthetic), PAIRS, CFG, checkpoint=Checkpointing(ck.folder, "second", 0))
    assert other.steps == 12 and len(other.losses) == 12


@pytest.mark.parametrize("lora_layers", [0, 1])
def test_a_cancelled_attack_resumes_to_the_unbroken_numbers(store, monkeypatch, lora_layers):
    """`attack --resume RUN_ID`: the poisoned model continues from its checkpoint and the run's numbers
    equal an unbroken run's (same seed, same clean model from the cache). With adapters on the top block of
    three, the unbroken run's poisoned model reused the clean training's frozen-block features and the
    resumed one computes its own: the same numbers either way."""
    from tiny_helpers import synthetic_store, tiny_attack

    from core.attack.experiment import resumable_config, run_attack
    from core.errors import InputError
    from core.progress import CallbackProgress, Cancelled
    monkeypatch.setenv("BADREC_CHECKPOINT_S", "0")
    synthetic_store(store)
    cfg = tiny_attack(train=TrainConfig(epochs=1, batch_size=4, max_len=256), tiny=replace(TINY, layers=3),
                      model=ModelConfig(lora_layers=lora_layers))
    unbroken = run_attack(store, cfg)

    cancel = CallbackProgress(lambda *a: None)

    def stop_mid_poisoning(done, total, message, eta):
        if message.startswith("poisoned model") and done >= 3:
            cancel.cancel.set()
    cancel.fn = stop_mid_poisoning
    try:
        run_attack(store, cfg, cancel, run_id="attack-killed")
    except Cancelled:
        pass
    assert store.get_run("attack-killed")["status"] == "cancelled"
    again = run_attack(store, resumable_config(store, "attack-killed"), run_id="attack-killed")
    assert again["poisoned"] == unbroken["poisoned"] and again["clean"] == unbroken["clean"]
    assert again["train"]["poisoned"]["steps"] == unbroken["train"]["poisoned"]["steps"]
    assert again["train"]["poisoned"]["resumed_at"] >= 3 and unbroken["train"]["poisoned"]["resumed_at"] == 0
    try:
        resumable_config(store, "attack-killed")
    except InputError as exc:
        assert "already finished" in str(exc)
    else:
        raise AssertionError("a finished run must not resume")
