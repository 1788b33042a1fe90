"""E50: how far do the suite's numbers move with the scan's own seed, and would averaging seeds pay?

Every scan draws its agent's trigger pool, its folds and its heads from `scan --seed` (0 by default). E47 and E49
judged agent changes on three tuning seeds, and a changed style redraws the whole pool. This reads back the
scans `bench/heldout_suite.py --scan-args="--seed S"` stored in `BADREC_HOME` for the same poisoned catalogs
under several scan seeds and reports, per catalog, each scan's char+word+sentence ROC-AUC and recall at 1 % FPR
(as the suite reports them), and the same for the average of the scans' rank percentiles
(`core.pscanner.detect_baselines.ensemble_scores`): an estimate of what an ensemble of seeds would give, before
anything is built.

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e50_seed_ensemble.py \\
        --dataset lastfm-2k --sample 1500 --seeds 100,101,102
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, recall_at_fpr, stored_scans, suite_parser, suite_titles


def main() -> None:
    args = suite_parser("100,101,102").parse_args()
    from core import settings
    from core.metrics import auc_delong
    from core.pscanner.detect_baselines import ensemble_scores
    from core.runs.store import Store

    store = Store(settings.db_path())
    rows = []
    for seed, planted, scans in stored_scans(suite_titles(args.dataset, args.sample), args.seeds):
        fam = np.array([p.family if p else "" for p in planted])
        learned = (fam == "") | np.isin(fam, LEARNED)
        y = np.isin(fam, LEARNED)[learned]
        per_scan, parts = [], {}
        for sid, res in scans:
            s = parts[sid] = res["score"].to_numpy(float)[learned]
            per_scan.append({"scan_id": sid, "scan_seed": store.get_run(sid)["seed"],
                             "auc": round(auc_delong(s, y)[0], 4),
                             "recall_at_fpr_0.01": round(recall_at_fpr(s, y, ~y), 3)})
        mean = ensemble_scores(parts)
        rows.append({"seed": seed, "n_poisoned": int(y.sum()), "scans": per_scan,
                     "ensemble": {"n_scans": len(parts), "auc": round(auc_delong(mean, y)[0], 4),
                                  "recall_at_fpr_0.01": round(recall_at_fpr(mean, y, ~y), 3)}})
    print(json.dumps({"dataset": args.dataset, "sample": args.sample, "catalogs": rows}, indent=1))


if __name__ == "__main__":
    main()
