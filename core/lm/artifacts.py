"""Cached artefacts (scanners, tiny bases, clean adapters): one atomic save (their keys: `config.fingerprint`).

A cached folder is named by a hash of everything its contents depend on, and written to a staging
folder that is renamed into place only when complete, so a kill never leaves a folder that a later run
would take for a finished one.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path


def save_atomic(folder: Path, write: Callable[[Path], None], meta_name: str | None = None,
                meta: dict | None = None) -> None:
    """`write(staging)` fills a staging folder (plus `meta` as JSON in `meta_name`), then it replaces `folder`."""
    staging = folder.with_name(folder.name + ".part")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write(staging)
    if meta_name is not None:
        (staging / meta_name).write_text(json.dumps(meta, indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def save_model_folder(folder: Path, model, tokenizer, meta_name: str, meta: dict) -> None:
    """A model (safetensors), its tokenizer and a meta file, saved atomically."""

    def write(staging: Path) -> None:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)

    save_atomic(folder, write, meta_name, meta)
