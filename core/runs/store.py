"""The one DuckDB database: schema, reads and writes. All SQL of the project lives here.

Connections are short-lived: each operation opens the file, runs in a
transaction and closes it, so the dashboard and the CLI can take turns on the
same file. When another process holds it for longer than `lock_timeout_s`, a
`StoreError` says so in one line.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name VARCHAR PRIMARY KEY, source VARCHAR, kind VARCHAR,
    n_users BIGINT, n_items BIGINT, n_interactions BIGINT,
    notes VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS items (
    dataset VARCHAR, item_id VARCHAR, title VARCHAR, extra VARCHAR);
CREATE TABLE IF NOT EXISTS interactions (
    dataset VARCHAR, user_id VARCHAR, item_id VARCHAR, ts BIGINT, rating DOUBLE);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, kind VARCHAR, dataset VARCHAR, status VARCHAR,
    config VARCHAR, seed BIGINT, versions VARCHAR, progress DOUBLE, message VARCHAR,
    error VARCHAR, result VARCHAR, timings VARCHAR,
    created_at TIMESTAMP, started_at TIMESTAMP, finished_at TIMESTAMP, owner VARCHAR);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR;
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR, model VARCHAR, name VARCHAR, value DOUBLE);
CREATE TABLE IF NOT EXISTS train_log (
    run_id VARCHAR, phase VARCHAR, step BIGINT, total BIGINT, loss DOUBLE,
    tokens_per_s DOUBLE, logged_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS recommendations (
    run_id VARCHAR, model VARCHAR, variant VARCHAR, user_id VARCHAR, rank INTEGER,
    item_id VARCHAR, title VARCHAR, score DOUBLE, is_attack_item BOOLEAN, is_target BOOLEAN);
CREATE TABLE IF NOT EXISTS poison_records (
    run_id VARCHAR, kind VARCHAR, item_id VARCHAR, title VARCHAR, user_id VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS scans (
    scan_id VARCHAR PRIMARY KEY, run_id VARCHAR, source VARCHAR, method VARCHAR,
    threshold DOUBLE, n_items BIGINT, n_flagged BIGINT, metrics VARCHAR, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS scan_results (
    scan_id VARCHAR, item_id VARCHAR, title VARCHAR, score DOUBLE, flagged BOOLEAN,
    method VARCHAR, span VARCHAR, label BOOLEAN, campaign VARCHAR, reason VARCHAR);
ALTER TABLE scan_results ADD COLUMN IF NOT EXISTS campaign VARCHAR;
ALTER TABLE scan_results ADD COLUMN IF NOT EXISTS reason VARCHAR;
CREATE TABLE IF NOT EXISTS trigger_sets (
    name VARCHAR PRIMARY KEY, triggers VARCHAR, created_at TIMESTAMP);
CREATE INDEX IF NOT EXISTS items_ds ON items(dataset);
CREATE INDEX IF NOT EXISTS inter_ds ON interactions(dataset);
CREATE INDEX IF NOT EXISTS recs_run ON recommendations(run_id);
CREATE INDEX IF NOT EXISTS scanres_scan ON scan_results(scan_id);
"""

# Tables whose rows belong to one run; removed together when a run is deleted or fails.
RUN_TABLES = ("metrics", "train_log", "recommendations", "poison_records")


def process_owner() -> str:
    """host:pid of this process, recorded on each run so a restart can tell dead runs from live ones."""
    return f"{socket.gethostname()}:{os.getpid()}"


def alive_elsewhere(owner: str | None) -> bool:
    """True when `owner` is another live process on this host (or a host we cannot check)."""
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def now() -> datetime:
    """UTC now without a timezone, as DuckDB's TIMESTAMP columns store it."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


class Store:
    """Access to the BadRec DuckDB file.

    Args:
        path (`Path`): the database file; created with its schema on first use.
        lock_timeout_s (`float`): how long to wait for another process's lock.
    """

    def __init__(self, path: Path | str, lock_timeout_s: float = 10.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._lock = threading.RLock()
        self._schema_ready = False
        self._commits = 0  # this process's commits, beside the file's own marks in `write_version`

    # -- connection ---------------------------------------------------------
    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StoreError(f"cannot open database {self.path}: {exc}".splitlines()[0]) from exc
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"database {self.path} is locked by another process (is the dashboard or another "
                        "command writing to it?); wait for it or set BADREC_HOME to another folder"
                    ) from exc
                time.sleep(0.1)
            except duckdb.Error as exc:
                raise StoreError(f"cannot open database {self.path}: {exc}".splitlines()[0]) from exc

    @contextmanager
    def connect(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one operation; with `write`, one transaction that rolls back on error."""
        with self._lock:
            con = self._open(read_only=False)
            try:
                if not self._schema_ready:
                    con.execute(SCHEMA)
                    self._schema_ready = True
                if not write:
                    yield con
                    return
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                self._commits += 1
            except duckdb.Error as exc:
                raise StoreError(f"database error: {exc}".splitlines()[0]) from exc
            finally:
                con.close()

    def write_version(self) -> tuple[int, ...]:
        """A value that changes whenever any process commits to this database and not on reads (DuckDB
        appends a commit to the `.wal` file beside the database and checkpoints it into the file): the key
        under which the dashboard keeps query results."""
        marks = [self._commits]
        for f in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = f.stat()
                marks += [st.st_mtime_ns, st.st_size]
            except FileNotFoundError:
                marks += [0, 0]
        return tuple(marks)

    def query(self, sql: str, params: list | tuple | None = None) -> pd.DataFrame:
        """A read as a DataFrame, with values passed as parameters (never formatted into the SQL)."""
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def scalar(self, sql: str, params: list | tuple | None = None) -> Any:
        """The first column of the first row of a read (None when there is none)."""
        with self.connect() as con:
            row = con.execute(sql, params or []).fetchone()
            return None if row is None else row[0]

    # -- datasets -----------------------------------------------------------
    def save_dataset(self, name: str, source: str, kind: str, items: pd.DataFrame,
                     interactions: pd.DataFrame, notes: list[str]) -> None:
        """Replace a dataset with these rows in one transaction (nothing half-written)."""
        items_df = items.assign(dataset=name)
        if "extra" not in items_df:
            items_df["extra"] = None
        items_df = items_df[["dataset", "item_id", "title", "extra"]]
        inter_df = interactions.assign(dataset=name)[["dataset", "user_id", "item_id", "ts", "rating"]]
        n_users = int(inter_df["user_id"].nunique()) if len(inter_df) else 0
        with self.connect(write=True) as con:
            for table in ("items", "interactions", "datasets"):
                key = "name" if table == "datasets" else "dataset"
                con.execute(f"DELETE FROM {table} WHERE {key} = ?", [name])
            con.register("items_df", items_df)
            con.execute("INSERT INTO items SELECT * FROM items_df")
            con.register("inter_df", inter_df)
            con.execute("INSERT INTO interactions SELECT * FROM inter_df")
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [name, source, kind, n_users, len(items_df), len(inter_df), _json(notes), now()],
            )

    def list_datasets(self) -> pd.DataFrame:
        """Every imported dataset's row, by name."""
        return self.query("SELECT * FROM datasets ORDER BY name")

    def dataset_row(self, name: str) -> dict | None:
        """A dataset's row (source, kind, counts, notes), or None when it is not imported."""
        df = self.query("SELECT * FROM datasets WHERE name = ?", [name])
        return None if df.empty else df.iloc[0].to_dict()

    def load_items(self, name: str) -> pd.DataFrame:
        """A dataset's items in file order (the protocol's item order depends on it)."""
        return self.query("SELECT item_id, title, extra FROM items WHERE dataset = ? ORDER BY rowid", [name])

    def load_interactions(self, name: str) -> pd.DataFrame:
        """A dataset's interactions in file order (ties in time keep it, as the protocol needs)."""
        return self.query(
            "SELECT user_id, item_id, ts, rating FROM interactions WHERE dataset = ? ORDER BY rowid", [name]
        )

    def user_length_stats(self, name: str) -> dict:
        """Users and their mean and median number of interactions (the sequence lengths `datasets info` shows)."""
        df = self.query(
            "SELECT count(*) AS n, avg(c) AS mean_len, median(c) AS median_len FROM "
            "(SELECT user_id, count(*) AS c FROM interactions WHERE dataset = ? GROUP BY user_id)", [name])
        return df.iloc[0].to_dict()

    def delete_dataset(self, name: str) -> None:
        """Remove a dataset and its rows in one transaction."""
        with self.connect(write=True) as con:
            for table in ("items", "interactions"):
                con.execute(f"DELETE FROM {table} WHERE dataset = ?", [name])
            con.execute("DELETE FROM datasets WHERE name = ?", [name])

    # -- runs ---------------------------------------------------------------
    def create_run(self, run_id: str, kind: str, dataset: str, config: dict, seed: int,
                   versions: dict, status: str = "queued", owner: str | None = None) -> None:
        """A new run row, owned by this process unless `owner` (host:pid) says otherwise."""
        with self.connect(write=True) as con:
            con.execute(
                "INSERT INTO runs (run_id, kind, dataset, status, config, seed, versions, progress, created_at,"
                " owner) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                [run_id, kind, dataset, status, _json(config), seed, _json(versions), now(),
                 owner or process_owner()],
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; dicts and lists are stored as JSON."""
        allowed = {"status", "progress", "message", "error", "result", "timings", "started_at", "finished_at",
                   "owner"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        values = [_json(v) if isinstance(v, (dict, list)) else v for v in fields.values()]
        with self.connect(write=True) as con:
            con.execute(f"UPDATE runs SET {cols} WHERE run_id = ?", [*values, run_id])

    def finish_run(self, run_id: str, result: dict, timings: dict, metrics: dict[str, dict[str, float]],
                   tables: dict[str, pd.DataFrame] | None = None) -> None:
        """Write a run's metrics, per-row tables and final status in one transaction."""
        rows = [(run_id, model, name, float(v)) for model, vals in metrics.items()
                for name, v in vals.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        with self.connect(write=True) as con:
            if rows:
                con.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", rows)
            for table, df in (tables or {}).items():
                if table not in RUN_TABLES and table not in ("scan_results",):
                    raise ValueError(f"not a run table: {table}")
                if len(df):
                    con.register("_rows", df)
                    cols = ", ".join(df.columns)
                    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _rows")
                    con.unregister("_rows")
            con.execute(
                "UPDATE runs SET status = 'done', progress = 1, result = ?, timings = ?, finished_at = ?,"
                " message = 'done' WHERE run_id = ?",
                [_json(result), _json(timings), now(), run_id],
            )

    def fail_run(self, run_id: str, error: str, status: str = "failed") -> None:
        """Mark a run failed or cancelled and remove any rows it wrote."""
        with self.connect(write=True) as con:
            for table in RUN_TABLES:
                if table != "train_log":
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute(
                "UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE run_id = ?",
                [status, error, now(), run_id],
            )

    def delete_run(self, run_id: str) -> None:
        """Remove a run and every row it wrote in one transaction."""
        with self.connect(write=True) as con:
            for table in RUN_TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])

    def get_run(self, run_id: str) -> dict | None:
        """A run's row with its JSON columns parsed, or None for an unknown id."""
        df = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if df.empty:
            return None
        row = df.iloc[0].to_dict()
        for key in ("config", "versions", "result", "timings"):
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        return row

    def list_runs(self, kind: str | None = None) -> pd.DataFrame:
        """Runs (of one kind, if given), newest first."""
        if kind:
            return self.query("SELECT * FROM runs WHERE kind = ? ORDER BY created_at DESC", [kind])
        return self.query("SELECT * FROM runs ORDER BY created_at DESC")

    def n_finished_runs(self) -> int:
        """How many runs ever finished: a cheap key that changes when a job may have filled a cache."""
        return int(self.scalar("SELECT count(*) FROM runs WHERE status = 'done'"))

    def runs_overview(self) -> pd.DataFrame:
        """One row per run with where it ran: machine kind, compute dtype and 4-bit kernel (numbers differ by them)."""
        return self.query("""
            SELECT run_id, kind, dataset, status, progress, error,
                   json_extract_string(versions, '$.machine.kind') AS machine,
                   coalesce(json_extract_string(result, '$.machine.compute_dtype'),
                            json_extract_string(versions, '$.machine.compute_dtype')) AS dtype,
                   json_extract_string(result, '$.machine.bnb_kernel') AS bnb_kernel,
                   created_at, finished_at
            FROM runs ORDER BY created_at DESC""")

    def mark_stale_runs(self) -> int:
        """Runs left 'running' or 'queued' by a process that died are marked failed.

        A run owned by another live process (a CLI attack beside the dashboard) is left alone.
        """
        with self.connect(write=True) as con:
            active = con.execute(
                "SELECT run_id, owner FROM runs WHERE status IN ('running', 'queued')").fetchall()
            stale = [run_id for run_id, owner in active if not alive_elsewhere(owner)]
            for run_id in stale:
                con.execute(
                    "UPDATE runs SET status = 'failed', error = 'interrupted: the process running it stopped',"
                    " finished_at = ? WHERE run_id = ?", [now(), run_id])
        return len(stale)

    def log_train(self, run_id: str, phase: str, step: int, total: int, loss: float,
                  tokens_per_s: float) -> None:
        """Append one training step's loss and throughput: live panels and loss curves read them."""
        with self.connect(write=True) as con:
            con.execute("INSERT INTO train_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [run_id, phase, step, total, loss, tokens_per_s, now()])

    def run_metrics(self, run_id: str) -> pd.DataFrame:
        """A run's metrics as (model, name, value) rows."""
        return self.query("SELECT model, name, value FROM metrics WHERE run_id = ? ORDER BY model, name", [run_id])

    def run_table(self, run_id: str, table: str) -> pd.DataFrame:
        """A run's rows of one of `RUN_TABLES` in the order they were written (to copy the run to another store)."""
        if table not in RUN_TABLES:
            raise ValueError(f"not a run table: {table}")
        return self.query(f"SELECT * FROM {table} WHERE run_id = ? ORDER BY rowid", [run_id])

    def poison_records(self, run_id: str, kind: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """What an attack run poisoned (kind `item`: a triggered title; `fake_user`: a fake user), in write order.

        Returns:
            `pd.DataFrame`: kind, item_id, title, user_id.
        """
        where, params = "run_id = ?", [run_id]
        if kind is not None:
            where, params = where + " AND kind = ?", [*params, kind]
        limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
        return self.query(f"SELECT kind, item_id, title, user_id FROM poison_records WHERE {where} ORDER BY rowid"
                          f"{limit_sql}", params)

    def top_recommendations(self, run_id: str, top: int = 5, limit: int = 60) -> pd.DataFrame:
        """The first `top` ranks of a run's stored lists, per user, model and variant (a report's sample)."""
        return self.query("SELECT user_id, model, variant, rank, title, score, is_attack_item FROM recommendations"
                          " WHERE run_id = ? AND rank <= ? ORDER BY user_id, model, variant, rank LIMIT ?",
                          [run_id, int(top), int(limit)])

    # -- trigger sets --------------------------------------------------------
    def save_trigger_set(self, name: str, triggers: list[dict]) -> None:
        """Save (or replace) a named list of triggers from the Triggers page."""
        with self.connect(write=True) as con:
            con.execute("DELETE FROM trigger_sets WHERE name = ?", [name])
            con.execute("INSERT INTO trigger_sets VALUES (?, ?, ?)", [name, _json(triggers), now()])

    def trigger_sets(self) -> dict[str, list[dict]]:
        """Every saved trigger set by name, so the Attack page can offer them."""
        df = self.query("SELECT name, triggers FROM trigger_sets ORDER BY name")
        return {r.name: json.loads(r.triggers) for r in df.itertuples()}

    # -- dashboard queries ------------------------------------------------------
    # Page queries: filters, sorting and LIMIT run in SQL so a page stays fast with 100k scan rows.
    SCAN_SORTS = {"score": "score", "title": "title", "item_id": "item_id", "flagged": "flagged"}

    def item_popularity(self, dataset: str) -> pd.DataFrame:
        """Interactions per item (items never interacted with count 0), most popular first."""
        return self.query(
            "SELECT i.item_id, i.title, count(x.item_id) AS n FROM items i LEFT JOIN interactions x"
            " ON x.dataset = i.dataset AND x.item_id = i.item_id WHERE i.dataset = ?"
            " GROUP BY i.item_id, i.title ORDER BY n DESC, i.item_id", [dataset])

    def user_lengths(self, dataset: str) -> pd.Series:
        """Interactions per user of a dataset (the Dataset page's histogram)."""
        df = self.query("SELECT count(*) AS n FROM interactions WHERE dataset = ? GROUP BY user_id", [dataset])
        return df["n"]

    def search_items(self, dataset: str, text: str = "", limit: int = 50) -> pd.DataFrame:
        """Items whose title contains `text` (case-insensitive), with their interaction counts."""
        return self.query(
            "SELECT i.item_id, i.title, (SELECT count(*) FROM interactions x WHERE x.dataset = i.dataset"
            " AND x.item_id = i.item_id) AS n FROM items i WHERE i.dataset = ? AND i.title ILIKE ?"
            " ORDER BY i.title LIMIT ?", [dataset, f"%{text}%", int(limit)])

    def sample_titles(self, dataset: str, n: int = 8, seed: int = 0) -> list[str]:
        """`n` titles picked reproducibly (the same seed gives the same titles)."""
        df = self.query("SELECT title FROM items WHERE dataset = ? ORDER BY hash(item_id || ?) LIMIT ?",
                        [dataset, str(seed), int(n)])
        return df["title"].tolist()

    def user_history(self, dataset: str, user_id: str, limit: int = 20) -> pd.DataFrame:
        """A user's latest interactions with titles, newest first.

        Ties in time are broken as the protocol breaks them (`core.data.protocol.user_sequences`: time, then the
        order the file listed them, which is `load_interactions`' rowid order), so the newest row here is
        the protocol's held-out test item.
        """
        return self.query(
            "SELECT x.ts, x.item_id, i.title, x.rating FROM interactions x LEFT JOIN items i"
            " ON i.dataset = x.dataset AND i.item_id = x.item_id WHERE x.dataset = ? AND x.user_id = ?"
            " ORDER BY x.ts DESC, x.rowid DESC LIMIT ?", [dataset, str(user_id), int(limit)])

    def active_runs(self) -> pd.DataFrame:
        """Queued and running runs, oldest first, for the dashboard's job panels."""
        return self.query("SELECT run_id, kind, dataset, status, progress, message, created_at FROM runs"
                          " WHERE status IN ('queued', 'running') ORDER BY created_at")

    def train_log(self, run_id: str) -> pd.DataFrame:
        """A run's logged training steps in order: its loss curves."""
        return self.query("SELECT phase, step, total, loss, tokens_per_s, logged_at FROM train_log"
                          " WHERE run_id = ? ORDER BY logged_at, step", [run_id])

    def rec_users(self, run_id: str, limit: int = 2000, model: str = "poisoned", left: str = "no_trigger",
                  right: str = "trigger") -> pd.DataFrame:
        """Test users with stored recommendations in a run, in numeric order (1, 2, ..., 10, 100; ids that are
        not numbers after them, as text).

        Returns:
            `pd.DataFrame` with columns user_id, hit (the poisoned model's triggered list ranks the attacker's
            item first: the cases that show the backdoor) and changed (`model`'s `left` and `right` lists
            differ in order or items).
        """
        return self.query(
            "SELECT user_id, bool_or(variant = 'trigger' AND model = 'poisoned' AND is_attack_item AND rank = 1)"
            " AS hit, coalesce(string_agg(rank || ':' || item_id, '|' ORDER BY rank) FILTER (model = ? AND"
            " variant = ?), '') <> coalesce(string_agg(rank || ':' || item_id, '|' ORDER BY rank) FILTER"
            " (model = ? AND variant = ?), '')"
            " AS changed FROM recommendations WHERE run_id = ? GROUP BY user_id"
            " ORDER BY try_cast(user_id AS BIGINT) NULLS LAST, user_id LIMIT ?",
            [model, left, model, right, run_id, int(limit)])

    def attack_history(self) -> pd.DataFrame:
        """Attack runs, newest first, with their headline numbers (null until a run finished).

        Returns:
            `pd.DataFrame`: run_id, status, dataset, model, asr, hr1_clean, hr1_poisoned, rho (the dose as
            run: poisoned / all training samples), n_poison_samples, progress, message, error, created_at,
            finished_at.
        """
        return self.query(
            "SELECT r.run_id, r.status, r.dataset, json_extract_string(r.config, '$.model.name') AS model,"
            " max(m.value) FILTER (m.model = 'poisoned' AND m.name = 'asr') AS asr,"
            " max(m.value) FILTER (m.model = 'clean' AND m.name = 'hr@1') AS hr1_clean,"
            " max(m.value) FILTER (m.model = 'poisoned' AND m.name = 'hr@1') AS hr1_poisoned,"
            " coalesce(try_cast(json_extract_string(r.result, '$.poisoning.poison_ratio_actual') AS DOUBLE),"
            " try_cast(json_extract_string(r.config, '$.poison_ratio') AS DOUBLE)) AS rho,"
            " try_cast(json_extract_string(r.result, '$.poisoning.n_poison_samples') AS BIGINT) AS n_poison_samples,"
            " r.progress, r.message, r.error, r.created_at, r.finished_at"
            " FROM runs r LEFT JOIN metrics m ON m.run_id = r.run_id WHERE r.kind = 'attack'"
            " GROUP BY r.run_id, r.status, r.dataset, r.config, r.result, r.progress, r.message, r.error,"
            " r.created_at, r.finished_at ORDER BY r.created_at DESC")

    def rec_variants(self, run_id: str) -> pd.DataFrame:
        """Which (model, variant) lists a run stored."""
        return self.query("SELECT DISTINCT model, variant FROM recommendations WHERE run_id = ? ORDER BY ALL",
                          [run_id])

    def recommendations_for(self, run_id: str, user_id: str) -> pd.DataFrame:
        """Every stored list of one user in a run, per model and variant."""
        return self.query(
            "SELECT model, variant, rank, item_id, title, score, is_attack_item, is_target FROM recommendations"
            " WHERE run_id = ? AND user_id = ? ORDER BY model, variant, rank", [run_id, str(user_id)])

    def rec_side_by_side(self, run_id: str, user_id: str, model: str, variant: str = "trigger",
                         baseline: str = "no_trigger") -> pd.DataFrame:
        """One model's `variant` list for a user with each item's rank in the `baseline` list and the change
        (positive = moved up; null = the item is not in the baseline's top list)."""
        return self.query(
            "SELECT t.rank, t.title, t.score, t.is_attack_item, t.is_target, c.rank AS baseline_rank,"
            " c.rank - t.rank AS rank_change, t.item_id FROM recommendations t LEFT JOIN recommendations c"
            " ON c.run_id = t.run_id AND c.user_id = t.user_id AND c.model = t.model AND c.variant = ?"
            " AND c.item_id = t.item_id WHERE t.run_id = ? AND t.user_id = ? AND t.model = ?"
            " AND t.variant = ? ORDER BY t.rank", [baseline, run_id, str(user_id), model, variant])

    def attack_item_ranks(self, run_id: str, user_id: str) -> pd.DataFrame:
        """Where the attacker's item ranks for one user: one row per model, one column per list
        (null = not in that stored top list)."""
        return self.query(
            "SELECT model, min(rank) FILTER (variant = 'clean') AS clean_candidates,"
            " min(rank) FILTER (variant = 'no_trigger') AS inserted_without_trigger,"
            " min(rank) FILTER (variant = 'trigger') AS inserted_with_trigger,"
            " min(rank) FILTER (variant = 'transfer') AS trigger_on_other_item FROM recommendations"
            " WHERE run_id = ? AND user_id = ? AND is_attack_item GROUP BY model ORDER BY model",
            [run_id, str(user_id)])

    def metrics_across_runs(self, kind: str = "attack") -> pd.DataFrame:
        """Every finished run's metrics with its config and result JSON (for the dose plots)."""
        return self.query(
            "SELECT r.run_id, r.dataset, r.config, r.result, r.created_at, m.model, m.name, m.value FROM runs r"
            " JOIN metrics m USING (run_id) WHERE r.kind = ? AND r.status = 'done' ORDER BY r.created_at",
            [kind])

    def list_scans(self) -> pd.DataFrame:
        """Newest scan first, each P-Scanner scan before its baselines (`<scan_id>.<method>`); `scanner_model` is
        the scanner's base of scans recorded as runs (the dashboard's jobs, the CLI's commands): the one `auto`
        resolved to, as the run's result records it."""
        return self.query("SELECT s.*, coalesce(json_extract_string(r.result, '$.scanner.model'),"
                          " json_extract_string(r.config, '$.scanner.model.name'),"
                          " json_extract_string(r.config, '$.scanner.model')) AS scanner_model FROM scans s"
                          " LEFT JOIN runs r ON r.run_id = split_part(s.scan_id, '.', 1) ORDER BY"
                          " max(s.created_at) OVER (PARTITION BY split_part(s.scan_id, '.', 1)) DESC, s.scan_id")

    def scan_row(self, scan_id: str) -> dict | None:
        """A scan's summary row (method, threshold, counts, metrics), or None."""
        df = self.query("SELECT * FROM scans WHERE scan_id = ?", [scan_id])
        return None if df.empty else df.iloc[0].to_dict()

    def _scan_filter(self, scan_id: str, search: str, flagged: bool | None, min_score: float,
                     threshold: float | None) -> tuple[str, list]:
        where, params = ["scan_id = ?", "score >= ?"], [scan_id, float(min_score)]
        if search:
            where.append("(title ILIKE ? OR item_id = ?)")
            params += [f"%{search}%", search]
        if flagged is not None:
            if threshold is None:
                where.append("flagged = ?")
                params.append(bool(flagged))
            else:
                # a recurring trigger or a Unicode-hygiene finding (`reason`) stays flagged
                where.append("(score >= ? OR campaign IS NOT NULL OR reason IS NOT NULL) = ?")
                params += [float(threshold), bool(flagged)]
        return " AND ".join(where), params

    def scan_results_page(self, scan_id: str, search: str = "", flagged: bool | None = None,
                          min_score: float = 0.0, threshold: float | None = None, sort: str = "score",
                          descending: bool = True, limit: int = 200, offset: int = 0) -> pd.DataFrame:
        """One page of a scan's per-item results, filtered and sorted in SQL.

        Args:
            flagged (`bool`, optional): keep only flagged (True) or unflagged (False) items; with
                `threshold`, "flagged" means score >= threshold, carrying a recurring trigger (`campaign`) or
                a Unicode-hygiene finding (`reason`) instead of the stored flag.
            sort (`str`): one of `SCAN_SORTS`.
        """
        if sort not in self.SCAN_SORTS:
            raise ValueError(f"sort must be one of {sorted(self.SCAN_SORTS)}")
        where, params = self._scan_filter(scan_id, search, flagged, min_score, threshold)
        order = f"{self.SCAN_SORTS[sort]} {'DESC' if descending else 'ASC'}, item_id"
        # `marked`: the title with its suspicious span in ⟦ ⟧ (plain text, for the table)
        return self.query(f"SELECT item_id, title, score, flagged, span, CASE WHEN coalesce(span, '') = '' THEN NULL"
                          f" ELSE replace(title, span, '⟦' || span || '⟧') END AS marked, campaign, reason, method,"
                          f" label FROM scan_results"
                          f" WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                          [*params, int(limit), int(offset)])

    def scan_results_count(self, scan_id: str, search: str = "", flagged: bool | None = None,
                           min_score: float = 0.0, threshold: float | None = None) -> int:
        """How many of a scan's items pass the same filters as `scan_results_page` (for paging)."""
        where, params = self._scan_filter(scan_id, search, flagged, min_score, threshold)
        return int(self.scalar(f"SELECT count(*) FROM scan_results WHERE {where}", params))

    def scan_scores(self, scan_id: str) -> pd.DataFrame:
        """Scores, ground-truth labels (null when unknown), recurring triggers and Unicode-hygiene reasons of every
        item of a scan."""
        return self.query("SELECT score, label, campaign, reason FROM scan_results WHERE scan_id = ?", [scan_id])

    def scan_campaigns(self, scan_id: str) -> pd.DataFrame:
        """The recurring triggers a scan found, with how many items carry each (and how many are poisoned)."""
        return self.query("SELECT campaign AS \"trigger\", count(*) AS items,"
                          " count(*) FILTER (WHERE label) AS poisoned, min(score) AS min_score,"
                          " max(score) AS max_score FROM scan_results"
                          " WHERE scan_id = ? AND campaign IS NOT NULL GROUP BY campaign ORDER BY items DESC, campaign",
                          [scan_id])

    # -- scans ------------------------------------------------------------------
    SCAN_RESULT_COLS = ("scan_id", "item_id", "title", "score", "flagged", "method", "span", "label", "campaign",
                        "reason")
    SCAN_OPTIONAL_COLS = ("reason",)  # written as NULL when a frame lacks them (writers older than the column)

    def write_scan(self, chunks: Iterable[pd.DataFrame], finish: Callable[[], list[dict]]) -> None:
        """Stream a scan's per-item rows into `scan_results`, then its `scans` rows, in one transaction.

        Args:
            chunks (`Iterable[pd.DataFrame]`): frames with `SCAN_RESULT_COLS` (those in `SCAN_OPTIONAL_COLS`
                may be missing), produced while scoring, so only one chunk is in memory at a time.
            finish (`Callable[[], list[dict]]`): called after the last chunk; returns the `scans` rows
                (scan_id, run_id, source, method, threshold, n_items, n_flagged, metrics).

        A failure anywhere (scoring included) rolls everything back: nothing half-written.
        """
        with self.connect(write=True) as con:
            for df in chunks:
                if len(df):
                    present = [c for c in self.SCAN_RESULT_COLS if c in df or c not in self.SCAN_OPTIONAL_COLS]
                    cols = ", ".join(present)
                    con.register("_scan_rows", df[present])
                    con.execute(f"INSERT INTO scan_results ({cols}) SELECT {cols} FROM _scan_rows")
                    con.unregister("_scan_rows")
            for row in finish():
                con.execute(
                    "INSERT INTO scans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [row["scan_id"], row.get("run_id"), row["source"], row["method"], row.get("threshold"),
                     int(row["n_items"]), int(row["n_flagged"]), _json(row.get("metrics")), now()])

    def scan_results(self, scan_id: str) -> pd.DataFrame:
        """Every per-item row of one scan (one method), in item order of the scan."""
        return self.query("SELECT item_id, title, score, flagged, span, label, campaign, reason FROM scan_results"
                          " WHERE scan_id = ? ORDER BY rowid", [scan_id])

    def delete_scan(self, scan_id: str) -> None:
        """A scan and its baseline scans (`<scan_id>.<method>`)."""
        with self.connect(write=True) as con:
            for table in ("scan_results", "scans"):
                con.execute(f"DELETE FROM {table} WHERE scan_id = ? OR starts_with(scan_id, ?)",
                            [scan_id, scan_id + "."])
