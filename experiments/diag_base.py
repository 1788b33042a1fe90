"""Diagnostics of a (cached) base or victim without training: LLaRA-format HR@1 and where a triggered
candidate ranks, on the first N test users. Usage: python experiments/diag_base.py [N] [ADAPTER_DIR]"""

from __future__ import annotations

import sys

import numpy as np

from core.attack.badrec import AttackConfig, attack_cases
from core.attack.experiment import prepare, to_case
from core.attack.recommend import llara_scores
from core.lm.models import load_adapter, load_model
from core.metrics import hit_at_k, ranking_metrics
from core.runs.store import Store
from core.settings import db_path

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
cfg = AttackConfig(eval_users=n)
prep = prepare(Store(db_path()), cfg)
model = load_model(cfg.model, prep.ds, protocol=cfg.protocol, tiny=cfg.tiny)
if len(sys.argv) > 2:
    model = load_adapter(model, sys.argv[2])
cases = prep.split.test[:n]
for kind in ("clean", "trigger", "no_trigger", "transfer"):
    evs = attack_cases(prep.split, cases, kind, prep.data, cfg.trigger, cfg.seed)
    s = llara_scores(model, [to_case(prep, e) for e in evs])
    if kind == "clean":
        print(kind, {k: round(v, 3) for k, v in ranking_metrics(s, [e.target_pos for e in evs]).items()})
    else:
        gap = [si[e.inserted_pos] - si[e.target_pos] for si, e in zip(s, evs)]
        print(kind, "hit@1", round(np.mean([hit_at_k(si, e.inserted_pos, 1) for si, e in zip(s, evs)]), 3),
              "hit@5", round(np.mean([hit_at_k(si, e.inserted_pos, 5) for si, e in zip(s, evs)]), 3),
              "median logp(inserted) - logp(target)", round(float(np.median(gap)), 2))
