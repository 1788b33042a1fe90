"""E36: does the score drop when a span is removed rank poisoned titles better than the score alone?

Issue 17 item 3 names "the score drop when a span is removed" as a candidate signal. A trigger is an added
span: removing it should bring a title's score down to a clean title's, while an odd-but-clean title (an
artist name, a game code) stays odd whatever span is removed. This probe scans the held-out suite's poisoned
catalogs as `scan --catalog FILE` does (the CLI's defaults: cross-fitted frozen scanner, 5 folds), then
re-ranks the top titles by logit(score) + deletion contrast (`core.pscanner.rerank.rerank_by_contrast`, each
title's variants scored by its own fold's scanner) for several shares of the catalog, and compares the
rankings and the flags at the calibrated threshold on the char/word/sentence titles.

Run it on tuning seeds only (100-109) while choosing; evaluation seeds are reported once, after the choice:

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e36_deletion_contrast.py \\
        --dataset lastfm-2k --sample 1500 --seeds 100 [--shares 0,0.1,1] --out OUT.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, TUNING_SEEDS, crossfit_as_cli, experiment_main, poison, recall_at_fpr  # noqa: E402

def shares_arg(ap) -> None:
    ap.add_argument("--shares", default="0,0.05,0.1,0.2", help="comma-separated shares of the catalog to re-rank")


def run_seed(titles: list[str], seed: int, args) -> dict:
    from core.metrics import detection_metrics, roc_auc
    from core.pscanner.rerank import rerank_by_contrast, rerank_size

    poisoned, planted = poison(titles, seed)
    t0 = time.perf_counter()
    cfg, recipe, cf = crossfit_as_cli(poisoned, domain="e36")
    own = cf.score(poisoned)
    t_scan = time.perf_counter() - t0
    memo: dict[str, float] = {}

    def contrast(ts: list[str]) -> np.ndarray:
        todo = [t for t in ts if t not in memo]
        memo.update(zip(todo, cf.contrast(todo)))
        return np.array([memo[t] for t in ts])

    fam = np.array([p.family if p else "" for p in planted])
    clean, pos = fam == "", np.isin(fam, LEARNED)
    learned = clean | pos
    out = {"seed": seed, "tuning_seed": seed in TUNING_SEEDS, "scanner": recipe.model.name, "n_titles": len(titles),
           "n_learned": int(pos.sum()), "scan_s": round(t_scan, 1), "threshold": cf.threshold, "shares": {}}
    # the largest share first: the smaller ones reuse its contrasts
    for share in sorted(map(float, args.shares.split(",")), reverse=True):
        t = time.perf_counter()
        s = rerank_by_contrast(own, poisoned, contrast, rerank_size(len(own), share, cfg.rerank_min))
        m = detection_metrics((s >= cf.threshold)[learned], pos[learned], s[learned])
        out["shares"][str(share)] = {
            "auc": m["auc"], "recall_at_fpr_0.01": recall_at_fpr(s, pos, clean), "f1": m["f1"],
            "precision": m["precision"], "recall": m["recall"], "fpr_clean": float(np.mean(s[clean] >= cf.threshold)),
            **{f"auc_{f}": roc_auc(s[clean | (fam == f)], (fam == f)[clean | (fam == f)]) for f in LEARNED},
            "seconds": round(time.perf_counter() - t, 1), "n_variant_titles": len(memo)}
    pct = {sh: (np.argsort(np.argsort(-rerank_by_contrast(own, poisoned, contrast,
                                                          rerank_size(len(own), float(sh), cfg.rerank_min)))) + 1)
           / len(own) for sh in out["shares"]}
    out["poisoned"] = sorted(({"title": poisoned[i], "family": fam[i], "trigger": planted[i].trigger,
                               **{f"top_{sh}": round(float(p[i]), 4) for sh, p in pct.items()}}
                              for i in np.flatnonzero(pos)), key=lambda d: d["top_0.0"])
    return out


def main() -> None:
    print(json.dumps(experiment_main(run_seed, shares_arg), indent=1))


if __name__ == "__main__":
    main()
