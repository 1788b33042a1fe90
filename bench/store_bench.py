"""DuckDB: writing 1M scan rows, a filtered top-100, and the dashboard's page queries over 100k rows."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.runs.store import Store


def synthetic_scan_rows(scan_id: str, n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.5, 8, size=n)
    labels = rng.random(n) < 0.01
    scores[labels] = rng.beta(8, 1, size=int(labels.sum()))
    return pd.DataFrame({"scan_id": scan_id, "item_id": np.arange(n).astype(str),
                         "title": [f"Synthetic Title {i} ({1950 + i % 70})" for i in range(n)],
                         "score": scores, "flagged": scores >= 0.5, "method": "p-scanner",
                         "span": None, "label": labels})


def fill_scan(store: Store, scan_id: str, n: int) -> float:
    """Insert one scan of n rows in one transaction; returns seconds."""
    rows = synthetic_scan_rows(scan_id, n)
    t0 = time.perf_counter()
    with store.connect(write=True) as con:
        con.execute("INSERT INTO scans VALUES (?, NULL, 'bench', 'p-scanner', 0.5, ?, ?, NULL, now())",
                    [scan_id, n, int(rows["flagged"].sum())])
        con.register("rows", rows)
        con.execute("INSERT INTO scan_results BY NAME SELECT * FROM rows")
    return time.perf_counter() - t0


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> dict:
    n_big = 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        write_s = fill_scan(store, "big", n_big)
        top100_s = timed(lambda: store.query(
            "SELECT item_id, title, score FROM scan_results WHERE scan_id = ? AND flagged AND title ILIKE ?"
            " ORDER BY score DESC LIMIT 100", ["big", "%19%"]))
        fill_scan(store, "page", 100_000)
        page_s = {
            "scanner_table": timed(lambda: store.scan_results_page("page", search="Title 1", threshold=0.4,
                                                                   flagged=True, limit=200)),
            "scanner_count": timed(lambda: store.scan_results_count("page", threshold=0.4, flagged=True)),
            "scanner_scores_for_curves": timed(lambda: store.scan_scores("page")),
            "scan_list": timed(store.list_scans),
        }
    return {"rows_written": n_big, "write_1m_s": round(write_s, 3), "rows_per_s": round(n_big / write_s),
            "top100_filtered_s": round(top100_s, 4), "page_queries_100k_s": {k: round(v, 4) for k, v in page_s.items()},
            "page_queries_total_s": round(sum(page_s.values()), 4)}
