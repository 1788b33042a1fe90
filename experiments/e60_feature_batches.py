"""E60: the frozen scanner's feature rate per batch size, and how far a batch moves a text's features.

Loads SmolLM2-135M from the cache (fetched and converted on first use), then
1. texts/s of `FeatureExtractor.features` on real ml-100k titles (a third with a 5-word suffix, so lengths mix)
   at each batch size, a fresh extractor each time;
2. the features of a few titles computed alone (batch 1) and together (one batch of mixed lengths), in fp32
   and under bf16 autocast (emulated, slowly, on an AVX2-only CPU), as a share of each feature's spread.

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e60_feature_batches.py --batch-sizes 1,8,32,64
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import settings
from core.data.dataset import load_dataset
from core.pscanner.scanner import ScannerConfig
from core.pscanner.scanner_frozen import FeatureExtractor, extractor_for
from core.runs.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-sizes", default="32,64,96")
    ap.add_argument("--n", type=int, default=384, help="texts timed per batch size")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cfg = ScannerConfig()
    ext = extractor_for(replace(cfg, model=replace(cfg.model, name="smollm2-135m")))
    titles = load_dataset(Store(settings.db_path()), "ml-100k").items["title"].tolist()
    texts = [t + (" limited offer for members today" if i % 3 == 0 else "")
             for i, t in enumerate(random.Random(0).sample(titles, args.n + 8))]
    for bs in (int(x) for x in args.batch_sizes.split(",")):
        fresh = FeatureExtractor(ext.model, ext.tokenizer, ext.layers, batch_size=bs, dtype=ext.dtype)
        fresh.features(texts[:8])  # warm-up
        t0 = time.perf_counter()
        fresh.features(texts[8:])
        dt = time.perf_counter() - t0
        print(f"batch {bs:3d}: {args.n} texts in {dt:.1f} s = {args.n / dt:.1f} texts/s", flush=True)
    few = texts[:8]
    for dtype in (None, torch.bfloat16):
        alone = FeatureExtractor(ext.model, ext.tokenizer, ext.layers, batch_size=1, dtype=dtype).features(few)
        together = FeatureExtractor(ext.model, ext.tokenizer, ext.layers, batch_size=32, dtype=dtype).features(few)
        diff = np.abs(alone - together)
        print(f"{dtype or 'fp32'}: alone vs one batch of {len(few)}: largest difference {diff.max():.2g}, "
              f"{(diff / (alone.std(0) + 1e-6)).max():.2g} of a feature's spread", flush=True)


if __name__ == "__main__":
    main()
