"""Library versions and the machine kind recorded with every run, so a stored number says what produced it."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

PACKAGES = ("torch", "transformers", "tokenizers", "peft", "bitsandbytes", "duckdb", "pandas", "numpy")


def versions() -> dict[str, str]:
    """Python, platform and key library versions, recorded with each run so it can be reproduced."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    from . import __version__
    from .hardware import machine_info, resolve_dtype
    out["badrec"] = __version__
    out["machine"] = machine_info(resolve_dtype("auto"))  # the default dtype here; a run records its own
    return out
