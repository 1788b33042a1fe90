"""The background job manager against a real DuckDB file: queue, progress, cancel, failure, stale runs."""

from __future__ import annotations

import threading

import pytest

from core.errors import InputError
from core.runs.jobs import JobManager, describe
from core.runs.store import Store


@pytest.fixture
def manager(store):
    jm = JobManager(store, min_interval_s=0.0)
    yield jm
    jm.shutdown()


def counting_job(steps: int, gate: threading.Event | None = None):
    """A job that logs a loss per step and returns a summary; waits on `gate` first when given."""
    def fn(progress, run_id):
        if gate is not None:
            gate.wait(10)
        for step in range(1, steps + 1):
            progress.update(step, steps, "training")
            progress.store.log_train(run_id, "train", step, steps, 1.0 / step, 100.0)
        return {"steps": steps}
    return fn


def test_job_runs_to_done_with_progress_and_log(manager, store):
    run_id = manager.submit("test", "synthetic", {"steps": 5}, counting_job(5), seed=3)
    row = manager.wait(run_id, timeout=20)
    assert row["status"] == "done"
    assert row["progress"] == 1.0
    assert row["result"] == {"steps": 5}
    assert row["seed"] == 3 and row["config"] == {"steps": 5}
    assert "seconds" in row["timings"]
    log = store.query("SELECT step, loss FROM train_log WHERE run_id = ? ORDER BY step", [run_id])
    assert log["step"].tolist() == [1, 2, 3, 4, 5]


def test_jobs_run_one_at_a_time_in_order(manager, store):
    gate = threading.Event()
    first = manager.submit("test", "d", {}, counting_job(2, gate))
    second = manager.submit("test", "d", {}, counting_job(2))
    assert store.get_run(second)["status"] == "queued"
    assert set(manager.active_ids()) == {first, second}
    gate.set()
    assert manager.wait(second, timeout=20)["status"] == "done"
    rows = store.query("SELECT run_id, started_at, finished_at FROM runs ORDER BY started_at")
    assert rows["run_id"].tolist() == [first, second]
    assert rows["finished_at"].iloc[0] <= rows["started_at"].iloc[1]
    assert manager.active_ids() == []


def test_cancel_running_job_marks_cancelled_and_removes_rows(manager, store):
    started = threading.Event()

    def fn(progress, run_id):
        step = 0
        while True:
            step += 1
            progress.update(step, 10**9, "looping")
            started.set()
            threading.Event().wait(0.01)

    run_id = manager.submit("test", "d", {}, fn)
    assert started.wait(10)
    assert manager.cancel(run_id)
    row = manager.wait(run_id, timeout=20)
    assert row["status"] == "cancelled"
    assert row["error"] == "cancelled by the user"


def test_cancel_queued_job_never_runs(manager, store):
    gate = threading.Event()
    ran = []
    first = manager.submit("test", "d", {}, counting_job(1, gate))
    second = manager.submit("test", "d", {}, lambda p, r: ran.append(r))
    manager.cancel(second)
    gate.set()
    assert manager.wait(first, timeout=20)["status"] == "done"
    row = manager.wait(second, timeout=20)
    assert row["status"] == "cancelled" and ran == []


def test_crash_marks_failed_with_error_and_no_partial_rows(manager, store):
    def fn(progress, run_id):
        # a half-written table that the failure must remove
        with store.connect(write=True) as con:
            con.execute("INSERT INTO metrics VALUES (?, 'clean', 'hr@1', 0.5)", [run_id])
        raise RuntimeError("boom\nsecond line")

    run_id = manager.submit("test", "d", {}, fn)
    row = manager.wait(run_id, timeout=20)
    assert row["status"] == "failed"
    assert row["error"] == "RuntimeError: boom"
    assert store.run_metrics(run_id).empty


def test_bad_input_error_message_is_kept_verbatim(manager):
    def fn(progress, run_id):
        raise InputError("poison_ratio must be in (0, 0.5]")

    row = manager.wait(manager.submit("test", "d", {}, fn), timeout=20)
    assert row["status"] == "failed" and row["error"] == "poison_ratio must be in (0, 0.5]"


def test_job_that_finishes_its_own_run_is_not_overwritten(manager, store):
    def fn(progress, run_id):
        store.finish_run(run_id, {"own": True}, {"seconds": 1.0}, {"clean": {"hr@1": 0.25}})
        return {"ignored": True}

    run_id = manager.submit("test", "d", {}, fn)
    row = manager.wait(run_id, timeout=20)
    assert row["result"] == {"own": True}
    assert store.run_metrics(run_id)["value"].tolist() == [0.25]


def test_new_manager_marks_stale_runs_failed(store):
    store.create_run("old-run", "attack", "d", {}, 0, {}, status="running")
    jm = JobManager(store)
    try:
        assert jm.stale_marked == 1
        row = store.get_run("old-run")
        assert row["status"] == "failed" and "interrupted" in row["error"]
    finally:
        jm.shutdown()


def test_progress_message_has_counts_and_eta(manager, store):
    seen = []

    def fn(progress, run_id):
        progress.update(0, 4, "epoch 1")
        for step in range(1, 4):
            progress.update(step, 4, "epoch 1")
            seen.append(store.get_run(run_id)["message"])
        return None

    manager.wait(manager.submit("test", "d", {}, fn), timeout=20)
    assert seen[-1].startswith("epoch 1 · 3/4 · ETA ")
    assert describe(1, None, "loading", None) == "loading"


def test_two_stores_on_one_file_see_the_same_state(manager, store):
    run_id = manager.submit("test", "d", {}, counting_job(1))
    manager.wait(run_id, timeout=20)
    other = Store(store.path)
    assert other.get_run(run_id)["status"] == "done"
