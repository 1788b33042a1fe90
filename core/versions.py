"""Library versions recorded with every run, so a stored number says what produced it."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "tokenizers", "peft", "bitsandbytes", "duckdb", "pandas", "numpy")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    from . import __version__
    out["badrec"] = __version__
    return out
