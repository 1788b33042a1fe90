"""Attack sweeps: a grid of BadRec runs (doses, trigger levels and positions, seeds, victims, models), run one
after another here or as Ray tasks (`core.runs.ray_engine`), each run stored like a single `attack`.

On Ray every run trains against a scratch DuckDB file of its own and returns its rows (`RunRows`); the
driver, the one DuckDB writer, stores each as it finishes. Base and clean models are built once and
shared through the model cache under `BADREC_HOME`: a first wave trains one run per clean model (after
one task built the bases those clean models share), the second wave reuses them. The same configs give
the same metrics on either engine (tests/test_ray.py).
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd

from core.config import ConfigMixin
from core.errors import InputError
from core.progress import Cancelled, Progress
from core.runs.ray_engine import RayConfig
from core.runs.store import RUN_TABLES, Store

from .badrec import AttackConfig

_NOT_SWEPT = ("help", "json", "resume")  # attack flags that make no sense in a grid


def _attack_parser() -> argparse.ArgumentParser:
    from core.cli.attack import register

    root = argparse.ArgumentParser(add_help=False)
    sub = root.add_subparsers()
    register(sub)
    return sub.choices["attack"]


def _coerce(action: argparse.Action, key: str, value: Any) -> Any:
    """A JSON value for an attack flag, checked as strictly as the flag's own type and choices."""
    if action.nargs == 0:  # a switch such as --no-generate
        if not isinstance(value, bool):
            raise InputError(f"grid key {key!r} takes true or false, not {value!r}")
        return value
    if value is None and action.default is None:
        return None
    kind = action.type or str
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(kind, lambda v: isinstance(v, (str, int, float)))
    if not ok(value):
        raise InputError(f"grid key {key!r} takes {getattr(kind, '__name__', 'a value')}, not {value!r}")
    value = kind(value)
    if action.choices is not None and value not in action.choices:
        raise InputError(f"grid key {key!r} must be one of {', '.join(map(str, action.choices))}; got {value!r}")
    return value


@dataclass(frozen=True)
class SweepGrid(ConfigMixin):
    """A grid of attack runs: flags every run shares, and axes whose values are combined (one run each).

    Keys are the flags of `python -m core attack` with underscores: poison_ratio, trigger_level,
    trigger_position, trigger, seed, victim, model, quant, tiny_size, epochs, eval_users, no_generate, ...
    `to_dict` is the grid file's JSON.

    Args:
        fixed (`dict[str, Any]`): flag -> value shared by every run.
        grid (`dict[str, tuple]`): flag -> values, one axis each; the first axis is the plots' x axis.
    """

    config_label: ClassVar[str] = "top-level grid"
    fixed: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, tuple] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.fixed, dict) or not isinstance(self.grid, dict):
            raise InputError("grid 'fixed' and 'grid' must be JSON objects")
        bad = [k for k, v in self.grid.items() if not isinstance(v, (list, tuple))]
        if bad:
            raise InputError(f"grid axis {bad[0]!r} must be a list of values")
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "grid", {k: tuple(v) for k, v in self.grid.items()})
        if not self.grid:
            raise InputError("the grid is empty: give at least one axis, e.g. {\"grid\": {\"poison_ratio\": [0.01]}}")
        twice = sorted(set(self.fixed) & set(self.grid))
        if twice:
            raise InputError(f"grid keys given twice (fixed and grid): {', '.join(twice)}")
        for key, values in self.grid.items():
            if not values:
                raise InputError(f"grid axis {key!r} has no values")
        self.configs()  # every point is a valid attack config, or nothing runs

    @classmethod
    def from_file(cls, path: str | Path) -> SweepGrid:
        """The grid in a JSON file; a missing file or bad JSON is one `InputError` line."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"grid file not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"grid file {path.name} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def points(self) -> list[dict[str, Any]]:
        """One {axis flag: value} per run, the last axis varying fastest."""
        return [dict(zip(self.grid, combo)) for combo in itertools.product(*self.grid.values())]

    def configs(self) -> list[AttackConfig]:
        """The runs' configs, built by the attack command's own flag handling (`config_from_args`)."""
        from core.cli.attack import config_from_args

        parser = _attack_parser()
        actions = {a.dest: a for a in parser._actions if a.dest not in _NOT_SWEPT}
        unknown = sorted((set(self.fixed) | set(self.grid)) - set(actions))
        if unknown:
            raise InputError(f"unknown grid keys {', '.join(unknown)}; use attack flags such as poison_ratio, "
                             "trigger_level, trigger_position, seed, victim, model, tiny_size")
        out = []
        for point in self.points():
            args = parser.parse_args([])
            for key, value in [*self.fixed.items(), *point.items()]:
                setattr(args, key, _coerce(actions[key], key, value))
            out.append(config_from_args(args))
        return out


# -- moving a run between stores ---------------------------------------------------------------
@dataclass
class RunRows:
    """A finished run's rows: its `runs` row (JSON fields parsed), metrics {model: {name: value}} and
    per-row tables (train_log, recommendations, poison_records)."""

    run: dict
    metrics: dict[str, dict[str, float]]
    tables: dict[str, pd.DataFrame]


def export_run(store: Store, run_id: str) -> RunRows:
    """A run's rows read from one store, to be written to another by `import_run` (a Ray task's scratch store
    to the driver's)."""
    run = store.get_run(run_id)
    if run is None:
        raise InputError(f"unknown run id {run_id!r}")
    metrics: dict[str, dict[str, float]] = {}
    for r in store.run_table(run_id, "metrics").itertuples(index=False):
        metrics.setdefault(r.model, {})[r.name] = float(r.value)
    tables = {t: store.run_table(run_id, t) for t in RUN_TABLES if t != "metrics"}
    return RunRows(run, metrics, tables)


def import_run(store: Store, rows: RunRows) -> None:
    """Store a run exported elsewhere: its row, then its metrics and tables in one transaction (the row is
    removed again if that fails)."""
    run = rows.run
    store.create_run(run["run_id"], run["kind"], run["dataset"], run["config"], int(run["seed"]), run["versions"],
                     status="running")
    try:
        store.finish_run(run["run_id"], run["result"], run["timings"], rows.metrics, rows.tables)
    except BaseException:
        store.delete_run(run["run_id"])
        raise


@dataclass
class DatasetRows:
    """A dataset as the driver's store holds it, to seed a worker's scratch store with the same rows."""

    name: str
    source: str
    kind: str
    items: pd.DataFrame
    interactions: pd.DataFrame
    notes: list[str]


def dataset_rows(store: Store, name: str) -> DatasetRows:
    """A dataset's rows from the driver's store, to seed a Ray worker's scratch store with the same data."""
    from core.data.dataset import ensure_dataset

    row = ensure_dataset(store, name)
    notes = json.loads(row["notes"]) if isinstance(row.get("notes"), str) else []
    return DatasetRows(name, row["source"], row["kind"], store.load_items(name), store.load_interactions(name), notes)


def _scratch(folder: str, datasets: Sequence[DatasetRows]) -> Store:
    scratch = Store(Path(folder) / "badrec.duckdb")
    for d in datasets:
        scratch.save_dataset(d.name, d.source, d.kind, d.items, d.interactions, d.notes)
    return scratch


def attack_rows(cfg: AttackConfig, dataset: DatasetRows) -> RunRows:
    """One attack in a scratch store of its own (a sweep's Ray task); returns the finished run's rows."""
    from .experiment import run_attack

    with tempfile.TemporaryDirectory(prefix="badrec-sweep-") as tmp:
        scratch = _scratch(tmp, [dataset])
        return export_run(scratch, run_attack(scratch, cfg)["run_id"])


def _json_key(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def warm_bases(configs: Sequence[AttackConfig], datasets: Sequence[DatasetRows]) -> int:
    """Build (or find cached) each distinct base model of these configs, one after another, so the clean
    models trained next in parallel read a finished base instead of racing to build it; returns how many."""
    from core.data.dataset import load_dataset
    from core.lm.models import load_model

    with tempfile.TemporaryDirectory(prefix="badrec-sweep-") as tmp:
        scratch = _scratch(tmp, datasets)
        for cfg in configs:
            load_model(cfg.model, load_dataset(scratch, cfg.dataset), None, protocol=cfg.protocol, tiny=cfg.tiny)
    return len(configs)


# -- the sweep ---------------------------------------------------------------------------------
def varying(configs: Sequence[AttackConfig]) -> list[dict[str, Any]]:
    """Each config's settings that differ across the sweep ({"poison_ratio": 0.01, "seed": 1, ...})."""
    flat = [pd.json_normalize(c.to_dict(), sep=".").iloc[0].to_dict() for c in configs]
    keys = [k for k in flat[0] if len({_json_key(f.get(k)) for f in flat}) > 1]
    return [{k: f.get(k) for k in keys} for f in flat]


def _run_local(store: Store, configs: Sequence[AttackConfig],
               progress: Progress | None) -> Iterator[tuple[int, dict | Exception]]:
    from .experiment import run_attack

    for i, cfg in enumerate(configs):
        if progress:
            progress.phase(f"sweep run {i + 1}/{len(configs)}")
        try:
            yield i, run_attack(store, cfg, progress)
        except Cancelled:
            raise
        except Exception as exc:  # recorded as the run's failure; the sweep goes on
            yield i, exc


def _run_on_ray(store: Store, configs: Sequence[AttackConfig], ray_cfg: RayConfig,
                progress: Progress | None) -> Iterator[tuple[int, dict | Exception]]:
    from core.runs.ray_engine import cluster, map_unordered, worker_env

    with cluster(ray_cfg):
        data = {name: dataset_rows(store, name) for name in dict.fromkeys(c.dataset for c in configs)}
        env = worker_env()
        groups: dict[str, list[int]] = {}
        for i, cfg in enumerate(configs):
            groups.setdefault(_json_key(cfg.clean_key()), []).append(i)
        if len(groups) > 1:  # several clean models: their bases are built first, once each
            bases = {_json_key([c.dataset, c.model.to_dict(), c.tiny.to_dict() if c.model.is_tiny else None,
                                c.protocol.to_dict()]): c for c in configs}
            if progress:
                progress.phase(f"building {len(bases)} base model(s) on Ray")
            for _, out in map_unordered(warm_bases, [(list(bases.values()), list(data.values()))], ray_cfg, env):
                if isinstance(out, BaseException):
                    raise out
        first = [g[0] for g in groups.values()]  # builds each clean model; the second wave reuses them
        rest = [i for g in groups.values() for i in g[1:]]
        for wave in (first, rest):
            calls = [(configs[i], data[configs[i].dataset]) for i in wave]
            for j, out in map_unordered(attack_rows, calls, ray_cfg, env):
                if isinstance(out, RunRows):
                    import_run(store, out)
                    yield wave[j], out.run["result"]
                else:
                    yield wave[j], out


def run_sweep(store: Store, configs: Sequence[AttackConfig], engine: Literal["local", "ray"] = "local",
              ray_cfg: RayConfig | None = None, progress: Progress | None = None,
              points: Sequence[dict[str, Any]] | None = None) -> dict:
    """Run every config as an attack and record the sweep (a `runs` row of kind `sweep`).

    Args:
        store (`Store`): the driver's store; every run lands here.
        configs (`Sequence[AttackConfig]`): the runs.
        engine (`Literal["local", "ray"]`): one after another in this process, or as Ray tasks.
        ray_cfg (`RayConfig`, optional): the cluster for `engine="ray"` (default: one started here).
        progress (`Progress`, optional): runs finished; cancelling stops the sweep.
        points (`Sequence[dict]`, optional): each run's grid values (`SweepGrid.points`); default: the
            settings that differ across configs.

    Returns:
        `dict`: sweep_id, engine, seconds, axes, runs (run_id, point, clean and poisoned metrics) in config
        order, failed (index, point, error).

    Raises:
        BadRecError: a config cannot run (checked for every config before anything is written).
    """
    from core.runs.jobs import new_run_id
    from core.versions import versions

    from .experiment import prepare

    if not configs:
        raise InputError("the sweep has no runs")
    if engine not in ("local", "ray"):
        raise InputError("engine must be local or ray")
    ray_cfg = ray_cfg or RayConfig()
    for cfg in configs:
        prepare(store, cfg)
    points = list(points) if points is not None else varying(configs)
    axes = list(points[0]) if points else []
    t0 = time.monotonic()
    sweep_id = new_run_id("sweep")
    datasets = sorted({c.dataset for c in configs})
    store.create_run(sweep_id, "sweep", datasets[0] if len(datasets) == 1 else ",".join(datasets),
                     {"engine": engine, "ray": ray_cfg.to_dict(), "axes": axes, "points": points,
                      "configs": [c.to_dict() for c in configs]}, configs[0].seed, versions(), status="running")
    runs: dict[int, dict] = {}
    failed: list[dict] = []
    try:
        todo = _run_local(store, configs, progress) if engine == "local" else _run_on_ray(store, configs, ray_cfg,
                                                                                           progress)
        for i, out in todo:
            if isinstance(out, BaseException):
                failed.append({"index": i, "point": points[i], "error": f"{type(out).__name__}: {out}".splitlines()[0]})
            else:
                runs[i] = {"run_id": out["run_id"], "point": points[i], "clean": out["clean"],
                           "poisoned": out["poisoned"]}
            if progress:
                progress.update(len(runs) + len(failed), len(configs), f"sweep: {len(runs)} runs done, "
                                f"{len(failed)} failed")
        seconds = round(time.monotonic() - t0, 2)
        result = {"sweep_id": sweep_id, "engine": engine, "seconds": seconds, "axes": axes,
                  "runs": [runs[i] for i in sorted(runs)], "failed": sorted(failed, key=lambda f: f["index"])}
        store.finish_run(sweep_id, result, {"seconds": seconds}, {})
        return result
    except Cancelled as exc:
        store.fail_run(sweep_id, str(exc) or "cancelled", status="cancelled")
        raise
    except BaseException as exc:
        store.fail_run(sweep_id, f"{type(exc).__name__}: {exc}".splitlines()[0])
        raise


# -- reports -----------------------------------------------------------------------------------
def sweep_points(sweep: dict) -> pd.DataFrame:
    """One row per finished run of a sweep (`Store.get_run(sweep_id)`): its grid values, ASR and HR@1."""
    result = sweep.get("result") or {}
    rows = [{**r["point"], "run_id": r["run_id"], "asr": r["poisoned"].get("asr"),
             "hr@1 poisoned": r["poisoned"].get("hr@1"), "hr@1 clean": r["clean"].get("hr@1")}
            for r in result.get("runs", [])]
    return pd.DataFrame(rows)


def sweep_figure(points: pd.DataFrame, axes: Sequence[str]):
    """ASR and HR@1 over the grid (a plotly figure): the first axis across, one line per combination of the
    others."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("ASR (higher = stronger backdoor)",
                                                        "HR@1 (poisoned solid, clean dotted; higher = better)"))
    if points.empty or not axes:
        return fig
    x, rest = axes[0], [a for a in axes[1:] if a in points]
    groups = points.groupby([points[a].astype(str) for a in rest], sort=True) if rest else [((), points)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{a}={v}" for a, v in zip(rest, key)) or "runs"
        g = g.sort_values(x)
        fig.add_trace(go.Scatter(x=g[x], y=g["asr"], mode="lines+markers", name=name, legendgroup=name), 1, 1)
        fig.add_trace(go.Scatter(x=g[x], y=g["hr@1 poisoned"], mode="lines+markers", name=name, legendgroup=name,
                                 showlegend=False), 1, 2)
        fig.add_trace(go.Scatter(x=g[x], y=g["hr@1 clean"], mode="lines+markers", name=f"{name} (clean)",
                                 legendgroup=name, showlegend=False, line={"dash": "dot"}), 1, 2)
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(range=[0, 1])
    fig.update_layout(height=380, margin={"t": 40, "b": 40}, legend_title_text=", ".join(rest) or None)
    return fig
