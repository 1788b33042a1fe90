"""What every CLI command shares: JSON output, quiet `--json` mode and its progress bar.

Kept apart from `core.cli.main` so the subcommand modules can import it without importing the parser back.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable

from core.progress import ConsoleProgress


def _clean(obj):
    """JSON-safe: NaN becomes null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def quiet(args: argparse.Namespace) -> bool:
    """`--json` without `-v`: stdout carries the JSON and nothing draws progress on stdout or stderr."""
    return bool(getattr(args, "json", False)) and not getattr(args, "verbose", False)


def console_progress(args: argparse.Namespace) -> ConsoleProgress | None:
    """The progress bar of a command: on stderr, or none in quiet `--json` mode."""
    return None if quiet(args) else ConsoleProgress()


def silence_progress_bars() -> None:
    """No tqdm bars from the libraries (transformers' "Loading weights", "Writing model shards", the hub's
    downloads): set before they are imported, and switched off in those already imported."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()


def emit(args: argparse.Namespace, result, text: Callable[[object], str]) -> None:
    """Print a command's result: JSON with `--json` (NaN as null), else its text summary."""
    if getattr(args, "json", False):
        print(json.dumps(_clean(result), indent=2, default=str))
    else:
        print(text(result))
