"""Shared fixtures: a fresh BADREC_HOME per test, the real ml-100k from ../shared/data, tiny synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data.dataset import Dataset
from core.runs.store import Store

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty app home; datasets are found through BADREC_DATA_DIRS = ../shared/data."""
    monkeypatch.setenv("BADREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BADREC_DATA_DIRS", os.environ.get("BADREC_DATA_DIRS", str(SHARED_DATA)))
    return tmp_path / "home"


@pytest.fixture
def store(home) -> Store:
    return Store(home / "badrec.duckdb")


def require_shared(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"../shared/data/{name} is not present")
    return path


@pytest.fixture(scope="session")
def ml100k_store(tmp_path_factory) -> Store:
    """ml-100k imported once per test session into its own DuckDB file (read it, don't write)."""
    require_shared("ml-100k")
    from core.data import builtin
    store = Store(tmp_path_factory.mktemp("ml100k") / "badrec.duckdb")
    items, inter, notes = builtin.parse("ml-100k", SHARED_DATA / "ml-100k")
    store.save_dataset("ml-100k", str(SHARED_DATA / "ml-100k"), "interactions", items, inter, notes)
    return store


def make_synthetic(n_users: int = 30, n_items: int = 60, per_user: int = 12, seed: int = 0) -> Dataset:
    """A small dataset with learnable structure: users walk through items in near-sequential order."""
    rng = np.random.default_rng(seed)
    titles = [f"Movie {chr(65 + i % 26)}{i} ({1980 + i % 30})" for i in range(n_items)]
    items = pd.DataFrame({"item_id": [str(i) for i in range(n_items)], "title": titles, "extra": None})
    rows = []
    for u in range(n_users):
        start = int(rng.integers(0, n_items))
        for t in range(per_user):
            rows.append((f"u{u}", str((start + t) % n_items), 1000 * u + t, float(rng.integers(1, 6))))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "ts", "rating"])
    return Dataset("synthetic", items, inter)


@pytest.fixture
def synthetic() -> Dataset:
    return make_synthetic()
