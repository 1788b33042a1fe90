"""Background jobs (DESIGN.md §6): one worker thread, a queue, progress and status in the store.

Training and scanning take minutes on a small CPU, so the dashboard hands them
to a `JobManager`: one worker thread runs one job at a time (two trainings at
once would only fight for the cores), the rest wait in a queue. All state a
page needs lives in the store's `runs` row (status, progress, message with
counts and ETA, error), so a reloaded page or a second browser session sees
the same thing. The manager itself only holds the queue and the cancel events;
the page layer keeps one per process (Streamlit's `cache_resource`).

A job is a function `fn(progress, run_id) -> dict | None`. It reports through
`progress.update(done, total, message)`, which also raises `Cancelled` once the
user pressed cancel. When it returns, the run is finished with its result
(unless the function already finished the run itself); when it raises, the run
is marked failed (or cancelled) through `Store.fail_run`, which removes any rows
it wrote.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from core.errors import BadRecError, InputError
from core.progress import Cancelled, Progress, describe  # noqa: F401 (describe: re-exported)
from core.versions import versions

from .store import Store, now, process_owner

log = logging.getLogger(__name__)

JobFn = Callable[[Progress, str], "dict | None"]
ACTIVE = ("queued", "running")


class StoreProgress(Progress):
    """Writes progress to the run's row, at most every `min_interval_s` (the UI polls it)."""

    def __init__(self, store: Store, run_id: str, cancel: threading.Event, min_interval_s: float = 0.5):
        super().__init__(cancel)
        self.store = store
        self.run_id = run_id
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self._last_text = ""

    def emit(self, done, total, message, eta):
        """Write progress to the run's row: at most every `min_interval_s` unless the text changed or it ended."""
        finished = total is not None and done >= total
        moment = time.monotonic()
        if moment - self._last_write < self.min_interval_s and not finished and message == self._last_text:
            return
        self._last_write, self._last_text = moment, message
        # label and fraction cover the whole job when it declared its stages (core.progress)
        fields = {"message": self.label} if self.fraction is None else {"message": self.label,
                                                                         "progress": self.fraction}
        self.store.update_run(self.run_id, **fields)


@dataclass
class Job:
    """A queued or running job as the manager sees it."""

    run_id: str
    kind: str
    fn: JobFn
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class JobManager:
    """Runs jobs one at a time in a background thread; status goes to the store.

    Creating a manager marks runs that an earlier, dead process left 'queued'
    or 'running' as failed: no thread of this process can be running them.

    Args:
        store (`Store`): where runs are recorded.
        min_interval_s (`float`): the shortest gap between two progress writes of a job.
    """

    def __init__(self, store: Store, min_interval_s: float = 0.5):
        self.store = store
        self.min_interval_s = min_interval_s
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.stale_marked = store.mark_stale_runs()
        self._thread = threading.Thread(target=self._work, name="badrec-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, dataset: str, config: dict, fn: JobFn, seed: int = 0,
               run_id: str | None = None) -> str:
        """Queue a job; its run row exists (status 'queued') when this returns.

        Returns:
            `str`: the run id.
        """
        run_id = run_id or new_run_id(kind)
        self.store.create_run(run_id, kind, dataset, config, seed, versions(), status="queued")
        self.store.update_run(run_id, message="waiting in the queue")
        job = Job(run_id, kind, fn)
        with self._lock:
            self._jobs[run_id] = job
        self._queue.put(job)
        return run_id

    def resubmit(self, run_id: str, fn: JobFn) -> str:
        """Queue an existing, stopped run again under its own id (resuming an interrupted attack).

        Raises:
            InputError: no such run, or it is queued or running in this process already.
        """
        row = self.store.get_run(run_id)
        if row is None:
            raise InputError(f"no run {run_id}")
        with self._lock:
            if run_id in self._jobs:
                raise InputError(f"run {run_id} is already queued or running")
            job = Job(run_id, row["kind"], fn)
            self._jobs[run_id] = job
        self.store.update_run(run_id, status="queued", message="waiting in the queue (resuming)", error=None,
                              finished_at=None, owner=process_owner())
        self._queue.put(job)
        return run_id

    def cancel(self, run_id: str) -> bool:
        """Ask a queued or running job to stop; False when this process does not run it."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is None:
            return False
        job.cancel.set()
        return True

    def is_active(self, run_id: str) -> bool:
        """Whether this process still runs or queues the job: a page tells a live job from a dead row by it."""
        with self._lock:
            return run_id in self._jobs

    def active_ids(self) -> list[str]:
        """The ids of jobs queued or running in this process, for the job panels."""
        with self._lock:
            return list(self._jobs)

    def wait(self, run_id: str, timeout: float | None = None) -> dict | None:
        """Block until a job ends (for tests and scripts); returns the run row."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None and not job.done.wait(timeout):
            raise TimeoutError(f"job {run_id} still running after {timeout} s")
        return self.store.get_run(run_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the worker thread."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel.set()
        self._queue.put(None)
        self._thread.join(timeout)

    # -- worker ---------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception:  # the store itself failed; keep the worker alive for the next job
                log.exception("job %s could not be recorded", job.run_id)
            finally:
                with self._lock:
                    self._jobs.pop(job.run_id, None)
                job.done.set()

    def _run(self, job: Job) -> None:
        if job.cancel.is_set():
            self.store.fail_run(job.run_id, "cancelled before it started", status="cancelled")
            return
        progress = StoreProgress(self.store, job.run_id, job.cancel, self.min_interval_s)
        try:
            run_and_record(self.store, job.run_id, job.fn, progress)
        except (Cancelled, BadRecError):  # recorded on the run's row; the page shows it
            pass
        except Exception:  # a crash in any job must end as a failed run (it is), never a dead worker
            log.exception("job %s crashed", job.run_id)


def run_and_record(store: Store, run_id: str, fn: JobFn, progress: Progress | None) -> dict:
    """Run `fn(progress, run_id)` in this thread and record its end on the run's existing row: done with its
    result and seconds, cancelled, or failed with a one-line error. The exception, if any, propagates."""
    started = time.monotonic()
    store.update_run(run_id, status="running", started_at=now(), message="starting")
    try:
        result = fn(progress, run_id)
    except Cancelled:
        store.fail_run(run_id, "cancelled by the user", status="cancelled")
        raise
    except BadRecError as exc:
        store.fail_run(run_id, str(exc))
        raise
    except Exception as exc:
        store.fail_run(run_id, f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise
    row = store.get_run(run_id)
    if row is not None and row["status"] != "done":  # an attack finishes its own row, with its tables
        store.finish_run(run_id, result or {}, {"seconds": round(time.monotonic() - started, 3)}, {})
    return result


def run_command(store: Store, kind: str, dataset: str, config: dict, seed: int, fn: JobFn,
                progress: Progress | None) -> dict:
    """A CLI command's work recorded as the dashboard records a job (config, seed, versions, result, timings,
    or its error) under a new run id, which `fn` receives as its own id (a scan's id is its run's). Input the
    command cannot use leaves no run behind, as the dashboard queues nothing for it."""
    run_id = new_run_id(kind)
    store.create_run(run_id, kind, dataset, config, seed, versions(), status="queued")
    try:
        return run_and_record(store, run_id, fn, progress)
    except InputError:
        store.delete_run(run_id)
        raise


def new_run_id(kind: str) -> str:
    """Sortable, unique and readable: kind-YYYYmmdd-HHMMSS-xxxx."""
    return f"{kind}-{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"


def scan_job(run_scan: Callable, store: Store, cfg, out_csv: str | None = None) -> JobFn:
    """A scan as a job whose run id is the scan id.

    Args:
        run_scan (`Callable`): `core.pscanner.scan.run_scan` (passed in: the scan imports the experiment, which
            imports this module).
        store (`Store`): where the scan is written.
        cfg (`ScanConfig`): the scan.
        out_csv (`str`, optional): also write the scan's CSV here (the CLI's `--out`).
    """
    def fn(progress: Progress, run_id: str) -> dict:
        return run_scan(store, cfg, progress, out_csv=out_csv, scan_id=run_id).to_dict()
    return fn
