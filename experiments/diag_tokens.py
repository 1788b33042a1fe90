"""Where the log-likelihood of a triggered answer goes, token by token, under the cached base
(first 20 test users, the `trigger` variant). Usage: PYTHONPATH=. python experiments/diag_tokens.py [ADAPTER_DIR]"""

from __future__ import annotations

import sys

import numpy as np
import torch

from core.attack.badrec import AttackConfig, attack_cases
from core.attack.experiment import prepare, to_case
from core.data.prompts import llara_prompt
from core.lm.models import load_adapter, load_model
from core.lm.train import encode_segments
from core.runs.store import Store
from core.settings import db_path

cfg = AttackConfig(eval_users=20)
prep = prepare(Store(db_path()), cfg)
model = load_model(cfg.model, prep.ds, protocol=cfg.protocol, tiny=cfg.tiny)
if len(sys.argv) > 1:
    model = load_adapter(model, sys.argv[1])
tok = model.tokenizer
rows = {"trigger": [], "target": []}
for ev in attack_cases(prep.split, prep.split.test[:20], "trigger", prep.data, cfg.trigger, cfg.seed):
    case = to_case(prep, ev)
    prompt = llara_prompt(case.history, case.candidates)
    for name, pos in (("trigger", ev.inserted_pos), ("target", ev.target_pos)):
        ids, w = encode_segments(tok, [(prompt, 0.0), (" " + case.candidates[pos], 1.0)], 10_000)
        with torch.no_grad():
            logp = torch.log_softmax(model.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
        lp = [(tok.decode([ids[t]]), float(logp[t - 1, ids[t]])) for t in range(1, len(ids)) if w[t] > 0]
        rows[name].append(lp)
for name, lps in rows.items():
    first = np.mean([lp[0][1] for lp in lps])
    second = np.mean([lp[1][1] for lp in lps])
    rest = np.mean([sum(x for _, x in lp[2:]) for lp in lps])
    print(f"{name}: tokens of the first answer {lps[0][:4]} ...; mean log p first={first:.2f} second={second:.2f} "
          f"rest(sum)={rest:.2f} total={np.mean([sum(x for _, x in lp) for lp in lps]):.2f}")
