"""Built-in datasets parsed from their official formats (../shared/data), a named archive, and the PyPI mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import SHARED_DATA, require_shared

from core.data.dataset import dataset_info, dataset_status, ensure_dataset
from core.errors import DatasetNotFound

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env or dict(os.environ))


def test_ml100k_from_search_path(home):
    require_shared("ml-100k")
    proc = run_cli("datasets", "info", "ml-100k", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["name"], info["n_users"], info["n_items"], info["n_interactions"]) == ("ml-100k", 943, 1682, 100000)
    assert info["source"].endswith("ml-100k")


def test_ml100k_from_pypi_mirror_with_fresh_home(tmp_path):
    """No shared folder on the path, an empty home: the recbole wheel on PyPI is the source."""
    env = {k: v for k, v in os.environ.items() if k != "BADREC_DATA_DIRS"}
    env["BADREC_HOME"] = str(tmp_path / "fresh")
    proc = run_cli("datasets", "info", "ml-100k", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (943, 1682, 100000)
    assert info["source"] in ("pypi:recbole==1.2.1", "https://files.grouplens.org/datasets/movielens/ml-100k.zip")


def test_named_archive_is_a_source(store, tmp_path):
    src = require_shared("ml-100k")
    archive = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("u.item", "u.data"):
            zf.write(src / name, f"ml-100k/{name}")
    row = ensure_dataset(store, "ml-100k", source=archive)
    assert row["n_interactions"] == 100000


def test_wrong_folder_is_named(store, tmp_path):
    with pytest.raises(DatasetNotFound, match="does not hold ml-100k"):
        ensure_dataset(store, "ml-100k", source=tmp_path)


@pytest.mark.parametrize("name,users,items,inter,note", [
    ("lastfm-2k", 1892, 17632, 92834, "no timestamps"),
    ("movietweetings-100k", 16554, 10506, 100000, "0-10"),
    ("ml-1m", 2999, 3883, 487650, "partial ratings"),
])
def test_other_builtins(store, name, users, items, inter, note):
    require_shared(name)
    info = dataset_info(store, name)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (users, items, inter)
    assert any(note in n for n in info["notes"])


def test_steam_is_a_catalog(store):
    require_shared("steam")
    info = dataset_info(store, "steam")
    assert info["kind"] == "catalog" and info["n_interactions"] == 0 and info["n_items"] > 32000
    titles = store.load_items("steam")["title"]
    assert titles.str.len().min() > 0


def test_unknown_dataset_exit_2(home):
    proc = run_cli("datasets", "info", "no-such-data", "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown dataset 'no-such-data'")


def test_status_lists_builtins(store):
    rows = {r["name"]: r for r in dataset_status(store)}
    assert set(rows) >= {"ml-100k", "ml-1m", "lastfm-2k", "steam", "movietweetings-100k"}
    if SHARED_DATA.exists():
        assert rows["ml-100k"]["status"] == "available"


def test_baselines_command(home):
    require_shared("ml-100k")
    proc = run_cli("baselines", "--dataset", "ml-100k", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["baselines"]["random"]["hr@1"] == pytest.approx(0.05)
    assert 0.19 <= out["baselines"]["popularity"]["hr@1"] <= 0.30
    assert out["n_test_cases"] == 943
