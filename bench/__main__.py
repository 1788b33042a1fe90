"""`python -m bench [--quick] [--json] [--only SECTION ...]`: measure, write bench/results/, print JSON.

Each section runs both sides of its comparison in this one process run, on the same data, so the
ratios hold on a noisy machine. Results land in bench/results/<date>[-quick].json and
bench/results/latest.json; BENCHMARKS.md explains them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from . import machine

RESULTS = Path(__file__).resolve().parent / "results"


def sections():
    from . import end_to_end, pages_bench, real_llm, scan_bench, scoring, store_bench, training
    return {"scoring": scoring.run, "training": training.run, "real_llm": real_llm.run, "scan": scan_bench.run,
            "duckdb": store_bench.run, "pages": pages_bench.run, "end_to_end": end_to_end.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes; finishes within ~10 minutes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    args = parser.parse_args(argv)
    runners = sections()
    chosen = args.only or list(runners)
    unknown = set(chosen) - set(runners)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}; choose from {sorted(runners)}")
    out: dict = {"machine": machine.machine(), "quick": args.quick, "command": "python -m bench " + " ".join(
        argv if argv is not None else sys.argv[1:])}
    failed = False
    for name in chosen:
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            out[name] = runners[name](quick=args.quick)
        except Exception as exc:  # one broken section must not hide the others' numbers
            failed = True
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc()
        out[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(f"[bench] {name} done in {out[name]['section_s']} s", file=sys.stderr, flush=True)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-quick" if args.quick else "")
    text = json.dumps(out, indent=2)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(text if args.json else f"results: bench/results/{stamp}.json")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
