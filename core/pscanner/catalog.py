"""What a scan reads: the catalog (an uploaded file or folder of shards, a dataset, an attack run's poisoned
catalog) with its labels where known, and the titles its scanner trains on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InputError
from core.runs.store import Store

from .scan_config import ScanConfig, has_reference


@dataclass
class Catalog:
    """A catalog to scan: items (item_id, title), optional labels, and where it came from."""

    items: pd.DataFrame
    labels: np.ndarray | None
    source: str
    domain: str | None
    run_id: str | None = None
    warnings: list[str] = field(default_factory=list)


# -- sources ----------------------------------------------------------------------------
def _labels_from_extra(items: pd.DataFrame) -> np.ndarray | None:
    if "extra" not in items or items["extra"].isna().all():
        return None
    flags = []
    for raw in items["extra"]:
        try:
            obj = json.loads(raw) if isinstance(raw, str) else {}
        except json.JSONDecodeError:
            obj = {}
        if not isinstance(obj, dict) or "is_poisoned" not in obj:
            return None
        flags.append(bool(obj["is_poisoned"]))
    return np.array(flags, dtype=bool)


def run_catalog(store: Store, run_id: str) -> Catalog:
    """An attack run's poisoned catalog: its dataset's items with the attacker's titles in place.

    Poison records of kind `item` carry the attacked item's id and its triggered title; an id not in the
    dataset is an item the attacker added.
    """
    run = store.get_run(run_id)
    if run is None:
        raise InputError(f"unknown run id {run_id!r}; list runs with the dashboard's Reports page")
    if run.get("kind") != "attack":
        raise InputError(f"run {run_id!r} is a {run.get('kind')} run; scan an attack run")
    if run.get("status") != "done":
        raise InputError(f"run {run_id!r} is {run.get('status')}; only finished attack runs can be scanned")
    dataset = run["dataset"]
    items = store.load_items(dataset)[["item_id", "title"]]
    poison = store.poison_records(run_id, kind="item")[["item_id", "title"]]
    poison = poison.dropna(subset=["item_id", "title"]).drop_duplicates("item_id", keep="last")
    if poison.empty:
        raise InputError(f"run {run_id!r} has no poisoned items recorded")
    replaced = items.set_index("item_id")["title"].to_dict()
    replaced.update(dict(zip(poison["item_id"], poison["title"])))
    out = pd.DataFrame({"item_id": list(replaced), "title": list(replaced.values())})
    labels = out["item_id"].isin(set(poison["item_id"])).to_numpy()
    return Catalog(out, labels, f"run:{run_id}", dataset, run_id)


def resolve_catalog(store: Store, cfg: ScanConfig) -> Catalog:
    """The items to scan, validated; raises `InputError` on anything unusable."""
    from core.data.dataset import load_dataset
    from core.data.uploads import ColumnMap, read_upload_path

    if cfg.source == "run":
        return run_catalog(store, cfg.run_id)
    if cfg.source == "dataset":
        ds = load_dataset(store, cfg.dataset)
        if ds.items.empty:
            raise InputError(f"dataset {cfg.dataset!r} has no items")
        return Catalog(ds.items[["item_id", "title"]].reset_index(drop=True), _labels_from_extra(ds.items),
                       f"dataset:{cfg.dataset}", cfg.dataset)
    if cfg.engine == "ray" and Path(cfg.catalog_path).is_dir():
        # a folder of shards: Ray Data parses them in parallel; one file is parsed here as on the local engine
        # (the driver holds every row either way, and Ray Data's tasks cost ~2.5 s on 200k titles for nothing)
        from core.data.uploads import normalise
        from core.runs.ray_engine import read_catalog

        upload = normalise(read_catalog(cfg.catalog_path), ColumnMap(label=cfg.label_col), [])
    else:
        upload = read_upload_path(cfg.catalog_path, ColumnMap(label=cfg.label_col))
    items = upload.items.drop_duplicates("item_id").reset_index(drop=True)
    labels = items["label"].to_numpy(dtype=bool) if "label" in items else None
    return Catalog(items[["item_id", "title"]], labels, f"file:{Path(cfg.catalog_path).name}", cfg.dataset,
                   warnings=list(upload.warnings))


def training_titles(store: Store, cfg: ScanConfig, catalog: Catalog) -> tuple[list[str], str, bool]:
    """Titles the scanner trains on, the name of that domain, and whether they are a trusted reference.

    A domain dataset scanned for another catalog (a run's poisoned one, an upload) is the clean
    reference; a catalog that trains its own scanner may hold the poison the scan looks for.
    """
    if catalog.domain and cfg.train_on != "catalog":
        from core.data.dataset import load_dataset

        return load_dataset(store, catalog.domain).items["title"].tolist(), catalog.domain, has_reference(cfg)
    return catalog.items["title"].tolist(), catalog.source, False
