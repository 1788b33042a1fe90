"""E51: would other tail anchors of the catalog calibration bring the realised FPR on clean titles nearer the target?

`core.pscanner.crossfit.calibrate_catalog` fits an exponential tail between two quantiles of a catalog's
cross-fitted logits and extrapolates it to the target FPR. On artist names the realised FPR on clean titles is
0.1-0.5 % at a 1 % target. This refits the calibration with other anchors on the suite scans stored in
`BADREC_HOME` (the newest scan of each seed's catalog; titles flagged by a rule — a Unicode finding or a recurring
trigger — stay flagged, their raised scores enter the fit as stored) and reports the realised FPR on clean titles
and the char+word+sentence F1 for each pair of anchors. No scan runs.

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e51_calibration_anchors.py \\
        --dataset lastfm-2k --sample 1500 --seeds 0,1,2 [--anchors 0.7-0.9,0.8-0.95]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, stored_scans, suite_parser, suite_titles  # noqa: E402

ANCHORS = ((0.70, 0.90), (0.80, 0.95), (0.85, 0.97), (0.75, 0.95))


def main() -> None:
    from core.metrics import detection_metrics
    from core.pscanner.crossfit import calibrate_catalog

    ap = suite_parser("0,1,2")
    ap.add_argument("--anchors", default=",".join(f"{lo}-{hi}" for lo, hi in ANCHORS))
    args = ap.parse_args()
    anchors = [tuple(float(x) for x in a.split("-")) for a in args.anchors.split(",")]
    rows = []
    for seed, planted, scans in stored_scans(suite_titles(args.dataset, args.sample), args.seeds):
        if not scans:
            continue
        res = scans[-1][1]
        s = res["score"].to_numpy(float)
        fam = np.array([p.family if p else "" for p in planted])
        clean, pos = fam == "", np.isin(fam, LEARNED)
        by_rule = res["flagged"].to_numpy(bool) & ((res["reason"].fillna("") != "") | res["campaign"].notna()).to_numpy()
        row = {"seed": seed, "scan_id": scans[-1][0], "n_clean": int(clean.sum())}
        for low, high in anchors:
            cal = calibrate_catalog(s, 0.01, low=low, high=high)
            flagged = (s >= cal.threshold) | by_rule
            m = detection_metrics(flagged[clean | pos], pos[clean | pos], s[clean | pos])
            row[f"{low}-{high}"] = {"fpr_clean": round(float(flagged[clean].mean()), 5), "f1": round(m["f1"], 4),
                                    "found": int((flagged & pos).sum()), "n": int(pos.sum())}
        rows.append(row)
    summary = {k: {"mean_fpr_clean": round(float(np.mean([r[k]["fpr_clean"] for r in rows])), 5),
                   "max_fpr_clean": round(float(np.max([r[k]["fpr_clean"] for r in rows])), 5),
                   "mean_f1": round(float(np.mean([r[k]["f1"] for r in rows])), 4),
                   "found": f'{sum(r[k]["found"] for r in rows)}/{sum(r[k]["n"] for r in rows)}',
                   "false_flags": sum(round(r[k]["fpr_clean"] * r["n_clean"]) for r in rows),
                   "n_clean": sum(r["n_clean"] for r in rows)}
               for k in (f"{lo}-{hi}" for lo, hi in anchors)} if rows else {}
    print(json.dumps({"dataset": args.dataset, "sample": args.sample, "n_scans": len(rows), "summary": summary,
                      "scans": rows}, indent=1))


if __name__ == "__main__":
    main()
