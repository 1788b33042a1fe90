"""E51: does the series check (`core.pscanner.campaign.series_like`) tell a franchise from a trigger, by words alone?

A recurring n-gram's carriers read as one series when what its removal leaves is a fragment or shares an
uncommon word with another carrier's rest. No scanner runs here: for each catalog this counts
(1) how many of its recurring n-grams (on 3-12 titles, with an uncommon word, the longest with those titles) read
as a series — a clean catalog's recurring n-grams are franchises, series and common phrases;
(2) how many of the held-out suite's char/word/sentence triggers on 2-3 titles would be passed over as a series,
on the tuning seeds (100-109) — the recall the check can cost;
(3) the campaigns earlier clean scans took for triggers (E44, E47: `--known "13th,Friday the"`).

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e51_series_check.py --dataset ml-1m \\
        --sample 0 --known "13th,Friday the,Phantasm,in a,Muppet,It Came from"
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, TUNING_SEEDS, poison, suite_parser, suite_titles  # noqa: E402
from core.pscanner.campaign import common_words, name_words, ngrams, series_like, words  # noqa: E402


def recurring(titles: list[str], common: set[str], max_words: int = 4) -> dict[str, list[str]]:
    """N-grams on 3-12 titles holding an uncommon word, each the longest n-gram carried by exactly its titles."""
    carriers: dict[str, list[str]] = defaultdict(list)
    for t in titles:
        for g in ngrams(words(t), max_words):
            carriers[g].append(t)
    cand = {g: c for g, c in carriers.items() if 3 <= len(c) <= 12 and name_words(g) - common}
    return {g: c for g, c in cand.items()
            if not any(g2 != g and f" {g} " in f" {g2} " and len(cand[g2]) == len(c) for g2 in cand if g in g2)}


def main() -> None:
    ap = suite_parser(",".join(map(str, TUNING_SEEDS)))
    ap.add_argument("--known", default="", help="comma-separated n-grams earlier scans took for campaigns")
    args = ap.parse_args()
    titles = suite_titles(args.dataset, args.sample)
    common = common_words(titles)
    rec = recurring(titles, common)
    out = {"dataset": args.dataset, "n_titles": len(titles), "n_common_words": len(common),
           "recurring_ngrams": len(rec), "series_share": round(sum(series_like(c, g, common) for g, c in rec.items())
                                                               / max(1, len(rec)), 3)}
    passed, total, examples = Counter(), Counter(), []
    for seed in map(int, args.seeds.split(",")):
        poisoned, planted = poison(titles, seed)
        by: dict[str, list[str]] = defaultdict(list)
        for t, p in zip(poisoned, planted):
            if p and p.family in LEARNED:
                by[p.trigger].append(t)
        pcommon = common_words(poisoned)
        for trigger, cs in by.items():
            if len(cs) >= 2:
                gram = " ".join(words(trigger))
                total[len(cs)] += 1
                if series_like(cs, gram, pcommon):
                    passed[len(cs)] += 1
                    examples.append({"seed": seed, "trigger": trigger, "titles": cs})
    out["suite_triggers_taken_for_series"] = {f"{k} titles": f"{passed[k]} of {total[k]}" for k in sorted(total)}
    out["suite_examples"] = examples
    out["known"] = {g: {"titles": len(cs), "series": series_like(cs, g, common)}
                    for g in filter(None, args.known.split(","))
                    for cs in [[t for t in titles if g in ngrams(words(t), 6)]]}
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
