"""The Ray engine against the local one at equal cores: a scan's overhead and flags, a sweep's metrics.

    BADREC_HOME="$(mktemp -d)" BADREC_DATA_DIRS=../shared/data nice -n 10 python bench/ray_bench.py \
        --sizes 200000 1000000 --json
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start --head --num-cpus 2 --node-ip-address 127.0.0.1 \
        --include-dashboard false && python bench/ray_bench.py --sizes 200000 --address auto --json
    BADREC_DATA_DIRS=../shared/data nice -n 10 python bench/ray_bench.py --sweep bench/sweep_smoke.json --json

For each size a catalog-like Parquet file (`scanner_throughput.synthetic_titles`: ml-100k titles with natural
variants, 1 % carrying a trigger preset) is scanned once locally and once with `--engine ray --workers N`
(a cluster started by the command, N = this machine's cores: torch's N threads against N one-thread actors),
each as `python -m core scan ... --json` in a fresh process, local and Ray alternating so a shared
machine's background load hits both. The scanner is trained once first (both sides then load it from the
cache: training stays on the driver on either engine and is not what is compared); a 2,000-title catalog
scanned both ways gives the fixed cost of starting Ray. Reported per size: wall time of each process, the
overhead (Ray / local - 1), the peak RSS of each process tree (driver plus Ray's processes), and how many
flags and scores differ between the two scans.

With `--sweep GRID` the grid runs once with `python -m core sweep --engine local` and once with `--engine ray`,
each in a fresh `BADREC_HOME` (each builds its own base and clean models), and every run's metrics are
compared with the same run of the other sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.scanner_throughput import synthetic_titles  # noqa: E402
from core import settings  # noqa: E402
from core.data.dataset import load_dataset  # noqa: E402
from core.runs.store import Store  # noqa: E402

SCAN = ["--dataset", "ml-100k", "--train-on", "domain", "--method", "scanner", "--no-spans", "--rounds", "0",
        "--epochs", "1", "--json"]


def _tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def run_scan(catalog: Path, *extra: str) -> dict:
    """`python -m core scan` in a fresh process: its JSON, wall time and the peak RSS of its process tree."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "core", "scan", "--catalog", str(catalog), *SCAN, *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    if proc.returncode:
        raise RuntimeError(f"scan {' '.join(extra) or 'local'} exited {proc.returncode}: {err.strip()[-2000:]}")
    result = json.loads(out)
    return {"wall_s": round(time.perf_counter() - t, 1), "scan_s": result["seconds"], "scan_id": result["scan_id"],
            "n_items": result["n_items"], "n_flagged": result["n_flagged"], "peak_rss_mb": round(peak[0]),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def compare(store: Store, local_id: str, ray_id: str) -> dict:
    """Flags and scores of two scans of the same catalog, item by item."""
    a, b = store.scan_results(local_id), store.scan_results(ray_id)
    same_items = a["item_id"].tolist() == b["item_id"].tolist()
    diff = np.abs(a["score"].to_numpy() - b["score"].to_numpy()) if same_items else np.array([np.nan])
    return {"same_items_in_order": same_items, "flag_mismatches": int((a["flagged"] != b["flagged"]).sum()),
            "max_abs_score_diff": float(diff.max()), "n_flagged_local": int(a["flagged"].sum()),
            "n_flagged_ray": int(b["flagged"].sum())}


def run_sweep(grid: Path, engine: str, home: Path) -> dict:
    """`python -m core sweep` in a fresh process and home: its JSON and wall time."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "core", "sweep", "--grid", str(grid), "--engine", engine, "--json"],
                          cwd=ROOT, env={**os.environ, "BADREC_HOME": str(home)}, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"sweep --engine {engine} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return {"wall_s": round(time.perf_counter() - t, 1), "home": home, **json.loads(proc.stdout)}


def compare_sweeps(a: dict, b: dict) -> dict:
    """Every metric of every run of sweep `a` against the run at the same grid point of sweep `b`."""
    def metrics(sweep: dict) -> pd.DataFrame:
        ids = [r["run_id"] for r in sweep["runs"]]
        rows = Store(Path(sweep["home"]) / "badrec.duckdb").query(
            f"SELECT run_id, model, name, value FROM metrics WHERE run_id IN ({', '.join('?' * len(ids))})", ids)
        point = {r["run_id"]: json.dumps(r["point"], sort_keys=True) for r in sweep["runs"]}
        return rows.assign(point=rows["run_id"].map(point)).drop(columns="run_id").set_index(["point", "model", "name"])

    joined = metrics(a).join(metrics(b), how="outer", suffixes=("_a", "_b"))
    diff = (joined["value_a"] - joined["value_b"]).abs()
    return {"runs": len(a["runs"]), "metrics_compared": len(joined), "identical": bool((diff == 0).all()),
            "max_abs_diff": float(diff.max()), "failed": len(a["failed"]) + len(b["failed"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--address", help="scan on a running cluster (`auto` after `ray start --head`) instead of one "
                    "started by each scan; that cluster's processes are not in the Ray side's peak RSS")
    ap.add_argument("--sweep", type=Path, help="compare a sweep grid on both engines instead of the scans")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.sweep:
        with tempfile.TemporaryDirectory() as tmp:
            local = run_sweep(args.sweep, "local", Path(tmp) / "local")
            ray = run_sweep(args.sweep, "ray", Path(tmp) / "ray")
            out = {"machine": machine(), "grid": json.loads(args.sweep.read_text()),
                   "local_wall_s": local["wall_s"], "ray_wall_s": ray["wall_s"], "same": compare_sweeps(local, ray),
                   "runs": [{"point": a["point"], "local": a["poisoned"], "ray": b["poisoned"],
                             "clean_hr@1": [a["clean"]["hr@1"], b["clean"]["hr@1"]]}
                            for a, b in zip(local["runs"], ray["runs"])]}
        _write(out, "ray-sweep", args.json)
        return
    store = Store(settings.db_path())
    base = load_dataset(store, "ml-100k").items["title"].tolist()
    out: dict = {"machine": machine(), "workers": args.workers, "address": args.address, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        def catalog(n: int) -> Path:
            path = Path(tmp) / f"catalog-{n}.parquet"
            pd.DataFrame({"item_id": [str(i) for i in range(n)], "title": synthetic_titles(base, n, seed=n)}
                         ).to_parquet(path, index=False)
            return path

        small = catalog(2000)
        t = time.perf_counter()
        run_scan(small)  # trains and caches the scanner both sides then load
        out["scanner_training_s"] = round(time.perf_counter() - t, 1)
        # fixed cost: on 2,000 titles scoring takes ~1 s, so the difference is starting Ray and its actors
        on_ray = ["--engine", "ray", "--workers", str(args.workers), *(["--address", args.address] if args.address else [])]
        fixed = {"local": run_scan(small), "ray": run_scan(small, *on_ray)}
        out["fixed_cost_2000_titles"] = {**fixed, "ray_minus_local_s": round(fixed["ray"]["wall_s"]
                                                                            - fixed["local"]["wall_s"], 1)}
        for n in args.sizes:
            path = catalog(n)
            local = run_scan(path)
            ray = run_scan(path, *on_ray)
            out["sizes"][str(n)] = {"local": local, "ray": ray,
                                    "overhead": round(ray["wall_s"] / local["wall_s"] - 1, 3),
                                    "same": compare(store, local["scan_id"], ray["scan_id"])}
            print(json.dumps({n: out["sizes"][str(n)]}), file=sys.stderr, flush=True)
    _write(out, "ray", args.json)


def _write(out: dict, name: str, as_json: bool) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = ROOT / "bench" / "results" / f"{stamp}-{name}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out, indent=2, default=str) if as_json else f"wrote {path}")


if __name__ == "__main__":
    main()
