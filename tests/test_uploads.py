"""The bad-file corpus: each file is rejected with one line or imported with a warning, never half-written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.data.dataset import import_file
from core.data.uploads import MAX_UPLOAD_BYTES, ColumnMap, read_upload, read_upload_path
from core.errors import InputError
from core.sanitize import csv_safe, to_csv_bytes

CORPUS = Path(__file__).parent / "data" / "bad_uploads"
ROOT = Path(__file__).resolve().parents[1]

REJECTED = {
    "empty.csv": "file is empty",
    "header_only.csv": "no data rows",
    "binary.csv": "binary",
    "no_title.csv": "no title column",
    "all_blank_titles.csv": "blank title",
    "conflicting_ids.csv": "conflicting titles",
    "ragged.csv": "ragged rows",
    "array.jsonl": "JSON array",
    "bad_json_line.jsonl": "line 2 is not valid JSON",
    "catalog.xlsx": "unsupported file type",
    "corrupt.parquet": "not a readable Parquet",
    "bad_timestamp.csv": "neither unix seconds nor a date",
    "only_one_column.tsv": "no item_id column",
}
IMPORTED = {  # file -> (n_items, warning substring)
    "semicolon.csv": (3, "delimiter ';' detected"),
    "blank_titles.csv": (2, "2 rows with a blank title"),
    "latin1.csv": (2, "not UTF-8"),
    "html_titles.csv": (3, "HTML-like markup"),
    "formula_cells.csv": (5, "start with = + - or @"),
    "duplicate_same.csv": (2, "duplicate rows were merged"),
    "long_title.csv": (2, "longer than 300 characters were cut"),
    "control_chars.csv": (2, None),
}


def test_corpus_is_complete():
    assert {p.name for p in CORPUS.iterdir()} == set(REJECTED) | set(IMPORTED)
    assert len(REJECTED) + len(IMPORTED) >= 15


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_with_one_line(name):
    with pytest.raises(InputError) as exc:
        read_upload_path(CORPUS / name)
    message = str(exc.value)
    assert REJECTED[name] in message
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_imported_with_warning(name):
    upload = read_upload_path(CORPUS / name)
    n_items, warning = IMPORTED[name]
    assert len(upload.items) == n_items
    if warning:
        assert any(warning in w for w in upload.warnings), upload.warnings
    assert upload.kind == "catalog"


def test_titles_are_kept_as_text_and_cleaned():
    html = read_upload_path(CORPUS / "html_titles.csv").items
    assert html["title"].iloc[0] == "<script>alert(1)</script> Alien"  # data, stored verbatim
    latin = read_upload_path(CORPUS / "latin1.csv").items
    assert latin["title"].iloc[0] == "Amélie (2001)"
    ctrl = read_upload_path(CORPUS / "control_chars.csv").items
    assert ctrl["title"].iloc[0] == "Alien (1979)"


def test_formula_cells_are_defused_on_export():
    items = read_upload_path(CORPUS / "formula_cells.csv").items
    safe = csv_safe(items)
    assert all(not t.startswith(("=", "+", "-", "@")) for t in safe["title"])
    assert safe["title"].iloc[0] == "'=HYPERLINK(\"http://x\")"
    assert b"\n2,'+1+2\n" in to_csv_bytes(items)


def test_oversized_file_rejected_before_reading(tmp_path):
    big = tmp_path / "huge.csv"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(MAX_UPLOAD_BYTES + 1)
    with pytest.raises(InputError, match="the limit is"):
        read_upload_path(big)


def test_interactions_upload_with_mapping():
    raw = b"uid,iid,name,when,stars\na,1,Alien (1979),2001-01-01,4\na,2,Heat (1995),2001-01-02,5\nb,1,Alien (1979),2001-01-03,3\n"
    up = read_upload(raw, "x.csv", ColumnMap(item_id="iid", title="name", user_id="uid", ts="when", rating="stars"))
    assert up.kind == "interactions"
    assert len(up.items) == 2 and len(up.interactions) == 3
    assert up.interactions["ts"].is_monotonic_increasing
    assert up.interactions["rating"].tolist() == [4.0, 5.0, 3.0]


def test_mapping_to_missing_column_is_named():
    with pytest.raises(InputError, match="column 'nope' .*not found"):
        read_upload(b"item_id,title\n1,A\n", "x.csv", ColumnMap(title="nope"))


def test_label_column_parsed():
    up = read_upload(b"item_id,title,is_poisoned\n1,A 5v,1\n2,B,0\n", "x.csv")
    assert up.items["label"].tolist() == [True, False]


def test_import_writes_dataset_and_rejection_writes_nothing(store):
    row, warnings = import_file(store, CORPUS / "semicolon.csv", "semi")
    assert row["n_items"] == 3 and warnings
    before = store.list_datasets()["name"].tolist()
    with pytest.raises(InputError):
        import_file(store, CORPUS / "conflicting_ids.csv", "conflict")
    assert store.list_datasets()["name"].tolist() == before


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_cli_import_bad_files_exit_2_and_list_unchanged(home):
    import os
    env = dict(os.environ)
    listed = lambda: json.loads(_cli("datasets", "list", "--json", env=env).stdout)
    before = listed()
    for name in ("empty.csv", "ragged.csv", "array.jsonl", "catalog.xlsx"):
        proc = _cli("datasets", "import", str(CORPUS / name), "--name", "bad", env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "Traceback" not in proc.stderr
    assert listed() == before
    ok = _cli("datasets", "import", str(CORPUS / "html_titles.csv"), "--name", "html", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["n_items"] == 3
    assert "warning:" in ok.stderr
    assert any(r["name"] == "html" for r in listed())


def test_builtin_name_cannot_be_overwritten(store):
    with pytest.raises(InputError, match="built-in"):
        import_file(store, CORPUS / "semicolon.csv", "ml-100k")


def test_a_utf16_export_is_decoded_with_a_warning():
    raw = "item_id,title\n1,Amélie (2001)\n".encode("utf-16")
    upload = read_upload(raw, "films.csv")
    assert upload.items["title"].tolist() == ["Amélie (2001)"] and "UTF-16" in upload.warnings[0]


def test_save_upload_validates_first_and_keeps_the_file_name(tmp_path):
    from core.data.uploads import save_upload
    with pytest.raises(InputError, match="file is empty"):
        save_upload(b"", "empty.csv", tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists()  # refused before anything is written
    path, upload = save_upload(b"item_id,title\n1,A (1999)\n", "../shop.csv", tmp_path / "uploads")
    assert path.name == "shop.csv" and path.parent.parent == tmp_path / "uploads" and len(upload.items) == 1
    assert path.read_bytes() == b"item_id,title\n1,A (1999)\n" and not list(path.parent.glob("*.part"))
