"""Unicode hygiene on clean catalogs: how many real titles get a finding that counts, per family.

Every title of ml-100k, lastfm-2k (artist names) and steam (game titles) is clean as far as BadRec
goes, so each title flagged here is a false positive. The titles are read as a scan sees them (the
dataset's parser, then `clean_title`); datasets are found on BADREC_DATA_DIRS. Prints JSON with, per
catalog and kind, the flagged titles, their share and a few examples, and the seconds taken.

    BADREC_DATA_DIRS=../shared/data nice -n 15 python bench/unicode_hygiene.py [--examples 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import builtin as datasets  # noqa: E402
from core.pscanner.unicode_hygiene import KINDS, summarize, suspicious_findings  # noqa: E402
from core.sanitize import clean_title  # noqa: E402

CATALOGS = ("ml-100k", "lastfm-2k", "steam")


def catalog_titles(name: str) -> list[str]:
    """A built-in dataset's titles, cleaned as `core.data.dataset` stores them."""
    folder = datasets.find_local(name)
    if folder is None:
        raise SystemExit(f"{name} not found on BADREC_DATA_DIRS")
    items, _, _ = datasets.parse(name, folder)
    return [clean_title(str(t)) for t in items["title"]]


def measure(titles: list[str], n_examples: int) -> dict:
    """False positives per kind (titles with at least one finding of that kind) and overall."""
    t0 = time.perf_counter()
    found = suspicious_findings(titles)
    scores, reasons = summarize(found)
    seconds = time.perf_counter() - t0
    n = len(titles)
    per_kind = {}
    for kind in KINDS:
        hit = [i for i, fs in enumerate(found) if any(f.kind == kind for f in fs)]
        per_kind[kind] = {"titles": len(hit), "share": round(len(hit) / n, 5),
                          "examples": [[titles[i], reasons[i]] for i in hit[:n_examples]]}
    flagged = int((scores > 0).sum())
    return {"n_titles": n, "flagged": flagged, "share": round(flagged / n, 5), "seconds": round(seconds, 2),
            "kinds": per_kind}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=5, help="example titles kept per kind")
    ap.add_argument("--catalogs", default=",".join(CATALOGS), help="comma-separated built-in datasets")
    args = ap.parse_args()
    out = {name: measure(catalog_titles(name), args.examples) for name in args.catalogs.split(",")}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1)
    print()


if __name__ == "__main__":
    main()
