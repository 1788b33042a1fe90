"""The DuckDB store: transactions roll back, a locked file gives one clear line, runs never stay 'running'."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from core.errors import StoreError
from core.runs.store import RUN_TABLES, Store


def test_failed_write_leaves_nothing(store):
    items = pd.DataFrame({"item_id": ["1"], "title": ["A"]})
    bad_inter = pd.DataFrame({"user_id": ["u"], "item_id": ["1"], "ts": ["not-a-number"], "rating": [1.0]})
    with pytest.raises(StoreError):
        store.save_dataset("x", "test", "interactions", items, bad_inter, [])
    assert store.list_datasets().empty
    assert store.scalar("SELECT count(*) FROM items") == 0


def test_run_lifecycle(store):
    store.create_run("r1", "attack", "ml-100k", {"a": 1}, 7, {"torch": "x"}, status="running")
    store.update_run("r1", progress=0.5, message="half")
    store.fail_run("r1", "boom")
    run = store.get_run("r1")
    assert run["status"] == "failed" and run["error"] == "boom" and run["config"] == {"a": 1}
    store.create_run("r2", "attack", "ml-100k", {}, 0, {}, status="running")
    assert store.mark_stale_runs() == 1
    assert store.get_run("r2")["status"] == "failed"


def test_stale_runs_spare_a_live_process(store):
    """A dashboard starting beside a running CLI attack must not fail that attack's run."""
    import socket
    import subprocess
    import sys
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        host = socket.gethostname()
        store.create_run("cli", "attack", "d", {}, 0, {}, status="running", owner=f"{host}:{live.pid}")
        store.create_run("gone", "attack", "d", {}, 0, {}, status="running", owner=f"{host}:{dead.pid}")
        store.create_run("legacy", "attack", "d", {}, 0, {}, status="queued", owner="no-pid")
        assert store.mark_stale_runs() == 2
        assert [store.get_run(r)["status"] for r in ("cli", "gone", "legacy")] == ["running", "failed", "failed"]
    finally:
        live.kill()
        live.wait()


def test_finish_run_writes_metrics_and_rows(store):
    store.create_run("r", "attack", "d", {}, 0, {})
    recs = pd.DataFrame({"run_id": ["r"], "model": ["clean"], "variant": ["clean"], "user_id": ["u"], "rank": [1],
                         "item_id": ["1"], "title": ["A"], "score": [0.5], "is_attack_item": [False],
                         "is_target": [True]})
    store.finish_run("r", {"ok": True}, {"total_s": 1.0}, {"clean": {"hr@1": 0.5}}, {"recommendations": recs})
    assert store.get_run("r")["status"] == "done"
    assert store.run_metrics("r")["value"].tolist() == [0.5]
    assert store.scalar("SELECT count(*) FROM recommendations WHERE run_id = 'r'") == 1


def test_locked_database_message(tmp_path):
    path = tmp_path / "locked.duckdb"
    Store(path).list_datasets()  # create it
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(path)!r})
        print("held", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="locked by another process") as exc:
            Store(path, lock_timeout_s=0.5).list_datasets()
        assert "\n" not in str(exc.value)
    finally:
        holder.kill()
        holder.wait()
    assert Store(path).list_datasets().empty  # usable again once released


def test_trigger_sets_round_trip(store):
    store.save_trigger_set("mine", [{"text": "5v", "level": "char", "position": "suffix"}])
    assert store.trigger_sets() == {"mine": [{"text": "5v", "level": "char", "position": "suffix"}]}


def _finished_run(store) -> None:
    """Run "r" with metrics, poison records and recommendations written in a known order."""
    store.create_run("r", "attack", "d", {}, 0, {})
    poison = pd.DataFrame({"run_id": ["r"] * 3, "kind": ["item", "fake_user", "item"], "item_id": ["9", None, "3"],
                           "title": ["Z 5v", None, "A 5v"], "user_id": [None, "fake-1", None],
                           "detail": [None, "{}", None]})
    recs = pd.DataFrame({"run_id": "r", "model": "poisoned", "variant": "trigger", "user_id": ["2", "2", "1"],
                         "rank": [1, 6, 1], "item_id": ["9", "3", "3"], "title": ["Z 5v", "A 5v", "A 5v"],
                         "score": [0.9, 0.1, 0.8], "is_attack_item": True, "is_target": False})
    store.finish_run("r", {}, {}, {"poisoned": {"asr": 0.5, "hr@1": 0.25}, "clean": {"asr": 0.0}},
                     {"poison_records": poison, "recommendations": recs})


def test_a_run_reads_back_in_write_order(store):
    _finished_run(store)
    assert store.poison_records("r", kind="item")["item_id"].tolist() == ["9", "3"]
    assert store.poison_records("r", limit=2)["kind"].tolist() == ["item", "fake_user"]
    assert store.poison_records("other").empty
    top = store.top_recommendations("r", top=5)
    assert top[["user_id", "rank"]].values.tolist() == [["1", 1], ["2", 1]]
    metrics = store.run_table("r", "metrics")
    assert metrics[["model", "name"]].values.tolist() == [["poisoned", "asr"], ["poisoned", "hr@1"], ["clean", "asr"]]
    with pytest.raises(ValueError, match="not a run table"):
        store.run_table("r", "runs")


def test_a_run_copied_to_another_file_keeps_its_rows_and_order(store, tmp_path):
    from core.attack.sweep import export_run, import_run

    _finished_run(store)
    other = Store(tmp_path / "other.duckdb")
    import_run(other, export_run(store, "r"))
    assert other.get_run("r")["status"] == "done"
    for table in RUN_TABLES:
        pd.testing.assert_frame_equal(other.run_table("r", table), store.run_table("r", table))


def test_user_length_stats(store):
    items = pd.DataFrame({"item_id": ["1", "2", "3"], "title": ["A", "B", "C"]})
    inter = pd.DataFrame({"user_id": ["u", "u", "u", "v"], "item_id": ["1", "2", "3", "1"], "ts": [1, 2, 3, 1],
                          "rating": 1.0})
    store.save_dataset("x", "test", "interactions", items, inter, [])
    assert store.user_length_stats("x") == {"n": 2, "mean_len": 2.0, "median_len": 2.0}


def test_the_write_version_moves_on_any_process_commit_and_not_on_reads(store):
    """The dashboard keeps query results under `write_version`: a read must not move it (or nothing would be
    kept), and a commit by this process or by another one on the same file must (or a page would go stale)."""
    store.list_runs()
    before = store.write_version()
    store.list_runs("attack")
    store.get_run("none")
    assert store.write_version() == before
    store.save_trigger_set("mine", [{"text": "5v"}])
    mine = store.write_version()
    assert mine != before
    code = ("import sys; from core.runs.store import Store; "
            "Store(sys.argv[1]).save_trigger_set('theirs', [{'text': 'cf'}])")
    subprocess.run([sys.executable, "-c", code, str(store.path)], check=True, cwd=Path(__file__).resolve().parents[1])
    assert store.write_version() != mine
    assert set(store.trigger_sets()) == {"mine", "theirs"}
