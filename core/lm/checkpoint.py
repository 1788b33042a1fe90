"""Resumable training: the trainable weights, the optimiser, the schedule and the data position on disk.

A real LLM fine-tunes for tens of minutes to hours on a CPU; a crash, a reboot
or a cancel should cost minutes, not the run. `train_segments` saves a
checkpoint every `every_s` seconds (safetensors for tensors, JSON for the rest,
written to a staging folder and renamed, so a kill never leaves half a
checkpoint) and resumes from one whose key matches. The batch plan is a pure
function of the seed, so a resumed run takes the same steps as an unbroken one.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a training stage checkpoints.

    Args:
        folder (`Path`): the checkpoint folder (replaced at each save).
        key (`str`): fingerprint of what is trained (config and data); a checkpoint with another key is ignored.
        every_s (`float`): seconds of training between two saves.
    """

    folder: Path
    key: str
    every_s: float = 300.0


@dataclass
class Resumed:
    """The position a checkpoint restores: the next step and the record of the steps before it."""

    step: int
    losses: list[float]
    tokens: int
    seconds: float


def save(ck: Checkpointing, model, opt, sched, step: int, losses: list[float], tokens: int, seconds: float) -> None:
    """Write a checkpoint after `step` steps, atomically."""
    import torch
    from safetensors.torch import save_file
    tensors = {f"param.{n}": p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for slot, value in slots.items():
            tensors[f"opt.{idx}.{slot}"] = torch.as_tensor(value).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    state = {"key": ck.key, "step": step, "losses": losses, "tokens": tokens, "seconds": seconds,
             "param_groups": opt_state["param_groups"], "scheduler": sched.state_dict()}
    staging = ck.folder.with_name(ck.folder.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(tensors, str(staging / TENSORS_FILE))
    (staging / STATE_FILE).write_text(json.dumps(state))
    old = ck.folder.with_name(ck.folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if ck.folder.exists():
        ck.folder.rename(old)
    staging.rename(ck.folder)
    shutil.rmtree(old, ignore_errors=True)


def restore(ck: Checkpointing, model, opt, sched) -> Resumed | None:
    """Load a matching checkpoint into model, optimiser and schedule; None when there is none."""
    import torch
    from safetensors.torch import load_file
    folder = ck.folder if (ck.folder / STATE_FILE).exists() else ck.folder.with_name(ck.folder.name + ".old")
    if not (folder / STATE_FILE).exists() or not (folder / TENSORS_FILE).exists():
        return None
    state = json.loads((folder / STATE_FILE).read_text())
    if state.get("key") != ck.key:
        return None
    tensors = load_file(str(folder / TENSORS_FILE))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            if name.startswith("param."):
                params[name[len("param."):]].copy_(value)
    slots: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, slot = name.split(".", 2)
            slots.setdefault(int(idx), {})[slot] = value
    opt.load_state_dict({"state": slots, "param_groups": state["param_groups"]})
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return Resumed(state["step"], list(state["losses"]), int(state["tokens"]), float(state["seconds"]))


def saved(folder: Path) -> bool:
    """Whether a checkpoint is on disk in `folder` (or its previous copy, kept while a save replaces it)."""
    return any((f / STATE_FILE).exists() and (f / TENSORS_FILE).exists()
               for f in (folder, folder.with_name(folder.name + ".old")))


def clear(ck: Checkpointing | None) -> None:
    """Remove a finished stage's checkpoint."""
    if ck is not None:
        for folder in (ck.folder, ck.folder.with_name(ck.folder.name + ".part"),
                       ck.folder.with_name(ck.folder.name + ".old")):
            shutil.rmtree(folder, ignore_errors=True)
