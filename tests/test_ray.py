"""The Ray engine on a real local cluster this module starts (2 CPUs, loopback only): a Ray scan equals the
local scan, a killed worker is retried, a cancelled scan leaves nothing, a sweep on Ray equals its runs done
one by one, and bad input exits 2 with nothing written."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import psutil
import pytest
from tiny_helpers import synthetic_store, tiny_attack

from core import settings
from core.attack.experiment import run_attack
from core.attack.sweep import SweepGrid, run_sweep
from core.cli.main import main
from core.progress import CallbackProgress, Cancelled
from core.pscanner.scan import run_scan
from core.pscanner.scan_config import ScanConfig
from core.pscanner.scanner import SCANNER_TRAIN, ScannerConfig
from core.runs.ray_engine import RayConfig
from core.runs.store import Store
from tests.openai_server import free_port
from tests.test_pages import frame, open_page, texts, tiny_scan_settings, wait_jobs

FAST = ScannerConfig(train=replace(SCANNER_TRAIN, epochs=1, batch_size=32), min_steps=5, n_triggers=20, rounds=0,
                     consolidate=False,                     max_titles=80, mine_passes=0, target_fpr=0.05, exclude=("zzqx",))
LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module; in Ray's single-machine mode (read when ray is first imported, so
    set before) every port binds 127.0.0.1."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = pytest.importorskip("ray")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, object_store_memory=200 * 2**20, logging_level="ERROR")
        try:
            yield ray
        finally:
            ray.shutdown()


def _ray_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


def _titles(n: int) -> list[str]:
    words = ["Night", "River", "Stone", "Love", "City", "King", "Dream", "Summer", "Ghost", "Road", "Blue", "Last",
             "Heart", "Storm", "Garden", "Silent", "Iron", "Golden", "Wild", "Lost"]
    rng = random.Random(3)
    return [f"{rng.choice(words)} {rng.choice(words)} {rng.choice(words)} ({rng.randint(1950, 1999)})"
            for _ in range(n)]


def _scan_cfg(path, engine: str = "local") -> ScanConfig:
    return ScanConfig(source="catalog", catalog_path=str(path), methods=("scanner",), scanner=FAST, chunk_size=256,
                      engine=engine, ray=RayConfig(workers=2), crossfit=2)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A 2,000-title catalog as one CSV and as a folder of Parquet shards, scanned once locally (8 chunks)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("ray-home")
        mp.setenv("BADREC_HOME", str(home))
        titles = _titles(2000)
        df = pd.DataFrame({"item_id": [f"{i:05d}" for i in range(len(titles))],
                           "title": [f"{t} zzqx" if i % 40 == 0 else t for i, t in enumerate(titles)],
                           "is_poisoned": [int(i % 40 == 0) for i in range(len(titles))]})
        csv = home / "catalog.csv"
        df.to_csv(csv, index=False)
        shards = home / "shards"
        shards.mkdir()
        for k, start in enumerate(range(0, len(df), 700)):
            df.iloc[start:start + 700].to_parquet(shards / f"part-{k}.parquet", index=False)
        store = Store(home / "badrec.duckdb")
        local = run_scan(store, _scan_cfg(csv)).to_dict()
        yield SimpleNamespace(home=home, store=store, csv=csv, shards=shards, local=local,
                              rows=store.scan_results(local["scan_id"]))


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a["item_id"].tolist() == b["item_id"].tolist()
    assert a["flagged"].tolist() == b["flagged"].tolist()
    assert a["span"].tolist() == b["span"].tolist()
    assert np.allclose(a["score"], b["score"], rtol=0, atol=1e-6)


def test_the_cluster_listens_on_loopback_only(cluster):
    listening = [(p.name(), c.laddr.ip) for p in _ray_processes() + [psutil.Process()]
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening and all(ip in LOOPBACK for _, ip in listening), listening


def test_a_ray_scan_of_parquet_shards_equals_the_local_scan(cluster, scanned):
    result = run_scan(scanned.store, _scan_cfg(scanned.shards, "ray")).to_dict()
    assert result["engine"] == "ray" and result["scanner_cached"] is True
    for key in ("n_items", "n_flagged", "threshold", "precision", "recall", "f1", "auc"):
        assert result[key] == pytest.approx(scanned.local[key], abs=1e-9), key
    _same_rows(scanned.store.scan_results(result["scan_id"]), scanned.rows)
    assert not any((scanned.home / "cache" / "ray-shards").iterdir())  # shards removed after the write


def test_a_worker_killed_mid_scan_is_retried(cluster, scanned):
    killed: list[int] = []

    def kill_one_scorer(done, total, message, eta):
        if killed or not total or not 0 < done < total:
            return
        scorers = _scorers()
        scorers[0].kill()
        killed.append(scorers[0].pid)

    result = run_scan(scanned.store, _scan_cfg(scanned.csv, "ray"), CallbackProgress(kill_one_scorer))
    assert killed  # a worker died after the first chunk, and Ray restarted it and retried its chunk
    _same_rows(scanned.store.scan_results(result.scan_id), scanned.rows)


def _scorers() -> list[psutil.Process]:
    """The live scan actors (a killed one is a zombie until Ray reaps it: gone)."""
    live = []
    for p in _ray_processes():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "TitleScorer" in (p.cmdline()[:1] or [""])[0]:
                live.append(p)
        except psutil.Error:  # ended while we looked
            pass
    return live


def test_the_folds_of_a_scan_share_one_actor_pool_that_ends_with_it(cluster, scanned):
    seen: list[set[int]] = []

    def record(done, total, message, eta):
        if message.startswith("scoring titles on Ray"):
            seen.append({p.pid for p in _scorers()})

    result = run_scan(scanned.store, _scan_cfg(scanned.csv, "ray"), CallbackProgress(record))
    assert result.crossfit_folds == 2 and len(seen) == 8  # 2 folds x 4 chunks of 256 titles
    assert len(set().union(*seen)) == 2  # the same two actors scored both folds' chunks
    for _ in range(50):  # killed at the end of the scan (a process takes a moment to go)
        if not _scorers():
            break
        time.sleep(0.2)
    assert not _scorers()


def test_a_cancelled_ray_scan_leaves_nothing(cluster, scanned):
    cancel = threading.Event()
    before = len(scanned.store.list_scans())

    def stop(done, total, message, eta):
        if total and 0 < done < total:
            cancel.set()

    with pytest.raises(Cancelled):
        run_scan(scanned.store, _scan_cfg(scanned.csv, "ray"), CallbackProgress(stop, cancel))
    assert len(scanned.store.list_scans()) == before
    assert not any((scanned.home / "cache" / "ray-shards").iterdir())


def test_an_unreachable_cluster_exits_2_with_nothing_written(home, tmp_path, capsys):
    catalog = tmp_path / "c.csv"
    catalog.write_text("item_id,title\n1,A\n2,B\n")
    address = f"127.0.0.1:{free_port()}"
    assert main(["scan", "--catalog", str(catalog), "--engine", "ray", "--address", address, "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the Ray cluster at {address}") and "\n" not in err
    assert Store(settings.db_path()).list_scans().empty


def _run_tables(store: Store, run_id: str) -> dict:
    metrics = store.query("SELECT model, name, value FROM metrics WHERE run_id = ? ORDER BY model, name", [run_id])
    recs = store.query("SELECT * EXCLUDE (run_id) FROM recommendations WHERE run_id = ? ORDER BY ALL", [run_id])
    return {"metrics": metrics, "recommendations": recs}


def test_a_sweep_on_ray_equals_its_runs_one_by_one(cluster, home, tmp_path, monkeypatch):
    # two seeds: two clean models sharing one base (built first, once), then both runs in parallel
    configs = [tiny_attack(poison_ratio=0.1, seed=0), tiny_attack(poison_ratio=0.2, seed=1)]
    store = Store(home / "badrec.duckdb")
    synthetic_store(store)
    result = run_sweep(store, configs, "ray", RayConfig(workers=2))
    assert not result["failed"] and [r["point"] for r in result["runs"]] == [
        {"poison_ratio": 0.1, "seed": 0}, {"poison_ratio": 0.2, "seed": 1}]
    assert store.get_run(result["sweep_id"])["status"] == "done"
    at = open_page("reports")  # the grid's plot and table
    assert "Sweeps" in texts(at) and len(frame(at, "poison_ratio", "asr", "hr@1 poisoned")) == 2
    # the same attacks one by one, from scratch in another home (no model shared with the sweep)
    monkeypatch.setenv("BADREC_HOME", str(tmp_path / "alone"))
    alone = Store(tmp_path / "alone" / "badrec.duckdb")
    synthetic_store(alone)
    for cfg, run in zip(configs, result["runs"]):
        single = run_attack(alone, cfg)
        assert single["poisoned"] == run["poisoned"] and single["clean"] == run["clean"]
        ours, theirs = _run_tables(store, run["run_id"]), _run_tables(alone, single["run_id"])
        for name in ours:
            pd.testing.assert_frame_equal(ours[name], theirs[name])
        assert store.get_run(run["run_id"])["config"] == alone.get_run(single["run_id"])["config"]


def test_the_scanner_page_scans_on_ray(cluster, store):
    synthetic_store(store)
    at = open_page("scanner")
    at.radio(key="scanner_source").set_value("dataset").run()
    tiny_scan_settings(at)
    at.radio(key="scanner_engine").set_value("ray").run()
    at.button(key="scanner_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wait_jobs(store)
    job = store.list_runs("scan").iloc[0]
    assert job["status"] == "done", job["error"]
    result = json.loads(job["result"])
    assert result["engine"] == "ray" and result["n_items"] == 60
    assert json.loads(job["config"])["ray"] == {"address": None, "workers": None, "shard_dir": None}


def test_a_grid_names_attack_flags_and_combines_its_axes():
    grid = SweepGrid.from_dict({"fixed": {"tiny_size": "smoke", "eval_users": 50, "no_generate": True},
                                "grid": {"poison_ratio": [0.005, 0.01, 0.02], "trigger_level": ["char", "word"]}})
    configs = grid.configs()
    assert len(configs) == 6 and grid.points()[1] == {"poison_ratio": 0.005, "trigger_level": "word"}
    assert [c.poison_ratio for c in configs] == [0.005, 0.005, 0.01, 0.01, 0.02, 0.02]
    assert configs[1].trigger.level == "word" and configs[1].trigger.text != configs[0].trigger.text
    assert configs[0].eval_users == 50 and configs[0].generate is False
    assert SweepGrid.from_dict(grid.to_dict()) == grid


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ('{"grid": {"poison_ratio": [0.01], "dose": [1]}}', "unknown grid keys dose"),
    ('{"grid": {}}', "the grid is empty"),
    ('{"grid": {"poison_ratio": []}}', "has no values"),
    ('{"grid": {"seed": [0.5]}}', "takes int"),
    ('{"grid": {"victim": ["bert"]}}', "must be one of"),
    ('{"grids": {"seed": [0]}}', "unknown top-level grid keys"),
])
def test_a_bad_grid_exits_2_with_nothing_written(home, tmp_path, capsys, text, message):
    path = tmp_path / "sweep.json"
    path.write_text(text)
    assert main(["sweep", "--grid", str(path), "--engine", "ray", "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert Store(settings.db_path()).list_runs().empty
