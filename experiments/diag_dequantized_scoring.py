"""Is the 4-bit base the cost of rank-mode evaluation? Scores of the cached 4-bit clean victim with bnb's
Linear4bit vs the same model with each Linear4bit swapped for an fp32 Linear of its dequantized weights.

Usage: BADREC_HOME=<home of a cached default attack> PYTHONPATH=. python experiments/diag_dequantized_scoring.py N_USERS
"""
import sys
import time

import numpy as np
import torch
from core import settings
from core.store import Store
from core.attack import AttackConfig
from core.experiment import prepare, _base, _clean_folder, to_case, _variants
from core.models import ModelConfig, load_adapter
from core.recommend import llara_scores
torch.set_num_threads(2)
store = Store(settings.db_path())
cfg = AttackConfig(model=ModelConfig(quant="4bit"))
prep = prepare(store, cfg)
loaded = load_adapter(_base(cfg, prep, None), _clean_folder(cfg))
evs = _variants(cfg, prep, ("clean",))["clean"][:int(sys.argv[1])]
cases = [to_case(prep, e) for e in evs]
llara_scores(loaded, cases[:4])
t = time.perf_counter(); a = llara_scores(loaded, cases); ta = time.perf_counter() - t
import bitsandbytes as bnb
from bitsandbytes.functional import dequantize_4bit
n = 0
for name, mod in list(loaded.model.named_modules()):
    base = getattr(mod, "base_layer", None)
    if isinstance(base, bnb.nn.Linear4bit):
        w = dequantize_4bit(base.weight.data, base.weight.quant_state).float()
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=base.bias is not None)
        lin.weight.data = w
        if base.bias is not None: lin.bias.data = base.bias.data.float()
        mod.base_layer = lin; n += 1
print("swapped", n, "layers; other Linear4bit:", sum(isinstance(m, bnb.nn.Linear4bit) for m in loaded.model.modules()))
llara_scores(loaded, cases[:4])
t = time.perf_counter(); b = llara_scores(loaded, cases); tb = time.perf_counter() - t
a, b = np.array(a), np.array(b)
print(f"users {len(cases)}: 4bit {ta:.1f}s  dequantized {tb:.1f}s  speedup {ta/tb:.2f}  max|diff| {np.abs(a-b).max():.2e}  same argmax {np.mean(a.argmax(1)==b.argmax(1)):.3f}")
