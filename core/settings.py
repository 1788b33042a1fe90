"""Where the app keeps its data: `BADREC_HOME` and the `BADREC_DATA_DIRS` search path."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The app's home folder (DuckDB file, caches, models); created on demand."""
    raw = os.environ.get("BADREC_HOME")
    base = Path(raw) if raw else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "badrec"
    base.mkdir(parents=True, exist_ok=True)
    return base


def db_path() -> Path:
    """The DuckDB file under `BADREC_HOME`, shared by the dashboard and the CLI."""
    return home() / "badrec.duckdb"


def cache_dir(*parts: str) -> Path:
    """A cache folder under `BADREC_HOME` (created if missing) for models, scanners and checkpoints."""
    path = home().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dirs() -> list[Path]:
    """Folders searched for datasets, from `BADREC_DATA_DIRS` (colon-separated)."""
    raw = os.environ.get("BADREC_DATA_DIRS", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
