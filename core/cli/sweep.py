"""`python -m core sweep`: a grid of attacks, one after another here or as tasks on a Ray cluster."""

from __future__ import annotations

import argparse
import logging

from core.attack.sweep import SweepGrid, run_sweep
from core.errors import InputError
from core.runs.ray_engine import RayConfig

from .output import console_progress, emit


def cmd_sweep(args: argparse.Namespace, store) -> None:

    """`sweep --grid FILE`: runs every point of the grid and prints each run's ASR and HR@1 (exit 1 if any failed)."""
    if args.engine != "ray" and (args.address or args.workers):
        raise InputError("--address and --workers need --engine ray")
    grid = SweepGrid.from_file(args.grid)
    ray_cfg = RayConfig(address=args.address, workers=args.workers)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    result = run_sweep(store, grid.configs(), args.engine, ray_cfg, console_progress(args), points=grid.points())

    def text(r):
        lines = [f"sweep {r['sweep_id']} on {r['engine']}: {len(r['runs'])} runs in {r['seconds']:.0f} s"]
        for run in r["runs"]:
            point = " ".join(f"{k}={v}" for k, v in run["point"].items())
            lines.append(f"  {point:<40} asr={run['poisoned']['asr']:.4f} hr@1={run['poisoned']['hr@1']:.4f} "
                         f"(clean {run['clean']['hr@1']:.4f})  {run['run_id']}")
        lines += [f"  failed: {f['point']}: {f['error']}" for f in r["failed"]]
        return "\n".join(lines)
    emit(args, result, text)
    if result["failed"]:
        raise SystemExit(1)  # the finished runs are stored; the failures are listed above


def register(sub) -> None:
    """Add the `sweep` subcommand to the CLI's subparsers."""
    p = sub.add_parser("sweep", help="run a grid of attacks (doses, trigger levels/positions, seeds, victims, "
                                     "models) locally or on a Ray cluster")
    p.add_argument("--grid", required=True,
                   help='JSON file {"fixed": {...}, "grid": {"poison_ratio": [0.005, 0.01], "seed": [0, 1]}}; keys '
                        "are attack flags with underscores")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="one run after another here, or each run as a Ray task (same metrics)")
    p.add_argument("--address", help="Ray cluster: auto, ray://HOST:PORT or HOST:PORT; default: a cluster "
                                     "started here for the sweep, on 127.0.0.1 only")
    p.add_argument("--workers", type=int, help="runs at a time on Ray (default: one per CPU of the cluster)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_sweep)
