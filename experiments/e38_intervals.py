"""E38: 95 % intervals for attack runs stored before runs recorded them (E23's seeds, E27, E37 ...).

A run stores each user's top list per model and variant (and the attacker's item at its real rank), so each
case's rank-1 hit can be read back: HR@1 (the true next item first, clean lists) and each attack rate (the inserted
item first). The rebuilt means are checked against the run's stored metrics (they differ only where scores tie:
the metrics break ties by expectation, a stored list by order); then `core.metrics.rate_intervals` gives what a
new run records itself.

    BADREC_HOME=H python experiments/e38_intervals.py [RUN_ID ...]   # default: every finished attack run
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import settings  # noqa: E402
from core.attack.badrec import AttackConfig  # noqa: E402
from core.attack.experiment import eval_variants, prepare  # noqa: E402
from core.metrics import rate_intervals  # noqa: E402
from core.runs.store import Store  # noqa: E402

KEYS = {"clean": "hr@1", "trigger": "asr", "no_trigger": "asr_no_trigger", "transfer": "asr_transfer"}


def user_hits(store: Store, run_id: str) -> dict[str, dict[str, list[float]]]:
    """model -> metric -> per-case rank-1 hits, cases in the run's order for both models.

    The run's evaluation cases are rebuilt from its config (seeded, as the run built them), so the item that
    counts is known exactly: the true next item (HR@1) or the inserted one (attack rates), not any attacker item.
    """
    cfg = AttackConfig.from_dict(store.get_run(run_id)["config"])
    prep = prepare(store, cfg)
    variants = eval_variants(cfg, prep, tuple(KEYS))
    ranks = store.query("SELECT model, variant, user_id, item_id, rank FROM recommendations WHERE run_id = ?",
                        [run_id]).set_index(["model", "variant", "user_id", "item_id"])["rank"]
    out: dict[str, dict[str, list[float]]] = {}
    for model in ("clean", "poisoned"):
        for variant, evs in variants.items():
            items = [prep.split.item_ids[e.candidates[e.target_pos] if variant == "clean" else e.inserted_item]
                     for e in evs]
            out.setdefault(model, {})[KEYS[variant]] = [
                float(ranks.get((model, variant, e.case.user, item), 0) == 1) for e, item in zip(evs, items)]
    return out


def main(run_ids: list[str]) -> None:
    store = Store(settings.db_path())
    runs = store.list_runs("attack")
    runs = runs[(runs["status"] == "done") & (runs["run_id"].isin(run_ids) if run_ids else True)]
    for run_id in runs["run_id"]:
        result = store.get_run(run_id)["result"]
        hits = user_hits(store, run_id)
        rebuilt = {m: {k: round(sum(v) / len(v), 4) for k, v in hits[m].items()} for m in hits}
        exact = all(abs(rebuilt[m][k] - result[m][k]) < 1e-4 for m in hits for k in rebuilt[m] if k in result[m])
        ci = rate_intervals(hits.get("clean", {}), hits["poisoned"])
        print(json.dumps({"run_id": run_id, "n_users": len(hits["poisoned"]["hr@1"]), "rebuilt_equals_stored": exact,
                          "clean": rebuilt.get("clean"), "poisoned": rebuilt["poisoned"], "intervals": ci}))


if __name__ == "__main__":
    main(sys.argv[1:])
