"""E62: the frozen scanner's prior head (`core.pscanner.linear_head`), trained once on titles of other catalogs.

A fold of a 50-title catalog trains its head on 30 titles; this trains the same recipe (`train_frozen`, the
scan's fold recipe, no prior) on 1,600 titles of two other catalogs and keeps its head, which the heads of small
catalogs shrink towards instead of towards zero. Titles of the `--exclude` datasets (the held-out suite's
evaluation domains, whole) and the suite's 50-title samples of the prior's own datasets are left out. Writes
`head.safetensors` and `head.json` (what it was built from, by which command) into `--out-dir`; the shipped
prior in `assets/scanner_prior/` is this script's output with the defaults:

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e62_prior_head.py --out-dir assets/scanner_prior
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="movietweetings-100k,lastfm-2k")
    ap.add_argument("--per-dataset", type=int, default=800)
    ap.add_argument("--exclude", default="ml-100k,steam", help="datasets whose titles the prior must not see")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    import torch

    from bench.heldout_suite import suite_titles
    from core.hardware import machine_kind
    from core.lm.models import ModelConfig, compute_dtype
    from core.pscanner.linear_head import PRIOR_HEAD, PRIOR_META, save_head
    from core.pscanner.scan_config import ScanConfig
    from core.pscanner.scanner import ScannerConfig
    from core.pscanner.scanner_frozen import FEATURES_VERSION, train_frozen

    torch.set_num_threads(args.threads)
    banned = {t for d in args.exclude.split(",") if d for t in suite_titles(d)}
    banned |= {t for d in args.datasets.split(",") for t in suite_titles(d, 50)}  # the suite's small samples
    titles = []
    for d in args.datasets.split(","):
        pool = [t for t in suite_titles(d) if t not in banned]
        titles += random.Random(f"prior:{args.seed}:{d}").sample(pool, min(args.per_dataset, len(pool)))
    base = ScannerConfig(model=ModelConfig(name="smollm2-135m"), rounds=ScanConfig.fold_rounds, seed=args.seed)
    # the prior itself has none, and was built before E63's cap on the titles with examples
    cfg = replace(base, frozen=replace(base.frozen, prior_max_titles=0, example_titles=0))
    t0 = time.monotonic()
    scanner = train_frozen(titles, cfg, domain="prior")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_head(scanner.head, out / PRIOR_HEAD)
    meta = {"model": cfg.model.name, "layers": list(cfg.frozen.layers), "features_version": FEATURES_VERSION,
            "dtype": compute_dtype(cfg.model), "machine_kind": machine_kind(), "datasets": args.datasets.split(","),
            "per_dataset": args.per_dataset, "excluded": args.exclude.split(","), "seed": args.seed,
            "n_titles": len(titles), "recipe": cfg.to_dict(), "history": scanner.history,
            "seconds": round(time.monotonic() - t0, 1),
            "command": "python experiments/e62_prior_head.py " + " ".join(sys.argv[1:])}
    (out / PRIOR_META).write_text(json.dumps(meta, indent=1, default=str) + "\n")
    print(json.dumps({k: meta[k] for k in ("n_titles", "seconds", "history")}))


if __name__ == "__main__":
    main()
