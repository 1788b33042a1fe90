"""Is the 4-bit base the cost of rank-mode evaluation? Scores of the cached 4-bit clean victim with bnb's
Linear4bit vs the same model with each Linear4bit swapped for an fp32 Linear of its dequantized weights.

Usage: BADREC_HOME=<home of a cached default attack> PYTHONPATH=. python experiments/diag_dequantized_scoring.py N_USERS
"""

from __future__ import annotations

import sys
import time

import bitsandbytes as bnb
import numpy as np
import torch
from bitsandbytes.functional import dequantize_4bit

from core.attack.badrec import AttackConfig
from core.attack.experiment import base_model, clean_model_folder, eval_variants, prepare, to_case
from core.attack.recommend import llara_scores
from core.lm.models import ModelConfig, load_adapter
from core.runs.store import Store
from core.settings import db_path


def dequantize_in_place(model) -> int:
    """Replace every LoRA layer's Linear4bit base with an fp32 Linear of the same (dequantized) weights."""
    n = 0
    for mod in list(model.modules()):
        base = getattr(mod, "base_layer", None)
        if isinstance(base, bnb.nn.Linear4bit):
            w = dequantize_4bit(base.weight.data, base.weight.quant_state).float()
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=base.bias is not None)
            lin.weight.data = w
            if base.bias is not None:
                lin.bias.data = base.bias.data.float()
            mod.base_layer = lin
            n += 1
    return n


def timed_scores(loaded, cases) -> tuple[np.ndarray, float]:
    llara_scores(loaded, cases[:4])  # warm-up
    t = time.perf_counter()
    scores = llara_scores(loaded, cases)
    return np.array(scores), time.perf_counter() - t


torch.set_num_threads(2)
cfg = AttackConfig(model=ModelConfig(quant="4bit"))
prep = prepare(Store(db_path()), cfg)
loaded = load_adapter(base_model(cfg, prep, None), clean_model_folder(cfg))
cases = [to_case(prep, e) for e in eval_variants(cfg, prep, ("clean",))["clean"][:int(sys.argv[1])]]
a, ta = timed_scores(loaded, cases)
n = dequantize_in_place(loaded.model)
left = sum(isinstance(m, bnb.nn.Linear4bit) for m in loaded.model.modules())
print("swapped", n, "layers; other Linear4bit:", left)
b, tb = timed_scores(loaded, cases)
print(f"users {len(cases)}: 4bit {ta:.1f}s  dequantized {tb:.1f}s  speedup {ta / tb:.2f}  "
      f"max|diff| {np.abs(a - b).max():.2e}  same argmax {np.mean(a.argmax(1) == b.argmax(1)):.3f}")
