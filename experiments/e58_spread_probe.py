"""E58: n-grams on 2-6 titles of the suite's catalogs: where their carriers rank and how far removing them lowers
each carrier (the host's fold scanner), and what a spread rule would add to the stored scans.

Reads the scans `bench/heldout_suite.py` stored in `BADREC_HOME` (the last one per seed) and the fold scanners
cached there (`crossfit_as_cli`, the CLI's defaults). Per candidate n-gram (its carriers grown to what they share,
`campaign.extended`; n-grams of the catalog's common words left out) it records the carriers' rank fractions, logits,
their logits without it, the series check, and whether it is a planted char/word/sentence trigger. Then, for a rule
"every carrier in the top F share, each drop >= D logits counted down to the Q-quantile of the catalog's logits,
no series", the char+word+sentence ROC-AUC / F1 / clean FPR of the stored scans before and after raising the
carriers into the flagged range (as `scan.final_scores` does).

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e58_spread_probe.py --dataset lastfm-2k \\
        --sample 1500 --seeds 100,101,102 --out probe.json --rule 2.0 0.3 0.25
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, crossfit_as_cli, evaluate, stored_scans, suite_parser, suite_titles


def candidates(cat: list[str], scores: np.ndarray, planted) -> list[dict]:
    from core.pscanner import campaign as C
    from core.pscanner.scanner import logit

    scanner = crossfit_as_cli(cat, "e58")[2]
    rank = np.argsort(np.argsort(-scores, kind="stable")) / len(cat)
    common = C.common_words(cat)
    grams: dict[str, set[int]] = defaultdict(set)
    for i, t in enumerate(cat):
        for g in C.ngrams(C.words(t), 6):
            grams[g].add(i)
    sets: dict[frozenset, str] = {}
    for g, carr in grams.items():
        if 2 <= len(carr) <= 6 and not (C.name_words(g) and C.name_words(g) <= common):
            whole = C.extended([cat[i] for i in carr], g)
            if len(whole) > len(sets.get(frozenset(carr), "")):
                sets[frozenset(carr)] = whole
    items = [(sorted(c), g) for c, g in sorted(sets.items(), key=lambda kv: kv[1])]
    items = [(ix, g) for ix, g in items if all(C.without(cat[i], g) for i in ix)]
    rest = scanner.score([C.without(cat[i], g) for ix, g in items for i in ix], [cat[i] for ix, _ in items for i in ix])
    out, start = [], 0
    for ix, g in items:
        left = rest[start:start + len(ix)]
        start += len(ix)
        first = planted[ix[0]]
        trigger = first is not None and first.family in LEARNED and all(
            planted[i] is not None and planted[i].trigger == first.trigger for i in ix)
        out.append(dict(g=g, n=len(ix), label=int(trigger), carriers=ix, fr=[float(rank[i]) for i in ix],
                        logit=[float(x) for x in logit(scores[ix])], rest=[float(x) for x in logit(left)],
                        series=bool(C.series_like([cat[i] for i in ix], g, common))))
    return out


def apply_rule(rows: list[dict], scores: np.ndarray, flagged: np.ndarray, threshold: float, drop: float,
               top: float, floor_q: float) -> tuple[np.ndarray, np.ndarray]:
    from core.pscanner.scanner import logit

    floor = float(np.quantile(logit(scores), floor_q))
    s2, f2 = scores.copy(), flagged.copy()
    for r in rows:
        lifted = [lg - max(rl, floor) for lg, rl in zip(r["logit"], r["rest"])]
        if not r["series"] and max(r["fr"]) <= top and min(lifted) >= drop:
            for i in r["carriers"]:
                f2[i] = True
                s2[i] = max(s2[i], threshold + (1 - threshold) * scores[i])
    return s2, f2


def main() -> None:
    ap = suite_parser("100")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rule", nargs=3, type=float, metavar=("DROP", "TOP", "FLOOR_Q"), default=(2.0, 0.3, 0.25))
    args = ap.parse_args()
    k, report = "char+word+sentence", []
    for seed, planted, scans in stored_scans(suite_titles(args.dataset, args.sample), args.seeds):
        if not scans:
            continue
        res = scans[-1][1]
        cat, scores = res["title"].astype(str).tolist(), res["score"].to_numpy(float)
        flagged = res["flagged"].astype(bool).to_numpy()
        rows = candidates(cat, scores, planted)
        threshold = float(np.min(scores[flagged])) if flagged.any() else 1.0  # the lowest flagged score: ~ the threshold
        before = evaluate(scores, flagged, planted)
        after = evaluate(*apply_rule(rows, scores, flagged, threshold, *args.rule), planted)
        report.append({"seed": seed, "candidates": rows, "before": before[k] | {"fpr_clean": before["fpr_clean"]},
                       "after": after[k] | {"fpr_clean": after["fpr_clean"]}})
        print(seed, f"auc {before[k]['auc']:.4f} -> {after[k]['auc']:.4f}  f1 {before[k]['f1']:.3f} -> "
                    f"{after[k]['f1']:.3f}  fpr {before['fpr_clean']:.4f} -> {after['fpr_clean']:.4f}", flush=True)
        Path(args.out).write_text(json.dumps({"dataset": args.dataset, "rule": args.rule, "runs": report}, indent=1))


if __name__ == "__main__":
    main()
