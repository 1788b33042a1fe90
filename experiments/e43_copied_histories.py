"""E43: does the `copy` fake-user strategy plant its fake histories on the test users' own prompts?

A `copy` fake user takes a real user's latest k training items, which is the history that user's test case is
built from. Test users are split into those whose evaluation history some fake user copied (overlap of at least
`--min-shared` items) and the rest; per group, HR@1 of both models and the untriggered attacker item's pick rate
(read back from the stored lists exactly as E38 does). If the stealth cost sits in the copied group, it is a
collision of fake and test histories, not a property of the trigger.

    BADREC_HOME=H python experiments/e43_copied_histories.py RUN_ID [RUN_ID ...] [--min-shared N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import settings  # noqa: E402
from core.attack.badrec import AttackConfig  # noqa: E402
from core.attack.experiment import eval_variants, prepare  # noqa: E402
from core.runs.store import Store  # noqa: E402
from e38_intervals import user_hits  # noqa: E402


def groups(store: Store, run_id: str, min_shared: int) -> dict:
    """Per group (copied / not copied): users and mean hits of each model and metric."""
    cfg = AttackConfig.from_dict(store.get_run(run_id)["config"])
    prep = prepare(store, cfg)
    fake_histories = [set(f.history) for f in prep.data.fake_users]
    cases = eval_variants(cfg, prep, ("clean",))["clean"]
    copied = [max((len(set(e.case.history) & h) for h in fake_histories), default=0) >= min_shared for e in cases]
    hits = user_hits(store, run_id)
    out = {"run_id": run_id, "seed": cfg.seed, "strategy": cfg.fake_user_strategy, "min_shared": min_shared}
    for name, want in (("copied", True), ("not_copied", False)):
        idx = [i for i, c in enumerate(copied) if c == want]
        out[name] = {"users": len(idx)} | {
            f"{model}.{metric}": round(sum(hits[model][metric][i] for i in idx) / max(len(idx), 1), 3)
            for model in hits for metric in ("hr@1", "asr_no_trigger") if metric in hits[model]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_ids", nargs="+")
    ap.add_argument("--min-shared", type=int, default=3, help="items a fake history shares with a test history")
    args = ap.parse_args()
    store = Store(settings.db_path())
    for run_id in args.run_ids:
        print(json.dumps(groups(store, run_id, args.min_shared)))


if __name__ == "__main__":
    main()
