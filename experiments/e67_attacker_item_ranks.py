"""E67: where the untriggered attacker items stand, item by item, in stored attack runs (no training).

asr_no_trigger counts only first places, so one item the clean model already likes can decide it; the mean rank
of the untriggered item over every case is the finer reading of an item-keyed backdoor (poisoned against clean,
on the same cases). The cases are rebuilt from the run's config as in E38, so only the inserted item counts.
One JSON line per run and attacker item, then one per run over all of them.

    BADREC_HOME=H python experiments/e67_attacker_item_ranks.py RUN_ID [RUN_ID ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import settings  # noqa: E402
from core.attack.badrec import AttackConfig  # noqa: E402
from core.attack.experiment import eval_variants, prepare  # noqa: E402
from core.runs.store import Store  # noqa: E402


def inserted_ranks(store: Store, run_id: str) -> pd.DataFrame:
    """One row per no-trigger case: the inserted attacker item, its title and its rank under each model."""
    cfg = AttackConfig.from_dict(store.get_run(run_id)["config"])
    prep = prepare(store, cfg)
    cases = eval_variants(cfg, prep, ("no_trigger",))["no_trigger"]
    ranks = store.query("SELECT model, user_id, item_id, rank FROM recommendations WHERE run_id = ? "
                        "AND variant = 'no_trigger'", [run_id]).set_index(["model", "user_id", "item_id"])["rank"]
    rows = [{"item_id": prep.split.item_ids[e.inserted_item], "title": prep.split.titles[e.inserted_item],
             **{model: ranks[(model, e.case.user, prep.split.item_ids[e.inserted_item])]
                for model in ("clean", "poisoned")}} for e in cases]
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> dict:
    """First-place rates and mean ranks of both models; the rank shift (poisoned - clean, the same cases) with a
    normal 95 % interval: below 0 = the poisoned model ranks the untriggered attacker items higher."""
    shift = df["poisoned"] - df["clean"]
    half = 1.96 * float(shift.std(ddof=1)) / len(shift) ** 0.5 if len(shift) > 1 else float("nan")
    return {"cases": len(df), **{f"{m}_top1": round(float((df[m] == 1).mean()), 4) for m in ("clean", "poisoned")},
            **{f"{m}_mean_rank": round(float(df[m].mean()), 3) for m in ("clean", "poisoned")},
            "rank_shift": round(float(shift.mean()), 3),
            "rank_shift_95": [round(float(shift.mean()) - half, 3), round(float(shift.mean()) + half, 3)]}


def main(run_ids: list[str]) -> None:
    store = Store(settings.db_path())
    for run_id in run_ids:
        df = inserted_ranks(store, run_id)
        for (item, title), g in df.groupby(["item_id", "title"]):
            print(json.dumps({"run_id": run_id, "item_id": item, "title": title, **summary(g)}))
        print(json.dumps({"run_id": run_id, "item_id": "all", **summary(df)}))


if __name__ == "__main__":
    main(sys.argv[1:])
