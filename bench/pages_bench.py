"""Each dashboard page rendered headless (Streamlit AppTest) over a store holding 100,000 scan rows."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from core.data import builtin
from core.runs.store import Store

from .store_bench import fill_scan

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("home", "dataset", "triggers", "attack", "compare", "scanner", "reports")


def run(quick: bool = False) -> dict:
    from streamlit.testing.v1 import AppTest
    home = Path(tempfile.mkdtemp(prefix="badrec-pages-"))
    os.environ["BADREC_HOME"] = str(home)
    store = Store(home / "badrec.duckdb")
    folder, origin = builtin.obtain("ml-100k")
    items, inter, notes = builtin.parse("ml-100k", folder)
    store.save_dataset("ml-100k", origin, "interactions", items, inter, notes)
    fill_scan(store, "bench-100k", 100_000)
    out = {}
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        if page != "home":
            at.switch_page(f"pages/{page}.py")
        best = float("inf")
        for _ in range(2 if quick else 3):  # first render warms imports; the best is the steady cost
            t0 = time.perf_counter()
            at.run()
            best = min(best, time.perf_counter() - t0)
        if at.exception:
            raise RuntimeError(f"page {page} raised: {at.exception[0].message}")
        out[page] = round(best, 3)
    return {"render_s": out, "max_render_s": max(out.values()), "scan_rows": 100_000}
