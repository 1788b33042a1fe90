"""E35: what the held-out suite's scans give at other target FPRs, from their stored scores (no new scan).

The issue asks for F1 >= 0.90 at the default threshold and for the target FPR (default 1 %) to be the FPR the
analyst gets. This recomputes, for a finished `bench/heldout_suite.py` scan, the threshold that
`calibrate_catalog` sets for each target from the same cross-fitted scores, and the flags and F1 it gives
(char + word + sentence against the clean titles, as the suite scores them; Unicode hygiene findings stay
flagged whatever the threshold). Analysis of evaluation seeds: it informs the issue, it chooses no default.

    BADREC_HOME=H python experiments/e35_fpr_tradeoff.py DATASET SAMPLE SEED SCAN_ID [--targets 0.01 0.005 ...]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, poison  # noqa: E402
from core import settings  # noqa: E402
from core.data.dataset import load_dataset  # noqa: E402
from core.metrics import detection_metrics  # noqa: E402
from core.pscanner.crossfit import calibrate_catalog  # noqa: E402
from core.runs.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("sample", type=int, help="the suite's --sample (0 = all titles)")
    ap.add_argument("seed", type=int)
    ap.add_argument("scan_id")
    ap.add_argument("--targets", type=float, nargs="+", default=[0.01, 0.005, 0.003, 0.002, 0.001])
    args = ap.parse_args()
    store = Store(settings.db_path())
    titles = sorted(set(load_dataset(store, args.dataset).items["title"].astype(str)))  # as the suite draws them
    if args.sample and args.sample < len(titles):
        titles = sorted(random.Random(f"sample:{args.dataset}").sample(titles, args.sample))
    poisoned, planted = poison(titles, args.seed)
    rows = store.scan_results(args.scan_id)
    rows = rows.assign(i=rows["item_id"].astype(int)).sort_values("i")
    if rows["title"].tolist() != poisoned:
        raise SystemExit(f"{args.scan_id} is not the suite's {args.dataset} catalog for seed {args.seed}")
    fam = np.array([p.family if p else "" for p in planted])
    clean, hygiene = fam == "", rows["reason"].fillna("").ne("").to_numpy()
    scores = rows["score"].to_numpy(float)
    learned = clean | np.isin(fam, LEARNED)
    out = []
    for t in args.targets:
        cal = calibrate_catalog(scores[~hygiene], t)  # the scanner's own scores (hygiene finds are max()-ed in)
        flagged = (scores >= cal.threshold) | hygiene
        m = detection_metrics(flagged[learned], ~clean[learned], scores[learned])
        out.append({"target_fpr": t, "threshold": round(cal.threshold, 4), "fpr_clean": round(float(flagged[clean].mean()), 4),
                    **{k: round(float(m[k]), 3) for k in ("precision", "recall", "f1")}})
    print(json.dumps({"dataset": args.dataset, "sample": args.sample, "seed": args.seed, "scan_id": args.scan_id,
                      "n_titles": len(titles), "n_learned_poisoned": int((~clean[learned]).sum()), "by_target": out},
                     indent=1))


if __name__ == "__main__":
    main()
