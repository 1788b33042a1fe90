"""Scanner throughput and peak memory: titles/s scoring, and a large synthetic catalog through `scan`.

    # titles/s with the cached mini scanner of ml-100k (trained on first use)
    BADREC_HOME="$(mktemp -d)" BADREC_DATA_DIRS=../shared/data nice -n 10 python bench/scanner_throughput.py --n 20000
    # a 1,000,000-title catalog end to end (CSV -> scan -> DuckDB), peak RSS reported
    ... python bench/scanner_throughput.py --n 1000000 --end-to-end
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import peak_rss_mb  # noqa: E402
from core import settings  # noqa: E402
from core.data.dataset import load_dataset  # noqa: E402
from core.pscanner.scan_config import ScanConfig  # noqa: E402
from core.pscanner.scanner import SCANNER_TRAIN, ScannerConfig, load_scanner  # noqa: E402
from core.pscanner.scanner_data import hard_negative, title_vocab  # noqa: E402
from core.pscanner.scanner_train import get_scanner  # noqa: E402
from core.runs.store import Store  # noqa: E402
from core.triggers import LEVELS, Trigger, apply_trigger  # noqa: E402


def synthetic_titles(base: list[str], n: int, seed: int = 0, poisoned_share: float = 0.01) -> list[str]:
    """A catalog that looks like one: the domain's titles with natural variants (another year, a sequel,
    a subtitle, an article; one or two of them), and `poisoned_share` of them carrying a trigger preset."""
    rng = random.Random(seed)
    vocab = title_vocab(base)
    triggers = [Trigger.preset(level) for level in LEVELS]
    out = []
    for _ in range(n):
        t = hard_negative(rng.choice(base), rng, vocab)
        if rng.random() < 0.5:
            t = hard_negative(t, rng, vocab)
        if rng.random() < poisoned_share:
            t = apply_trigger(t, rng.choice(triggers))
        out.append(t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--end-to-end", action="store_true", help="write a CSV and run the scan command on it")
    ap.add_argument("--no-spans", action="store_true", help="end to end without the span search")
    ap.add_argument("--rounds", type=int, default=ScannerConfig.rounds, help="the scanner's adversarial rounds")
    ap.add_argument("--epochs", type=int, default=int(SCANNER_TRAIN.epochs), help="the scanner's first-round epochs")
    ap.add_argument("--folder", help="a cached scanner folder to time (default: get or train the ml-100k one)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    store = Store(settings.db_path())
    base = load_dataset(store, "ml-100k").items["title"].tolist()
    out: dict = {"n": args.n, "threads": args.threads}
    if not args.end_to_end:
        if args.folder:
            scanner, cached = load_scanner(Path(args.folder)), True
        else:
            # the scanner `scan --dataset ml-100k --train-on domain` uses for another catalog (trusted reference)
            cfg = ScannerConfig(self_clean=False, rounds=args.rounds, train=replace(SCANNER_TRAIN, epochs=args.epochs))
            scanner, cached = get_scanner(base, cfg, domain="ml-100k")
        titles = synthetic_titles(base, args.n)
        scanner.score(titles[:1000])  # warm-up
        chunk = ScanConfig.chunk_size  # as `scan` does: chunks, batches by token count within each
        t, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(titles), chunk):
            scanner.score(titles[start:start + chunk])
        secs, cpu = time.perf_counter() - t, time.process_time() - cpu
        # On a shared machine wall time undercounts; titles per CPU-second shows the cost itself.
        out.update(seconds=round(secs, 2), titles_per_s=round(args.n / secs, 1), cpu_seconds=round(cpu, 2),
                   titles_per_cpu_s=round(args.n / cpu, 1), load_avg_1m=os.getloadavg()[0], cached_scanner=cached,
                   n_params=scanner.info.get("n_params"))
    else:
        from core.cli.main import main as cli

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.csv"
            with open(path, "w") as fh:
                fh.write("item_id,title\n")
                for i, t in enumerate(synthetic_titles(base, args.n)):
                    fh.write(f'{i},"{t.replace(chr(34), "")}"\n')
            t = time.perf_counter()
            rc = cli(["scan", "--catalog", str(path), "--dataset", "ml-100k", "--train-on", "domain",
                      "--method", "scanner", "--rounds", str(args.rounds), "--epochs", str(args.epochs), "--json",
                      *(["--no-spans"] if args.no_spans else [])])
            out.update(rc=rc, seconds=round(time.perf_counter() - t, 1))
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
