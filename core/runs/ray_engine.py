"""Ray as an engine for work that outgrows one process: bulk scans (an actor pool) and attack sweeps (Ray tasks).

The single-process path stays the default. Nothing here imports ray until a Ray job starts, so the
local CLI and the dashboard run without the package. What runs where:

- the driver (the process that calls `run_scan` or `run_sweep`) trains or loads the scanner, reads the
  rows Ray Data parsed from a folder of shards (one file it parses itself), validates them with the local
  path's own code, finds recurring triggers and
  writes DuckDB in one transaction; it is the one DuckDB writer;
- a scan's actor pool, started once the catalog is read so its actors import torch while the driver gets
  its scanner: each actor loads the scanner once, from its files shipped as bytes (safetensors
  weights, tokenizer and meta JSON: never a pickled model), scores whole chunks of the catalog (the
  local scan's chunks, so the numbers match), finds the spans of the chunk's titles at or above the
  threshold and writes one Parquet shard per chunk; the driver reads only shards of finished chunks;
- a sweep's tasks: each attack runs against a scratch DuckDB file of its own (`core.attack.sweep.attack_rows`)
  and returns its rows; the model cache under `BADREC_HOME` is shared when the workers see that folder.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import os
import re
import socket
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.config import ConfigMixin
from core.errors import InputError
from core.progress import Progress

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"^(ray://)?(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
# Ray binds every port to the node's IP; with this switch off (its single-machine mode) the node IP is
# 127.0.0.1 and nothing listens beyond the loopback. Read when ray is first imported.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class RayConfig(ConfigMixin):
    """Where a Ray job runs.

    Args:
        address (`str`, optional): None = a cluster started here for the job, bound to 127.0.0.1 only and
            stopped after it; `"auto"` = the cluster this machine joined with `ray start`; `"ray://HOST:PORT"` =
            a remote cluster through Ray Client; `"HOST:PORT"` = a cluster's head (GCS) address.
        workers (`int`, optional): scan actors, or sweep runs at a time; default: one per CPU of the cluster
            (for a scan, one per GPU when the cluster has GPUs).
        shard_dir (`str`, optional): where scan actors write their Parquet shards: a folder or a URI
            (`s3://bucket/prefix`) that the workers and this process both reach; default: a fresh folder
            under `BADREC_HOME`, right when every worker runs on this machine.
    """

    address: str | None = None
    workers: int | None = None
    shard_dir: str | None = None

    def __post_init__(self):
        if self.address is not None and self.address != "auto" and not _ADDRESS.match(self.address):
            raise InputError(f"Ray address {self.address!r} must be auto, ray://HOST:PORT or HOST:PORT")
        if self.workers is not None and not 1 <= self.workers <= 4096:
            raise InputError(f"workers={self.workers} must be between 1 and 4096")



def ray_available() -> bool:
    """Whether ray is installed: the engine is optional, so the CLI and page check before offering it."""
    return importlib.util.find_spec("ray") is not None


def _this_machines_cluster() -> str:
    """What `auto` names: RAY_ADDRESS, else the head address `ray start` wrote into Ray's temp folder."""
    bootstrap = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    address = os.environ.get("RAY_ADDRESS") or (bootstrap.read_text().strip() if bootstrap.is_file() else "")
    if not _ADDRESS.match(address):
        raise InputError("no Ray cluster was started on this machine: run `ray start --head` first, or give "
                         "--address HOST:PORT")
    return address


def _check_reachable(address: str) -> bool:
    """A TCP connect to HOST:PORT first, so an unreachable cluster is one line in seconds (ray.init retries
    for minutes); returns whether HOST is this machine's loopback."""
    m = _ADDRESS.match(address)
    host, port = m.group(2).strip("[]"), int(m.group(3))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from exc
    return host in ("127.0.0.1", "::1", "localhost")


def _quiet_data() -> None:
    """Ray Data as the scan needs it: rows in input order (duplicates keep their first occurrence, as the
    local reader does), no progress bars of its own (the scan reports through `Progress`)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def worker_env() -> dict[str, str]:
    """The app's settings (`BADREC_*`: home with its model cache, data folders, dtype) for Ray workers."""
    return {k: v for k, v in os.environ.items() if k.startswith("BADREC_")}


@contextmanager
def cluster(cfg: RayConfig) -> Iterator[Any]:
    """Ray, connected for one job: reuses a connection this process already has, else starts a local
    cluster (loopback only) or joins `cfg.address`, and lets go of what it started at the end.

    Raises:
        InputError: ray is not installed, or the cluster cannot be reached (nothing is written then).
    """
    if not ray_available():
        raise InputError("the ray engine needs the ray package: pip install -r requirements.txt")
    address = _this_machines_cluster() if cfg.address == "auto" else cfg.address
    # a cluster started here, and one whose head listens on the loopback only, need this process in
    # Ray's single-machine mode too (else it looks for the head at the machine's network address)
    loopback = address is None or _check_reachable(address)
    if loopback and not (address or "").startswith("ray://") and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_ONLY, "0")
    import ray

    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                               "logging_level": logging.ERROR, "configure_logging": True}
    if address is not None:
        # a cluster started elsewhere has no copy of this code: ship the `core` package (not the venv;
        # the cluster's image needs requirements.txt installed)
        options["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])]}  # the core package
    try:
        if address is None:  # "local": a new cluster even when `ray start` left one running here
            ray.init(address="local", num_cpus=cfg.workers or os.cpu_count(), **options)
        else:  # `auto` as such: only then does Ray pick up this machine's token (~/.ray/auth_token) by itself
            ray.init(address=cfg.address, **options)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = cfg.address or "a local cluster"
        raise InputError(f"cannot reach the Ray cluster at {where}: {str(exc).strip().splitlines()[0]}") from exc
    try:
        if cfg.address is None and ray.util.get_node_ip_address() not in ("127.0.0.1", "::1"):
            # ray was imported before the switch above could act: refuse rather than listen on the network
            raise InputError("this process cannot start a loopback-only Ray cluster; start one with "
                             f"`{_LOOPBACK_ONLY}=0 ray start --head` and pass --address auto")
        yield ray
    finally:
        ray.shutdown()


# -- reading a catalog -------------------------------------------------------------------------
def catalog_files(path: str) -> tuple[list[Path], str]:
    """The files of a catalog (one file, or a folder of shards of one format) and that format."""
    from core.data.uploads import EXTENSIONS

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in EXTENSIONS)
        if not files:
            raise InputError(f"folder {path} holds no .csv, .tsv, .parquet or .jsonl files")
    elif p.is_file():
        files = [p]
    else:
        raise InputError(f"file not found: {path}")
    formats = {EXTENSIONS.get(f.suffix.lower()) for f in files}
    if None in formats:
        raise InputError(f"unsupported file type {p.suffix or '(none)'!r}; use .csv, .tsv, .parquet or .jsonl")
    if len(formats) > 1:
        raise InputError(f"folder {path} mixes {', '.join(sorted(formats))} files; keep one format per catalog")
    return files, formats.pop()


def read_catalog(path: str) -> pd.DataFrame:
    """A catalog's rows as strings, parsed by Ray Data (a folder of shards or a file), in file order;
    `core.data.uploads.normalise` then validates them as for a local file.

    CSV/TSV columns are read as text (ids such as `007` stay as written) with the extension's delimiter;
    Parquet and JSON Lines values become text as the local reader makes them.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray.data

    _quiet_data()
    files, fmt = catalog_files(path)
    names = [str(f) for f in files]
    try:
        if fmt in ("csv", "tsv"):
            sep = "\t" if fmt == "tsv" else ","
            with open(files[0], encoding="utf-8-sig", newline="") as fh:
                header = next(csv.reader(fh, delimiter=sep), [])
            if not header:
                raise InputError(f"file {files[0].name} is empty")
            ds = ray.data.read_csv(names, file_extensions=None, parse_options=pacsv.ParseOptions(delimiter=sep),
                                   convert_options=pacsv.ConvertOptions(
                                       column_types={c: pa.string() for c in header}, strings_can_be_null=False,
                                       quoted_strings_can_be_null=False))
            df = ds.to_pandas()
        elif fmt == "parquet":
            df = ray.data.read_parquet(names, file_extensions=None).to_pandas().astype(str)
        else:
            df = ray.data.read_json(names, lines=True, file_extensions=None).to_pandas().astype(str)
    except InputError:
        raise
    except Exception as exc:  # Ray wraps pyarrow's parse errors in its own types
        raise InputError(f"cannot read catalog {path}: {str(exc).strip().splitlines()[-1][:300]}") from exc
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    return df.reset_index(drop=True)


# -- scoring on an actor pool ------------------------------------------------------------------
def scanner_files(scanner) -> dict[str, bytes]:
    """A trained scanner as the bytes of its saved files (safetensors, tokenizer, meta), for the actors."""
    from core.pscanner.scanner import save_scanner

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scanner"
        save_scanner(scanner, folder)
        return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def _filesystem(root: str):
    """(pyarrow filesystem, path) of a local folder or a URI such as s3://bucket/prefix."""
    from pyarrow import fs

    if "://" in root:
        return fs.FileSystem.from_uri(root)
    return fs.LocalFileSystem(), str(Path(root).resolve())


class TitleScorer:
    """One actor of a scan's pool. It imports torch and transformers as it starts (most of an actor's start),
    so a pool started before the driver has a scanner is ready when it has one; it keeps the scanner it
    loaded last: one load per actor and scanner (the K folds of a cross-fitted scan reuse the same actors)."""

    def __init__(self):
        import torch  # noqa: F401 -- imported now, not when the first chunk waits for it
        import transformers  # noqa: F401

        self.key: str | None = None
        self.scanner = None

    def _load(self, key: str, files: list) -> None:
        """The scanner shipped as `scanner_files` bytes (a list holding their reference, so an actor Ray
        restarts fetches them again itself)."""
        import ray
        import torch

        from core.pscanner.scanner import load_scanner

        with tempfile.TemporaryDirectory() as tmp:
            for name, data in ray.get(files[0]).items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_bytes(data)
            self.scanner = load_scanner(Path(tmp))
        if torch.cuda.is_available():
            self.scanner.model.to("cuda")
        self.key = key

    def score(self, key: str, files: list, start: int, titles: list[str], threshold: float, spans: bool,
              root: str) -> int:
        """Score one chunk (rows `start`...), find the spans of its titles at or above `threshold`, write its
        shard; returns the number of titles. Named by its first row: a retried chunk overwrites its own
        shard, written aside and then renamed."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if key != self.key:
            self._load(key, files)
        scores = self.scanner.score(titles)
        found: list[str | None] = [None] * len(titles)
        if spans:
            idx = [i for i in range(len(titles)) if scores[i] >= threshold]
            for i, sp in zip(idx, self.scanner.spans([titles[i] for i in idx])):
                found[i] = sp
        fs, folder = _filesystem(root)
        path = f"{folder}/rows-{start:012d}.parquet"  # the name `score_titles` reads back
        pq.write_table(pa.table({"row": np.arange(start, start + len(titles)), "score": scores,
                                 "span": pa.array(found, pa.string())}), path + ".part", filesystem=fs)
        fs.move(path + ".part", path)
        return len(titles)


# the actors of the scan running in this thread (a dashboard runs each job in a thread of its own)
_pool: ContextVar[list | None] = ContextVar("scorers", default=None)


@contextmanager
def scorer_pool(cfg: RayConfig) -> Iterator[list]:
    """A scan's actors (`cfg.workers`; default one per CPU, or per GPU when the cluster has them), started now
    and killed at the end; `score_titles` in this thread uses them. Started before the driver has its scanner
    (loaded from the cache or trained), they import torch meanwhile instead of after. They hold the cluster's
    CPUs, so anything that needs Ray tasks (Ray Data reading a folder) runs before. A dead actor is restarted
    and its chunk retried (twice)."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    n = cfg.workers or max(1, gpus or int(resources.get("CPU", 1)))
    actor = ray.remote(TitleScorer).options(num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=2,
                                            max_task_retries=2)
    actors = [actor.remote() for _ in range(n)]
    token = _pool.set(actors)
    try:
        yield actors
    finally:
        _pool.reset(token)
        for a in actors:
            ray.kill(a)


def score_titles(scanner, titles: Sequence[str], threshold: float, spans: bool, cfg: RayConfig,
                 chunk_size: int, progress: Progress | None = None) -> tuple[np.ndarray, list[str | None]]:
    """Score every title on the scan's actor pool (`scorer_pool`; one for this call if none runs), chunk by
    chunk as the local scan does, two chunks queued per actor so none waits between chunks.

    Args:
        scanner (`Scanner`): the trained scanner (shipped as its saved files).
        titles (`Sequence[str]`): the catalog's titles, in order.
        threshold (`float`): spans are found for titles at or above it.
        spans (`bool`): find spans.
        cfg (`RayConfig`): workers and shard folder.
        chunk_size (`int`): titles per chunk: one actor call and one shard each (the local scan's chunks, so
            the same batches and the same scores).
        progress (`Progress`, optional): titles scored so far; cancelling stops the job.

    Returns:
        `(scores, spans)` in title order; a span is None where none was looked for or found.

    Raises:
        RayError: a chunk never finished (its actor died past the retries). When the call fails or is
        cancelled the pool's actors are killed before the shard folder is removed, so no shard outlives it.
    """
    import pyarrow.parquet as pq
    import ray

    n = len(titles)
    if not n:
        return np.zeros(0), []
    actors = _pool.get()
    if actors is None:
        with scorer_pool(cfg):
            return score_titles(scanner, titles, threshold, spans, cfg, chunk_size, progress)
    root_uri = f"{(cfg.shard_dir or str(_default_shards())).rstrip('/')}/scan-{uuid.uuid4().hex[:12]}"
    fs, root = _filesystem(root_uri)
    fs.create_dir(root)
    key, files = uuid.uuid4().hex, [ray.put(scanner_files(scanner))]
    pending = list(range(0, n, chunk_size))[::-1]
    running: dict[Any, Any] = {}  # a call in flight -> its actor
    done = 0
    try:
        while pending or running:
            for a in actors * 2:  # each actor's second place in the queue is filled after every first one
                if pending and sum(1 for x in running.values() if x is a) < 2:
                    s = pending.pop()
                    running[a.score.remote(key, files, s, list(titles[s:s + chunk_size]), float(threshold),
                                           spans, root_uri)] = a
            ready, _ = ray.wait(list(running), num_returns=1)
            running.pop(ready[0])
            done += ray.get(ready[0])
            if progress:
                progress.update(done, n, f"scoring titles on Ray ({len(actors)} workers)")
        scores, found = np.full(n, np.nan), [None] * n
        for start in range(0, n, chunk_size):
            table = pq.read_table(f"{root}/rows-{start:012d}.parquet", filesystem=fs)
            rows = table.column("row").to_numpy()
            scores[rows] = table.column("score").to_numpy()
            for r, sp in zip(rows, table.column("span").to_pylist()):
                found[r] = sp
        if np.isnan(scores).any():
            raise RuntimeError(f"{int(np.isnan(scores).sum())} titles came back without a score")
        return scores, found
    finally:
        if running:  # failed or cancelled: stop the chunks still in flight before their folder goes
            for a in set(running.values()):
                ray.kill(a)
            ray.wait(list(running), num_returns=len(running), timeout=30)
        fs.delete_dir(root)


def _default_shards() -> Path:
    from core import settings

    return settings.cache_dir("ray-shards")


# -- tasks ---------------------------------------------------------------------------------------
def map_unordered(fn: Callable, calls: Sequence[tuple], cfg: RayConfig,
                  env: dict[str, str] | None = None) -> Iterator[tuple[int, Any]]:
    """Run `fn(*call)` for every call as a Ray task (one CPU each; a GPU each where the cluster has them),
    at most `cfg.workers` at a time, and yield `(index, result)` as each finishes; a failed call yields its
    exception instead of a result.

    Args:
        fn (`Callable`): a module-level function (workers import it by name).
        calls (`Sequence[tuple]`): the arguments of each call.
        cfg (`RayConfig`): `workers` caps the calls in flight (default: the cluster's CPUs).
        env (`dict[str, str]`, optional): environment variables of the tasks' workers.
    """
    import ray

    resources = ray.cluster_resources()
    options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1 if resources.get("GPU", 0) >= 1 else 0}
    if env:
        options["runtime_env"] = {"env_vars": dict(env)}
    remote = ray.remote(fn).options(**options)
    limit = cfg.workers or max(1, int(resources.get("CPU", 1)))
    pending = list(enumerate(calls))[::-1]
    running: dict[Any, int] = {}
    try:
        while pending or running:
            while pending and len(running) < limit:
                i, call = pending.pop()
                running[remote.remote(*call)] = i
            ready, _ = ray.wait(list(running), num_returns=1)
            i = running.pop(ready[0])
            try:
                out = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the call raised: its own exception
                out = exc.cause if isinstance(exc.cause, BaseException) else exc
            except ray.exceptions.RayError as exc:  # its worker died past Ray's retries, or it was cancelled
                out = exc
            yield i, out
    finally:  # the caller stopped early (cancelled, failed): stop what still runs
        for ref in running:
            ray.cancel(ref)
