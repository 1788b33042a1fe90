"""The default `attack` command end to end: a first run (builds base and clean models) and a cached run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["attack", "--dataset", "ml-100k", "--victim", "llara", "--model", "tiny", "--quant", "4bit",
           "--trigger-level", "char", "--poison-ratio", "0.01", "--json"]
# --quick: the same pipeline with the "smoke" embedded model (builds in seconds; its metrics mean nothing)
# and 50 test users so it fits the quick run; the full run uses the defaults.
QUICK = ["--tiny-size", "smoke", "--eval-users", "50", "--no-generate"]


def _attack(args: list[str], env: dict) -> tuple[dict, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=3 * 3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["attack failed"])[-1])
    return json.loads(proc.stdout), wall


def run(quick: bool = False) -> dict:
    env = dict(os.environ, BADREC_HOME=tempfile.mkdtemp(prefix="badrec-e2e-"))
    args = DEFAULT + (QUICK if quick else [])
    first, first_s = _attack(args, env)
    second, cached_s = _attack(args, env)
    keep = ("hr@1", "asr", "asr_no_trigger", "asr_transfer")
    return {"command": "python -m core " + " ".join(args), "first_run_s": round(first_s, 1),
            "cached_run_s": round(cached_s, 1),
            "clean": {k: first["clean"].get(k) for k in keep}, "poisoned": {k: first["poisoned"].get(k) for k in keep},
            "same_numbers_when_cached": first["clean"] == second["clean"] and first["poisoned"] == second["poisoned"]}
