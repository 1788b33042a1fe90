"""BadRec with `run_attack` exactly as the CLI runs it, but on a tiny base saved by e05 (SAVE_DIR).

Only the base differs from `python -m core attack`: the model is the folder BASE (a `ModelConfig` name may be
any folder written by `save_pretrained`) instead of the `tiny` base built from the TinyConfig, so recipes for
the base can be compared without paying for a rebuild in every attack. The clean-model cache is keyed by the
model name, so each BASE folder gets its own clean model.

Usage: PYTHONPATH=. python experiments/e06_attack_on_base.py BASE '{"poison_ratio": 0.01, "eval_users": 200}'
(keys: AttackConfig fields; "epochs"/"lr" go to its TrainConfig; "quant" to its ModelConfig)
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from core.attack.badrec import AttackConfig
from core.attack.experiment import run_attack
from core.runs.store import Store
from core.settings import db_path

base_dir = sys.argv[1]
opts = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
cfg = AttackConfig(generate=False)
train = cfg.train
if "epochs" in opts or "lr" in opts:
    train = replace(train, epochs=opts.pop("epochs", train.epochs), lr=opts.pop("lr", train.lr))
model = replace(cfg.model, name=str(Path(base_dir).resolve()), quant=opts.pop("quant", "4bit"))
cfg = replace(cfg, train=train, model=model, **opts)
result = run_attack(Store(db_path()), cfg)
keep = ("seconds", "clean", "poisoned", "baselines", "poisoning", "n_test_users", "train", "timings")
print(json.dumps({"base": base_dir, "config": cfg.to_dict(), **{k: result[k] for k in keep}}, indent=1))
