"""Defend an attacked run (DESIGN.md §4): scan its poisoned catalog (`core.pscanner.scan.run_scan`), drop the flagged
items (with their interactions and the fake users' samples) and retrain the victim
(`core.attack.experiment.retrain_without`)."""

from __future__ import annotations

import json
import time

import pandas as pd

from core.errors import InputError
from core.progress import Progress
from core.runs.store import Store

from .scan import run_scan
from .scan_config import ScanConfig


# -- defence -------------------------------------------------------------------------------
def run_defend(store: Store, run_id: str, cfg: ScanConfig | None = None, progress: Progress | None = None,
               client=None) -> dict:
    """Scan an attack run's poisoned catalog, drop the flagged items and retrain the victim.

    Returns:
        `dict`: {"run_id", "scan_id", "detection": {precision, recall, f1, auc, fpr, n_flagged},
        "before": {"asr", "hr@1"}, "after": {"asr", "hr@1"}, "dropped", "seconds"}.
    """
    t0 = time.monotonic()
    if store.get_run(run_id) is None:
        raise InputError(f"unknown run id {run_id!r}")
    base = cfg or ScanConfig(source="run", run_id=run_id, methods=("scanner",))
    scan_cfg = ScanConfig(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                             "source": "run", "run_id": run_id})
    scan = run_scan(store, scan_cfg, progress, client)
    rows = store.scan_results(scan.scan_id)
    dropped = rows.loc[rows["flagged"], "item_id"].astype(str).tolist()
    from core.attack import experiment  # retrains the victim without the dropped items

    if progress:
        progress.phase(f"retraining without {len(dropped)} flagged items")
    retrained = experiment.retrain_without(store, run_id, dropped, progress)
    detection = {k: scan.metrics.get(k) for k in ("precision", "recall", "f1", "auc", "fpr")}
    detection.update(n_flagged=scan.n_flagged, campaigns=scan.campaigns, unicode=scan.unicode, **scan.by_rule)
    return {"run_id": run_id, "scan_id": scan.scan_id, "detection": detection,
            "before": retrained.get("before", {}), "after": retrained.get("after", {}),
            "dropped": dropped, "retrain": {k: v for k, v in retrained.items() if k not in ("before", "after")},
            "seconds": round(time.monotonic() - t0, 2), "warnings": scan.warnings}


def defence_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished defend runs (`Store.list_runs("defend")`) as one row each: what was dropped and the
    attack before and after."""
    rows = []
    for run in runs[runs["status"] == "done"].itertuples():
        r = json.loads(run.result) if isinstance(run.result, str) else run.result
        found, before, after = r.get("detection", {}), r.get("before", {}), r.get("after", {})
        rows.append({"defence run": run.run_id, "attack run": r.get("run_id"), "flagged": found.get("n_flagged"),
                     "poisoned items dropped": r.get("retrain", {}).get("n_poisoned_dropped"),
                     "f1": found.get("f1"), "asr before": before.get("asr"), "asr after": after.get("asr"),
                     "hr@1 before": before.get("hr@1"), "hr@1 after": after.get("hr@1"), "seconds": r.get("seconds")})
    return pd.DataFrame(rows)
