"""Datasets as the rest of the library sees them: normalised frames loaded from DuckDB.

`ensure_dataset` imports a built-in dataset into the store on first use;
`import_upload` does the same for a user's file. Both write in one
transaction, so a failure leaves `datasets list` unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core.errors import DatasetNotFound, InputError
from core.progress import Progress
from core.runs.store import Store
from core.sanitize import clean_title

from . import builtin
from .uploads import ColumnMap, Upload, read_upload_path

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Dataset:
    """A dataset in normalised form.

    Args:
        name (`str`): the dataset's name in the store.
        items (`pd.DataFrame`): columns `item_id` (str), `title` (str), `extra` (JSON str or None).
        interactions (`pd.DataFrame`): columns `user_id`, `item_id` (str), `ts` (int), `rating` (float).
    """

    name: str
    items: pd.DataFrame
    interactions: pd.DataFrame


def ensure_dataset(store: Store, name: str, source: Path | None = None, allow_network: bool = True,
                   progress: Progress | None = None) -> dict:
    """Make sure a dataset is in the store (importing a built-in one if needed); returns its row."""
    row = store.dataset_row(name)
    if row is not None and source is None:
        return row
    if name not in builtin.SPECS:
        raise DatasetNotFound(f"unknown dataset {name!r}; built-in: {', '.join(builtin.SPECS)}; "
                              "or import a file with `datasets import`")
    folder, origin = builtin.obtain(name, source, allow_network, progress)
    if progress:
        progress.update(0, None, f"parsing {name}")
    items, inter, notes = builtin.parse(name, folder)
    items = items.assign(title=items["title"].map(clean_title))
    store.save_dataset(name, origin, builtin.SPECS[name].kind, items, inter, notes)
    return store.dataset_row(name)


def load_dataset(store: Store, name: str, allow_network: bool = True) -> Dataset:
    """A dataset's normalised frames from the store, imported first if it is a built-in not yet there."""
    ensure_dataset(store, name, allow_network=allow_network)
    return Dataset(name=name, items=store.load_items(name), interactions=store.load_interactions(name))


def check_name(name: str) -> str:
    """The name, if an upload may take it: safe characters and not a built-in's name."""
    if not NAME_RE.match(name):
        raise InputError(f"dataset name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if name in builtin.SPECS:
        raise InputError(f"{name!r} is a built-in dataset name; choose another name")
    return name


def save_upload(store: Store, name: str, upload: Upload, source: str) -> dict:
    """Write a validated upload as dataset `name` (replacing one of that name) in one transaction."""
    check_name(name)
    items = upload.items.copy()
    if "label" in items:
        items["extra"] = [json.dumps({"is_poisoned": bool(v)}) for v in items.pop("label")]
    store.save_dataset(name, source, upload.kind, items, upload.interactions, upload.warnings)
    return store.dataset_row(name)


def import_file(store: Store, path: Path | str, name: str, mapping: ColumnMap = ColumnMap()) -> tuple[dict, list[str]]:
    """Validate and import a file; returns the dataset row and the warnings."""
    check_name(name)
    upload = read_upload_path(path, mapping)
    return save_upload(store, name, upload, str(path)), upload.warnings


def dataset_info(store: Store, name: str, allow_network: bool = True) -> dict:
    """Counts and notes of a dataset (imported on first use)."""
    row = ensure_dataset(store, name, allow_network=allow_network)
    notes = json.loads(row["notes"]) if row.get("notes") else []
    info = {"name": name, "kind": row["kind"], "n_users": int(row["n_users"]), "n_items": int(row["n_items"]),
            "n_interactions": int(row["n_interactions"]), "source": row["source"], "notes": notes}
    if name in builtin.SPECS:
        info["terms"] = builtin.SPECS[name].terms
    if row["kind"] == "interactions":
        stats = store.user_length_stats(name)
        info["mean_seq_len"] = round(float(stats["mean_len"]), 2)
        info["median_seq_len"] = float(stats["median_len"])
        n = info["n_users"] * info["n_items"]
        info["density"] = round(info["n_interactions"] / n, 6) if n else 0.0
    return info


def dataset_status(store: Store) -> list[dict]:
    """Every known dataset: built-ins (imported, available locally, or downloadable) and uploads."""
    imported = {r["name"]: r for r in store.list_datasets().to_dict("records")}
    rows = []
    for name, spec in builtin.SPECS.items():
        if name in imported:
            status = "imported"
        else:
            status = "available" if builtin.find_local(name) else "downloadable"
        r = imported.get(name, {})
        rows.append({"name": name, "builtin": True, "status": status, "kind": spec.kind,
                     "n_users": r.get("n_users"), "n_items": r.get("n_items"),
                     "n_interactions": r.get("n_interactions"), "terms": spec.terms})
    for name, r in imported.items():
        if name not in builtin.SPECS:
            rows.append({"name": name, "builtin": False, "status": "imported", "kind": r["kind"],
                         "n_users": r["n_users"], "n_items": r["n_items"],
                         "n_interactions": r["n_interactions"], "terms": "uploaded by the user"})
    for r in rows:
        for k in ("n_users", "n_items", "n_interactions"):
            r[k] = None if r[k] is None or pd.isna(r[k]) else int(r[k])
    return rows
