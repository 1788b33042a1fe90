"""E67: where the untriggered attacker items stand, item by item, in stored attack runs (no training).

asr_no_trigger counts only first places, so one item the clean model already likes can decide it; the mean rank
of the untriggered item over every case is the finer reading of an item-keyed backdoor (poisoned against clean,
on the same cases). The cases are rebuilt from the run's config as in E38, so only the inserted item counts.
One JSON line per run and attacker item, then one per run over all of them, then a control: the same shift for
the clean lists' other negatives from the pool the attacker items are drawn from (the less popular half), which
moves only if the poisoned model favours obscure items in general rather than the attacker's own.

    BADREC_HOME=H python experiments/e67_attacker_item_ranks.py RUN_ID [RUN_ID ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import settings  # noqa: E402
from core.attack.badrec import AttackConfig, less_popular  # noqa: E402
from core.attack.experiment import eval_variants, prepare  # noqa: E402
from core.metrics import paired_difference_interval  # noqa: E402
from core.runs.store import Store  # noqa: E402


def ranks(store: Store, run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per no-trigger case (the inserted attacker item, its title, its rank under each model), and one per
    clean case and negative of the attacker's pool (the case's user, its rank under each model)."""
    cfg = AttackConfig.from_dict(store.get_run(run_id)["config"])
    if cfg.top_k < cfg.protocol.n_candidates:  # E68: 20 candidates, top 10 stored
        sys.exit(f"{run_id}: stored lists hold the top {cfg.top_k} of {cfg.protocol.n_candidates} candidates, "
                 "not every rank; read the run's own mean_rank_no_trigger")
    prep = prepare(store, cfg)
    variants = eval_variants(cfg, prep, ("clean", "no_trigger"))
    stored = store.query("SELECT model, variant, user_id, item_id, rank FROM recommendations WHERE run_id = ?",
                         [run_id]).set_index(["variant", "model", "user_id", "item_id"])["rank"]
    ids = prep.split.item_ids

    def both(variant: str, user, item: int) -> dict:
        return {m: stored[(variant, m, user, ids[item])] for m in ("clean", "poisoned")}

    attacked = pd.DataFrame([{"item_id": ids[e.inserted_item], "title": prep.split.titles[e.inserted_item],
                              **both("no_trigger", e.case.user, e.inserted_item)} for e in variants["no_trigger"]])
    pool = set(less_popular(prep.split).tolist()) - set(prep.data.items)
    control = pd.DataFrame([{"user": e.case.user, **both("clean", e.case.user, c)} for e in variants["clean"]
                            for p, c in enumerate(e.candidates) if p != e.target_pos and c in pool])
    return attacked, control


def summary(df: pd.DataFrame) -> dict:
    """First-place rates and mean ranks of both models; the rank shift (poisoned - clean, the same cases) with a
    normal 95 % interval: below 0 = the poisoned model ranks the untriggered attacker items higher."""
    shift = df["poisoned"] - df["clean"]
    low, high = paired_difference_interval(df["clean"], df["poisoned"])
    return {"cases": len(df), **{f"{m}_top1": round(float((df[m] == 1).mean()), 4) for m in ("clean", "poisoned")},
            **{f"{m}_mean_rank": round(float(df[m].mean()), 3) for m in ("clean", "poisoned")},
            "rank_shift": round(float(shift.mean()), 3),
            "rank_shift_95": [round(low, 3), round(high, 3)]}


def main(run_ids: list[str]) -> None:
    store = Store(settings.db_path())
    for run_id in run_ids:
        attacked, control = ranks(store, run_id)
        for (item, title), g in attacked.groupby(["item_id", "title"]):
            print(json.dumps({"run_id": run_id, "item_id": item, "title": title, **summary(g)}))
        print(json.dumps({"run_id": run_id, "item_id": "all", **summary(attacked)}))
        per_case = control.groupby("user")[["clean", "poisoned"]].mean()  # one value per case: lists are the unit
        print(json.dumps({"run_id": run_id, "item_id": "control: other less popular negatives, clean lists",
                          "negatives": len(control),
                          **{k: v for k, v in summary(per_case).items() if not k.endswith("top1")}}))


if __name__ == "__main__":
    main(sys.argv[1:])
