"""What a benchmark ran on, peak memory, and this CPU's measured matmul peak."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone

import psutil


def machine() -> dict:
    from core.versions import versions
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    from core.hardware import machine_info, resolve_dtype
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(),
            "kind": machine_info(resolve_dtype("auto"))}


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak RSS of this process (since start or `reset_peak_rss`), from Linux's VmHWM.

    `ru_maxrss` is no use in a child process: it starts at the parent's RSS at fork (a bench section
    run after a 2 GB one reported 2 GB for a 1.2 GB scan). Falls back to it where /proc is missing.
    """
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Start `peak_rss_mb` afresh (Linux: writing 5 to clear_refs resets VmHWM); a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def run_isolated(module_fn: str, *args: str, timeout: float = 1800) -> dict:
    """Run `module:function(args)` in a fresh interpreter so its peak RSS is its own; returns its JSON."""
    import json
    code = (f"import json,sys; from {module_fn.split(':')[0]} import {module_fn.split(':')[1]} as f; "
            f"print(json.dumps(f(*sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "benchmark failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_peak_gflops(dtype: str = "bf16", n: int = 1024, repeats: int = 20) -> float:
    """Best observed GFLOP/s of an n x n matmul with torch on this CPU (the roofline for training)."""
    import torch
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    a = torch.randn(n, n, dtype=dt)
    b = torch.randn(n, n, dtype=dt)
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        dt_s = time.perf_counter() - t0
        best = max(best, 2 * n**3 / dt_s / 1e9)
    return best
