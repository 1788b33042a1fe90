"""The command line: a thin shell over the same `core` functions the dashboard calls (DESIGN.md §7).

Exit status 0 on success; on bad input one line `error: ...` on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from core import settings
from core.data.dataset import dataset_info, dataset_status, ensure_dataset, import_file, load_dataset
from core.data.protocol import ProtocolConfig, baselines, build_split, split_summary
from core.data.uploads import ColumnMap
from core.errors import BadRecError
from core.runs.store import Store

from .output import console_progress, emit, quiet, silence_progress_bars

Handler = Callable[[argparse.Namespace, Store], dict | list | None]


# -- datasets -----------------------------------------------------------------
def cmd_datasets_list(args, store):
    """`datasets list`: every built-in and uploaded dataset with its status and size."""
    rows = dataset_status(store)

    def table(rs):
        lines = [f"{'name':<22} {'status':<13} {'kind':<13} {'users':>7} {'items':>7} {'interactions':>12}"]
        for r in rs:
            lines.append(f"{r['name']:<22} {r['status']:<13} {r['kind']:<13} {r['n_users'] or '-':>7} "
                         f"{r['n_items'] or '-':>7} {r['n_interactions'] or '-':>12}")
        return "\n".join(lines)
    emit(args, rows, table)


def cmd_datasets_info(args, store):
    """`datasets info NAME`: imports the dataset on first use, then prints its counts and notes."""
    progress = console_progress(args)
    if args.source:
        ensure_dataset(store, args.name, source=Path(args.source), progress=progress)
    info = dataset_info(store, args.name, allow_network=not args.offline)
    emit(args, info, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))


def cmd_datasets_import(args, store):
    """`datasets import FILE`: validates a user's file and stores it as a dataset (warnings on stderr)."""
    mapping = ColumnMap(item_id=args.item_col, title=args.title_col, user_id=args.user_col,
                        ts=args.time_col, rating=args.rating_col, label=args.label_col)
    row, warnings = import_file(store, args.path, args.name, mapping)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    result = {"name": row["name"], "kind": row["kind"], "n_users": int(row["n_users"]),
              "n_items": int(row["n_items"]), "n_interactions": int(row["n_interactions"]), "warnings": warnings}
    emit(args, result, lambda r: f"imported {r['name']}: {r['n_items']} items, {r['n_interactions']} interactions")


def cmd_baselines(args, store):
    """`baselines`: random and popularity HR@k/NDCG@k on the protocol's split, the floor every victim must beat."""
    ds = load_dataset(store, args.dataset)
    split = build_split(ds, ProtocolConfig(seed=args.seed))
    result = {"dataset": args.dataset, **split_summary(split),
              "tie_breaking": "expected value over a uniformly random order of tied candidates",
              "baselines": baselines(split)}

    def text(r):
        lines = [f"{r['dataset']}: {r['n_test_cases']} test users, {r['n_train_samples']} training windows"]
        for name, m in r["baselines"].items():
            lines.append(f"  {name:<11} " + "  ".join(f"{k}={v:.4f}" for k, v in m.items()))
        return "\n".join(lines)
    emit(args, result, text)


def build_parser() -> argparse.ArgumentParser:
    """The `python -m core` parser with every subcommand, so `--help` lists them all."""
    parser = argparse.ArgumentParser(prog="python -m core", description="BadRec Lab: backdoor attacks and "
                                     "defences for LLM recommenders")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    ds = sub.add_parser("datasets", help="list, inspect and import datasets").add_subparsers(
        dest="action", required=True)
    p = ds.add_parser("list", help="built-in and imported datasets with their status")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_datasets_list)
    p = ds.add_parser("info", help="counts of a dataset (imported on first use)")
    p.add_argument("name")
    p.add_argument("--source", help="a folder or .zip holding the dataset's official files")
    p.add_argument("--offline", action="store_true", help="never download")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_datasets_info)
    p = ds.add_parser("import", help="import a CSV/TSV/Parquet/JSON Lines file as a dataset")
    p.add_argument("path")
    p.add_argument("--name", required=True)
    for flag, what in (("item", "item id"), ("title", "title"), ("user", "user id"), ("time", "timestamp"),
                       ("rating", "rating"), ("label", "ground-truth poison flag")):
        p.add_argument(f"--{flag}-col", help=f"column holding the {what} (guessed when omitted)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_datasets_import)

    p = sub.add_parser("baselines", help="random and popularity HR@k/NDCG@k on the protocol's test cases")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_baselines)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable]:
    """Subcommands defined next to the code they drive (attack, scan, defend)."""
    from . import attack, scan, sweep

    return [attack.register, scan.register, sweep.register]


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m core`: returns the exit status (2 with one `error:` line on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if quiet(args):
        silence_progress_bars()
    try:
        store = Store(settings.db_path())
        args.fn(args, store)
    except BadRecError as exc:
        print(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory; use a smaller model, batch size or dataset", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
