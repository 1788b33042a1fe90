"""E42: which held-out suite ROC-AUCs can be told from the 0.98 target? 95 % intervals for stored suite scans.

A seed of the held-out suite puts ~20 char/word/sentence titles among 1,500, so one title's rank moves the
ROC-AUC by ~0.003. This reads the scans `bench/heldout_suite.py` stored in `BADREC_HOME` back (scores per
title), rebuilds each seed's poisoned catalog to know every title's family, and reports the char+word+sentence
ROC-AUC with its 95 % interval (`core.metrics.auc_interval`: DeLong, logit scale), per scan and, over two or
more seeds, as the mean of the seeds' AUCs (its interval from the seeds' DeLong variances, the scans being
independent).

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e42_suite_intervals.py \\
        --dataset lastfm-2k --sample 1500 --seeds 0,1,2
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, stored_scans, suite_parser, suite_titles


def main() -> None:
    args = suite_parser("0,1,2").parse_args()
    from core.metrics import Z95, auc_delong, auc_interval

    rows, latest = [], {}
    for seed, planted, scans in stored_scans(suite_titles(args.dataset, args.sample), args.seeds):
        fam = np.array([p.family if p else "" for p in planted])
        learned = (fam == "") | np.isin(fam, LEARNED)
        for sid, res in scans:
            s, y = res["score"].to_numpy(float)[learned], np.isin(fam, LEARNED)[learned]
            (auc, se), (low, high) = auc_delong(s, y), auc_interval(s, y)
            rows.append({"scan_id": sid, "seed": seed, "n_poisoned": int(y.sum()), "auc": round(auc, 4),
                         "auc_95": [round(low, 4), round(high, 4)], "se": round(se, 4)})
            latest[seed] = rows[-1]  # the newest scan of each seed goes into the mean
    if len(latest) > 1:
        mean = float(np.mean([r["auc"] for r in latest.values()]))
        se = math.sqrt(sum(r["se"] ** 2 for r in latest.values())) / len(latest)
        rows.append({"mean_of_seeds": sorted(latest), "auc": round(mean, 4),
                     "auc_95": [round(max(0.0, mean - Z95 * se), 4), round(min(1.0, mean + Z95 * se), 4)]})
    print(json.dumps({"dataset": args.dataset, "sample": args.sample, "scans": rows}, indent=1))


if __name__ == "__main__":
    main()
