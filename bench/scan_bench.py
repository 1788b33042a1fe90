"""Scanner throughput (titles/s) and a synthetic catalog end to end into DuckDB with its peak RSS.

Both run `bench/scanner_throughput.py` in a fresh interpreter so the peak RSS is the scan's own,
sharing one BADREC_HOME so the second reuses the scanner the first trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "scanner_throughput.py"


def _run(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["scanner_throughput failed"])[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --quick: the scanner trains on a smaller budget (same architecture, so the same cost per title) and the
# 1M scan skips the span search of flagged titles (~100 s of ~390 s here); the full run keeps both.
QUICK_TRAIN = ["--rounds", "0", "--epochs", "1"]


def run(quick: bool = False) -> dict:
    env = dict(os.environ, BADREC_HOME=os.environ.get("BENCH_SCAN_HOME") or tempfile.mkdtemp(prefix="badrec-scan-"))
    train = QUICK_TRAIN if quick else []
    speed = _run(["--n", "20000", *train], env)
    n_big = 1_000_000
    big = _run(["--n", str(n_big), "--end-to-end", *train, *(["--no-spans"] if quick else [])], env)
    return {"titles_per_s": speed["titles_per_s"], "scoring_rss_mb": speed["peak_rss_mb"],
            "scanner_params": speed.get("n_params"), "n_1m": n_big, "wall_s_1m": big["seconds"],
            "rows_per_s_1m": round(n_big / big["seconds"], 1), "peak_rss_mb_1m": big["peak_rss_mb"],
            "spans_1m": not quick}
