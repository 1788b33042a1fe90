"""E28: a frozen pretrained LLM's features as a scanner base (issue 17 item 3) -- ablations on TUNING seeds.

One feature pass (core.pscanner.scanner_frozen.FeatureExtractor on SmolLM2-135M, layers 6, 12, 20 and 30) over the
held-out suite's poisoned ml-100k catalog and every title's examples (core.pscanner.scanner_frozen.title_examples),
then cross-fitted linear heads (3 folds) on slices of the features: which layers, with or without the
surprisal statistics and the hard negatives, the L2 penalty. Oracle-free numbers: ROC-AUC and recall at
1 % FPR on clean titles (bench/heldout_suite.recall_at_fpr). Seeds 100-109 only (tuning); the shipped
default is then measured on evaluation seeds with bench/heldout_suite.py.

    BADREC_HOME=... BADREC_DATA_DIRS=../shared/data python experiments/e28_llm_feature_probe.py --seed 101
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from heldout_suite import FAMILIES, LEARNED, poison, recall_at_fpr  # noqa: E402

from core import settings  # noqa: E402
from core.data.dataset import load_dataset  # noqa: E402
from core.lm.models import (  # noqa: E402
    ModelConfig,  # noqa: E402
    load_model,
)
from core.metrics import detection_metrics  # noqa: E402
from core.pscanner.agent import AgentConfig, propose  # noqa: E402
from core.pscanner.linear_head import fit_head  # noqa: E402
from core.pscanner.scanner import ScannerConfig  # noqa: E402
from core.pscanner.scanner_data import title_vocab  # noqa: E402
from core.pscanner.scanner_frozen import FeatureExtractor, title_examples  # noqa: E402
from core.runs.store import Store  # noqa: E402

LAYERS = (6, 12, 20, 30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--sample", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    args = ap.parse_args()
    assert 100 <= args.seed < 110, "tuning seeds only"
    titles = sorted(set(load_dataset(Store(settings.db_path()), args.dataset).items["title"].astype(str)))
    if args.sample and args.sample < len(titles):
        titles = sorted(random.Random(f"sample:{args.dataset}").sample(titles, args.sample))
    catalog, planted = poison(titles, args.seed)
    loaded = load_model(ModelConfig(name="smollm2-135m"))
    ext = FeatureExtractor(loaded.model, loaded.tokenizer, LAYERS)
    cfg = ScannerConfig(model=ModelConfig(name="smollm2-135m"), pos_per_title=2, hard_per_title=1)
    pool = propose(AgentConfig(n=cfg.n_triggers, seed=0)).triggers
    vocab = title_vocab(catalog)
    ex = [(i, e) for i, t in enumerate(catalog) for e in title_examples(t, pool, cfg, vocab)]
    t0 = time.time()
    cache = Path(os.environ.get("BADREC_SCRATCH", "experiments/out")) / f"e28_{args.dataset}_{args.seed}_{len(ex)}.npy"
    if cache.exists():
        X = np.load(cache, allow_pickle=False)
    else:
        X = ext.features([e.title for _, e in ex])
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, X, allow_pickle=False)
    print(f"features: {len(ex)} texts in {time.time() - t0:.0f} s", flush=True)
    owner = np.array([i for i, _ in ex])
    y = np.array([e.label for _, e in ex], float)
    kind = np.array([e.kind for _, e in ex])
    is_title = np.array([e.title == catalog[i] and e.kind == "clean" for i, e in ex])
    nth_pos = np.zeros(len(ex), int)  # 0 for the first triggered copy of a title, 1 for the second
    seen: dict[int, int] = {}
    for j, (i, e) in enumerate(ex):
        if e.label:
            nth_pos[j] = seen.get(i, 0)
            seen[i] = nth_pos[j] + 1
    fold = np.array([random.Random(f"f{t}").randrange(args.folds) for t in catalog])
    h = loaded.model.config.hidden_size
    nl = len(LAYERS)

    def cols(layers=LAYERS, last=True, mean=True, stats=True):
        c = []
        for L in layers:
            k = LAYERS.index(L)
            if mean:
                c += range(k * h, (k + 1) * h)
            if last:
                c += range((nl + k) * h, (nl + k + 1) * h)
        if stats:
            c += range(2 * nl * h, 2 * nl * h + 6)
        return np.array(c)

    fam = np.array([p.family if p else "" for p in planted])
    clean, learned = fam == "", np.isin(fam, LEARNED)
    base = cols((12, 20, 30))
    variants = {  # the second grid, after the first showed stronger L2 helping (docs/RESULTS.md E28)
        "L12,20,30 l2=1e-1": dict(c=base, l2=1e-1),
        "L12,20,30 l2=3e-1": dict(c=base, l2=3e-1),
        "L12,20,30 l2=1": dict(c=base, l2=1.0),
        "L12,20,30 l2=3": dict(c=base, l2=3.0),
        "L12,20,30 mean l2=1e-1": dict(c=cols((12, 20, 30), last=False), l2=1e-1),
        "L12,20,30 mean l2=3e-1": dict(c=cols((12, 20, 30), last=False), l2=3e-1),
        "L12,20,30 pos1 l2=3e-1": dict(c=base, pos1=True, l2=3e-1),
        "L12,20,30 pos1 l2=1": dict(c=base, pos1=True, l2=1.0),
        "L12,20 no stats l2=3e-1": dict(c=cols((12, 20), stats=False), l2=3e-1),
        "L6,12,20 no stats l2=3e-1": dict(c=cols((6, 12, 20), stats=False), l2=3e-1),
        "L12,20,30 no stats l2=3e-1": dict(c=cols((12, 20, 30), stats=False), l2=3e-1),
    }
    for name, v in variants.items():
        keep = np.ones(len(ex), bool)
        if v.get("drop_hard"):
            keep &= kind != "hard"
        if v.get("pos1"):
            keep &= ~((y > 0) & (nth_pos > 0))
        s = np.zeros(len(catalog))
        t1 = time.time()
        for k in range(args.folds):
            tr = keep & (fold[owner] != k)
            head = fit_head(X[tr][:, v["c"]], y[tr], v.get("l2", 1e-3))
            te = np.where(is_title & (fold[owner] == k))[0]
            s[owner[te]] = head.predict(X[te][:, v["c"]])
        sel = clean | learned
        m = detection_metrics(s[sel] >= np.quantile(s[clean], 0.99), learned[sel], s[sel])
        row = {"variant": name, "auc": round(m["auc"], 4), "recall@1%": round(recall_at_fpr(s, learned, clean), 3),
               "fit_s": round(time.time() - t1, 1)}
        row |= {f: round(recall_at_fpr(s, fam == f, clean), 2) for f in FAMILIES if f in LEARNED}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
