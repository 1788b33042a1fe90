"""Text hygiene: titles are data. Clean control characters on the way in, defuse formulas on the way out."""

from __future__ import annotations

import re

import pandas as pd

MAX_TITLE_CHARS = 300
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def clean_title(title: str) -> str:
    """Drop control characters, fold whitespace runs; the visible text stays verbatim."""
    return " ".join(_CONTROL.sub("", title).split())


def has_markup(title: str) -> bool:
    """Whether a title holds HTML or Markdown markup, which the dashboard must not render."""
    return bool(_MARKUP.search(title))


def starts_formula(cell: str) -> bool:
    """Whether a cell would run as a formula in a spreadsheet (CSV injection)."""
    return cell.startswith(FORMULA_PREFIXES)


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot start a spreadsheet formula (OWASP: prefix with a quote)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and starts_formula(v) else v)
    return out


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """A frame as UTF-8 CSV with formula cells defused, for downloads."""
    return csv_safe(df).to_csv(index=False).encode("utf-8")
