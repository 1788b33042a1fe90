"""User uploads: CSV, TSV, Parquet or JSON Lines with a column mapping, validated before anything is written.

Every problem either rejects the file with one line (`InputError`) or is
repaired with a warning the user sees. Nothing is half-imported: the caller
writes the returned frames in one transaction.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.errors import InputError
from core.sanitize import MAX_TITLE_CHARS, clean_title, has_markup, starts_formula

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".jsonl": "jsonl",
              ".ndjson": "jsonl"}
_SYNONYMS = {
    "item_id": ("item_id", "itemid", "item", "id", "movie_id", "product_id", "asin"),
    "title": ("title", "name", "item_title", "movie_title", "product_title"),
    "user_id": ("user_id", "userid", "user"),
    "ts": ("ts", "timestamp", "time", "date", "datetime"),
    "rating": ("rating", "score", "stars"),
    "label": ("is_poisoned", "poisoned", "label"),
}


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of an upload hold what; `None` means guess from common names.

    Args:
        item_id (`str`, optional): column with the item id.
        title (`str`, optional): column with the item title.
        user_id (`str`, optional): column with the user id; present means the file holds interactions.
        ts (`str`, optional): timestamp column (unix seconds or a date); file order when absent.
        rating (`str`, optional): rating column; 1.0 when absent.
        label (`str`, optional): ground-truth poison flag (0/1, true/false) for scanner evaluation.
    """

    item_id: str | None = None
    title: str | None = None
    user_id: str | None = None
    ts: str | None = None
    rating: str | None = None
    label: str | None = None


@dataclass
class Upload:
    """A validated upload: normalised frames plus the warnings to show."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """What the upload holds: interactions (a dataset) or only items (a catalog to scan)."""
        return "interactions" if len(self.interactions) else "catalog"


def _decode(raw: bytes) -> tuple[str, str | None]:
    if raw.startswith(_UTF16_BOMS):  # spreadsheet "Unicode text" exports
        try:
            return raw.decode("utf-16"), "file is UTF-16; decoded (UTF-8 is the usual encoding)"
        except UnicodeDecodeError as exc:
            raise InputError(f"file starts as UTF-16 but does not decode: {exc.reason}") from exc
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "file is not UTF-8; decoded as Windows-1252"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "file is not UTF-8; decoded as Latin-1"


def _read_delimited(text: str, fmt: str, warnings: list[str]) -> pd.DataFrame:
    default = "\t" if fmt == "tsv" else ","
    sample = "\n".join(text.splitlines()[:50])
    try:
        sep = csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        sep = default
    if sep != default:
        warnings.append(f"delimiter {sep!r} detected (expected {default!r} for .{fmt}); using {sep!r}")
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                           skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise InputError(f"ragged rows: {str(exc).strip().splitlines()[-1]}") from exc
    except pd.errors.EmptyDataError as exc:
        raise InputError("file has no columns") from exc


def _read_jsonl(text: str) -> pd.DataFrame:
    if text.lstrip().startswith("["):
        raise InputError("file is a JSON array; expected JSON Lines (one object per line)")
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {n} is not valid JSON: {exc.msg}") from exc
        if not isinstance(obj, dict):
            raise InputError(f"line {n} is not a JSON object")
        rows.append(obj)
    return pd.DataFrame(rows).astype(str) if rows else pd.DataFrame()


def read_table(raw: bytes, filename: str) -> tuple[pd.DataFrame, list[str]]:
    """Bytes of an upload -> a frame of strings; rejects what cannot be read."""
    ext = Path(filename).suffix.lower()
    if ext not in EXTENSIONS:
        raise InputError(f"unsupported file type {ext or '(none)'!r}; use .csv, .tsv, .parquet or .jsonl")
    if len(raw) > MAX_UPLOAD_BYTES:
        raise InputError(f"file is {len(raw) / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB")
    if not raw.strip():
        raise InputError("file is empty")
    fmt = EXTENSIONS[ext]
    warnings: list[str] = []
    if fmt == "parquet":
        try:
            df = pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise InputError(f"not a readable Parquet file: {str(exc).splitlines()[0]}") from exc
        return df.astype(str), warnings
    if b"\x00" in raw[:65536] and not raw.startswith(_UTF16_BOMS):  # UTF-16 text is full of NUL bytes
        raise InputError("file looks binary (NUL bytes); expected text")
    text, enc_warning = _decode(raw)
    if enc_warning:
        warnings.append(enc_warning)
    df = _read_jsonl(text) if fmt == "jsonl" else _read_delimited(text, fmt, warnings)
    return df, warnings


def _resolve(df: pd.DataFrame, mapping: ColumnMap) -> dict[str, str | None]:
    cols = {c.strip().lower(): c for c in df.columns}
    out: dict[str, str | None] = {}
    for key, synonyms in _SYNONYMS.items():
        given = getattr(mapping, key)
        if given is not None:
            if given not in df.columns:
                raise InputError(f"column {given!r} (for {key}) not found; columns: {', '.join(map(str, df.columns))}")
            out[key] = given
        else:
            out[key] = next((cols[s] for s in synonyms if s in cols), None)
    for key in ("item_id", "title"):
        if out[key] is None:
            found = ", ".join(map(str, df.columns[:10]))
            raise InputError(f"no {key} column (columns: {found}); map one with the column mapping")
    return out


def _parse_ts(values: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.astype("int64")
    dates = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if dates.isna().any():
        bad = values[dates.isna()].iloc[0]
        raise InputError(f"timestamp {bad!r} is neither unix seconds nor a date")
    return (dates.astype("int64") // 10**9).astype("int64")


def _parse_label(values: pd.Series) -> pd.Series:
    mapping = {"1": True, "0": False, "true": True, "false": False, "yes": True, "no": False}
    lowered = values.str.strip().str.lower()
    bad = ~lowered.isin(mapping)
    if bad.any():
        raise InputError(f"label value {values[bad].iloc[0]!r} is not 0/1 or true/false")
    return lowered.map(mapping).astype(bool)


def normalise(df: pd.DataFrame, mapping: ColumnMap, warnings: list[str]) -> Upload:
    """Map columns, clean titles and check consistency; returns items and interactions."""
    if df.empty:
        raise InputError("file has a header but no data rows")
    col = _resolve(df, mapping)
    frame = pd.DataFrame({"item_id": df[col["item_id"]].astype(str).str.strip(),
                          "title": df[col["title"]].astype(str).map(clean_title)})
    missing_id = frame["item_id"].eq("")
    blank = frame["title"].eq("") | frame["title"].str.lower().isin({"nan", "none"})
    if (blank | missing_id).all():
        raise InputError("every row has a blank title or item id")
    if blank.any() or missing_id.any():
        warnings.append(f"{int((blank | missing_id).sum())} rows with a blank title or item id were skipped")
    keep = ~(blank | missing_id)
    long = frame["title"].str.len() > MAX_TITLE_CHARS
    if long.any():
        warnings.append(f"{int(long.sum())} titles longer than {MAX_TITLE_CHARS} characters were cut")
        frame.loc[long, "title"] = frame.loc[long, "title"].str.slice(0, MAX_TITLE_CHARS)
    if col["label"] is not None:
        frame["label"] = _parse_label(df[col["label"]].astype(str))
    frame = frame[keep]

    items = frame.drop_duplicates(["item_id", "title"])
    conflicts = items[items.duplicated("item_id", keep=False)]
    if len(conflicts):
        iid = conflicts["item_id"].iloc[0]
        titles = conflicts[conflicts["item_id"] == iid]["title"].tolist()[:2]
        raise InputError(f"item id {iid!r} has conflicting titles {titles[0]!r} and {titles[1]!r}")
    if col["user_id"] is None and len(items) < len(frame):
        warnings.append(f"{len(frame) - len(items)} duplicate rows were merged")
    n_markup = int(items["title"].map(has_markup).sum())
    if n_markup:
        warnings.append(f"{n_markup} titles contain HTML-like markup; stored and shown as plain text")
    n_formula = int(items["title"].map(starts_formula).sum())
    if n_formula:
        warnings.append(f"{n_formula} titles start with = + - or @; exports prefix them with a quote")

    if col["user_id"] is None:
        inter = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str),
                              "ts": pd.Series(dtype="int64"), "rating": pd.Series(dtype=float)})
    else:
        sub = df[keep.values]
        inter = pd.DataFrame({"user_id": sub[col["user_id"]].astype(str).str.strip(),
                              "item_id": frame["item_id"].values})
        inter["ts"] = _parse_ts(sub[col["ts"]].astype(str)).values if col["ts"] else range(len(sub))
        if col["rating"]:
            rating = pd.to_numeric(sub[col["rating"]], errors="coerce")
            if rating.isna().any():
                raise InputError(f"rating {sub[col['rating']][rating.isna()].iloc[0]!r} is not a number")
            inter["rating"] = rating.astype(float).values
        else:
            inter["rating"] = 1.0
    items = items.reset_index(drop=True)
    return Upload(items=items, interactions=inter.reset_index(drop=True), warnings=warnings)


def read_upload(raw: bytes, filename: str, mapping: ColumnMap = ColumnMap()) -> Upload:
    """Validate an uploaded file end to end; raises `InputError` with one line on anything unusable."""
    df, warnings = read_table(raw, filename)
    df.columns = [str(c).strip() for c in df.columns]
    return normalise(df, mapping, warnings)


def read_upload_path(path: Path | str, mapping: ColumnMap = ColumnMap()) -> Upload:
    """An upload read from a path, as the CLI takes files, through the same checks as a browser upload."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    size = path.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise InputError(f"file is {size / 2**20:.0f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB")
    return read_upload(path.read_bytes(), path.name, mapping)


def save_upload(raw: bytes, filename: str, folder: Path, mapping: ColumnMap = ColumnMap()) -> tuple[Path, Upload]:
    """Validate an upload, then keep it as `folder/<digest>/<its own name>` for a job to read.

    Validation comes first, so a bad file is refused with one line before any job exists and nothing is
    written; the digest folder keeps the user's file name (the scan's label) without clashing.

    Returns:
        `(Path, Upload)`: where the file was written and its validated content (with warnings).
    """
    upload = read_upload(raw, filename, mapping)
    name = Path(filename.replace("\\", "/")).name or "upload"
    target = Path(folder) / hashlib.sha256(raw).hexdigest()[:12] / name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    part.write_bytes(raw)
    part.replace(target)  # atomic: a job never reads half a file
    return target, upload
