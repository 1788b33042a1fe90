"""E15: which embedded model sizes can learn a poison at all, over the dose (the dashboard's demo sizes).

`run_attack` as the CLI runs it (llara, rank mode, prefix `5v`, `copy` fake users) on ml-100k with one of
`core.lm.tinylm.SIZES` and a short protocol (1 window per user, 5 candidates, history 5), fine-tuned with
`epochs`/`lr`, evaluated on the first USERS test users. One JSON line per dose.

Usage: PYTHONPATH=. python experiments/e15_small_model_dose.py SIZE '[[rho, epochs, lr], ...]' [USERS]
"""

from __future__ import annotations

import json
import sys

from core.attack.badrec import AttackConfig
from core.attack.experiment import run_attack
from core.data.protocol import ProtocolConfig
from core.lm.models import ModelConfig
from core.lm.tinylm import SIZES
from core.lm.train import TrainConfig
from core.runs.store import Store
from core.settings import db_path

size, doses = sys.argv[1], json.loads(sys.argv[2])
users = int(sys.argv[3]) if len(sys.argv) > 3 else 20
store = Store(db_path())
for rho, epochs, lr in doses:
    cfg = AttackConfig(poison_ratio=rho, tiny=SIZES[size], model=ModelConfig(quant="none"),
                       train=TrainConfig(epochs=epochs, lr=lr, batch_size=16), windows_per_user=1,
                       protocol=ProtocolConfig(n_candidates=5, history_len=5), eval_users=users, generate=False)
    r = run_attack(store, cfg)
    keep = ("hr@1", "asr", "asr_no_trigger", "asr_transfer")
    print(json.dumps({"size": size, "rho": rho, "epochs": epochs, "lr": lr, "users": users,
                      "n_poison_samples": r["poisoning"]["n_poison_samples"], "seconds": r["seconds"],
                      "clean": {k: r["clean"].get(k) for k in keep}, "poisoned": {k: r["poisoned"].get(k) for k in keep},
                      "popularity_hr@1": r["baselines"]["popularity"]["hr@1"]}), flush=True)
