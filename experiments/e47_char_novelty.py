"""E47 pre-check: does a title's catalog-relative character novelty tell poisoned titles from clean ones where the
scanner's ranking is unsure? No training: it reads the held-out suite's stored scans back from `BADREC_HOME`.

Novelty of a title = the share of its character 2- and 3-grams (and the longest run, and the count) found in at most
one title of the catalog (so in no other). Printed per seed: the ROC-AUC of the stored score and of each novelty
feature over all char/word/sentence and clean titles, then the same among the titles the score ranks 20th-500th.

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e47_char_novelty.py \\
        --dataset lastfm-2k --sample 1500 --seeds 100,101,102
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.heldout_suite import LEARNED, stored_scans, suite_parser, suite_titles
from core.metrics import roc_auc

FEATURES = ("share2", "run2", "count2", "share3", "run3", "count3")


def grams(title: str, n: int) -> list[str]:
    s = f"\x02{title}\x03"
    return [s[i:i + n] for i in range(len(s) - n + 1)]


def novelty(titles: list[str]) -> np.ndarray:
    """Per title: share, longest run and count of its n-grams (n = 2, 3) that no other catalog title has."""
    cols = []
    for n in (2, 3):
        df = Counter(g for t in set(titles) for g in set(grams(t, n)))
        rows = []
        for t in titles:
            new = [df[g] <= 1 for g in grams(t, n)]
            run = best = 0
            for v in new:
                run = run + 1 if v else 0
                best = max(best, run)
            rows.append((np.mean(new), best, sum(new)))
        cols.append(np.array(rows, float))
    return np.hstack(cols)


def main() -> None:
    args = suite_parser("100,101,102").parse_args()
    print("seed subset n pos score " + " ".join(FEATURES))
    for seed, planted, scans in stored_scans(suite_titles(args.dataset, args.sample), args.seeds):
        if not scans:
            print(seed, "no stored scan of this catalog")
            continue
        res = scans[-1][1]  # the newest
        poisoned = res["title"].tolist()
        fam = np.array([p.family if p else "" for p in planted])
        s, f = res["score"].to_numpy(float), novelty(poisoned)
        rank = np.empty(len(s), int)
        rank[np.argsort(-s)] = np.arange(len(s))
        learned = (fam == "") | np.isin(fam, LEARNED)
        for name, sel in (("all", learned), ("ranks 20-500", learned & (rank >= 20) & (rank < 500))):
            y = fam[sel] != ""
            aucs = [roc_auc(s[sel], y)] + [roc_auc(f[sel, j], y) for j in range(f.shape[1])]
            print(seed, name, int(sel.sum()), int(y.sum()), " ".join(f"{a:.3f}" for a in aucs))


if __name__ == "__main__":
    main()
