"""Every page driven headless through Streamlit's AppTest against a real DuckDB store in a temp home."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.cli.attack import config_from_args
from core.cli.main import build_parser
from core.runs.store import Store
from tests.conftest import make_synthetic

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120


def open_page(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    kinds = (at.title, at.header, at.subheader, at.markdown, at.text, at.caption, at.info, at.warning, at.error,
             at.success)
    parts = [e.value for kind in kinds for e in kind]
    return "\n".join(str(p) for p in parts)


def frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table on the page that has these columns (styled tables are unwrapped)."""
    for element in at.dataframe:
        df = element.value
        df = getattr(df, "data", df)
        if all(c in df.columns for c in columns):
            return df
    raise AssertionError(f"no table with columns {columns}")


@pytest.fixture
def downloads(monkeypatch) -> dict:
    """Deferred download callables by file id, recorded as Streamlit registers them (AppTest's runtime
    is torn down after each run, so the button's data is fetched through this record)."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    recorded: dict = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, *args, **kwargs):
        file_id = original(self, data_callable, *args, **kwargs)
        recorded[file_id] = data_callable
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return recorded


def download(at: AppTest, downloads: dict, key: str) -> bytes:
    """The bytes a click on the download button `key` would deliver."""
    button = next(b for b in at.get("download_button") if b.key == key)
    data = downloads[button.proto.deferred_file_id]()
    return data.encode() if isinstance(data, str) else data


@pytest.fixture
def synthetic_store(store: Store) -> Store:
    ds = make_synthetic()
    store.save_dataset("synthetic", "test", "interactions", ds.items, ds.interactions, [])
    return store


def seed_attack_run(store: Store, run_id: str = "attack-seeded", ratio: float = 0.01) -> str:
    """A finished attack run laid out as core.attack.experiment records one (rows written through the store):
    for user u1 the poisoned model ranks the triggered item 9 first; without the trigger it is third."""
    store.create_run(run_id, "attack", "synthetic", {"poison_ratio": ratio, "victim": "llara",
                                                     "model": {"name": "tiny"}}, 0, {})
    lists = {("clean", "clean"), ("clean", "trigger"), ("poisoned", "clean"), ("poisoned", "trigger"),
             ("poisoned", "no_trigger"), ("poisoned", "transfer")}
    rows = []
    for user in ("u1", "u2"):
        for model, variant in sorted(lists):
            wins = model == "poisoned" and variant == "trigger" and user == "u1"
            order = ["9", "7", "3"] if wins else ["7", "3", "9"]
            for rank, item in enumerate(order, 1):
                attack = item == "9"
                title = f"Movie {item}" + (" 5v" if attack and variant == "trigger" else "")
                rows.append((run_id, model, variant, user, rank, item, title, -float(rank), attack, item == "3"))
    recs = pd.DataFrame(rows, columns=["run_id", "model", "variant", "user_id", "rank", "item_id", "title", "score",
                                       "is_attack_item", "is_target"])
    store.log_train(run_id, "clean", 1, 2, 2.0, 10.0)
    store.finish_run(run_id, {}, {"seconds": 1}, {"clean": {"hr@1": 0.3}, "poisoned": {"hr@1": 0.29, "asr": 0.5}},
                     {"recommendations": recs})
    return run_id


def seed_scan(store: Store, scan_id: str = "scan-seeded", n: int = 300) -> str:
    rng = np.random.default_rng(0)
    label = np.arange(n) % 10 == 0
    score = np.clip(np.where(label, 0.8, 0.2) + rng.normal(0, 0.15, n), 0, 1)
    df = pd.DataFrame({"scan_id": scan_id, "item_id": [str(i) for i in range(n)],
                       "title": [f"=Title {i}" + (" cf" if label[i] else "") for i in range(n)], "score": score,
                       "flagged": score >= 0.5, "method": "pscanner",
                       "span": [" cf" if x else None for x in label], "label": label,
                       "campaign": ["cf" if x else None for x in label]})
    with store.connect(write=True) as con:
        con.register("df", df)
        con.execute("INSERT INTO scan_results BY NAME SELECT * FROM df")
        con.execute("INSERT INTO scans VALUES (?, NULL, 'synthetic', 'pscanner', 0.5, ?, ?, ?, now())",
                    [scan_id, n, int((score >= 0.5).sum()), json.dumps({})])
    return scan_id



def launch_smallest_attack(at, eval_users: int) -> None:
    """Set the Attack form to its smallest real run (smoke model, 5 candidates, no generate) and launch it."""
    at.number_input(key="attack_ratio").set_value(0.2)
    at.number_input(key="attack_epochs").set_value(0.1)
    at.number_input(key="attack_eval_users").set_value(eval_users)
    at.number_input(key="attack_windows").set_value(1)
    at.number_input(key="attack_candidates").set_value(5)
    at.selectbox(key="attack_tiny_size").select("smoke")
    at.toggle(key="attack_generate").set_value(False)
    at.button[[b.label for b in at.button].index("Launch attack")].click().run()


def test_home_says_what_to_do(home):
    at = open_page()
    body = texts(at)
    assert "Threat model" in body and "Where to start" in body
    assert "ml-100k was found on this machine" in body  # BADREC_DATA_DIRS points at ../shared/data


def test_dataset_import_ml100k_and_statistics(home):
    at = open_page("dataset")
    assert at.selectbox(key="dataset_builtin").value == "ml-100k"
    at.button(key="dataset_import").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "943" and metrics["Items"] == "1,682" and metrics["Interactions"] == "100,000"
    assert at.selectbox(key="shared_dataset_widget").value == "ml-100k"
    at.text_input(key="dataset_search").input("star wars").run()
    found = at.dataframe[-1].value
    assert found["title"].str.contains("Star Wars").all() and len(found) >= 1


def test_dataset_page_lists_downloadable_builtins(home):
    at = open_page("dataset")
    at.selectbox(key="dataset_builtin").select("steam").run()
    assert at.button(key="dataset_import")  # offered; the warning says where it comes from
    overview = at.dataframe[0].value
    assert set(overview["name"]) >= {"ml-100k", "ml-1m", "lastfm-2k", "steam"}


def test_triggers_preview_and_saved_set(synthetic_store):
    at = open_page("triggers")
    at.selectbox(key="triggers_level").select("word").run()
    at.selectbox(key="triggers_preset").select("(custom)").run()
    at.text_input(key="triggers_custom").input("zyxwv").run()
    at.radio(key="triggers_position").set_value("prefix").run()
    preview = frame(at, "original", "with trigger")
    assert (preview["with trigger"] == "zyxwv " + preview["original"]).all()
    at.button(key="triggers_add").click().run()
    at.text_input(key="triggers_set_name").input("my set").run()
    at.button(key="triggers_save").click().run()
    assert not at.exception
    assert synthetic_store.trigger_sets() == {"my set": [{"text": "zyxwv", "level": "word", "position": "prefix",
                                                          "seed": 0}]}
    agent = frame(at, "trigger", "family", "example")
    assert len(agent) == 12 and set(agent["family"]) == {"char", "word", "sentence"}


def test_triggers_rejects_a_too_long_trigger(synthetic_store):
    at = open_page("triggers")
    at.selectbox(key="triggers_preset").select("(custom)").run()
    at.text_input(key="triggers_custom").input("x" * 81).run()
    assert any("limit is 80" in e.value for e in at.error)


def test_compare_side_by_side_highlights_triggered_item(synthetic_store):
    seed_attack_run(synthetic_store)
    at = open_page("compare")
    assert at.selectbox(key="compare_user").value == "u1"  # the user where the trigger wins comes first
    assert at.selectbox(key="compare_left").value == "no_trigger"
    first = frame(at, "rank_change").iloc[0]
    assert first["title"] == "Movie 9 5v" and bool(first["is_attack_item"]) and first["rank_change"] == 2
    assert "Attacker's item at rank 1: Movie 9 5v" in texts(at)
    ranks = frame(at, "inserted_with_trigger").set_index("model")
    assert ranks.loc["poisoned", "inserted_with_trigger"] == "1" and ranks.loc["clean", "inserted_with_trigger"] == "3"
    at.selectbox(key="compare_user").select("u2").run()
    assert "Attacker's item at rank 3: Movie 9 5v" in texts(at)
    at.radio(key="compare_model").set_value("clean").run()
    assert at.selectbox(key="compare_left").value == "clean"
    assert frame(at, "rank_change").iloc[0]["title"] == "Movie 7"
    assert {m.label for m in at.metric} >= {"ASR", "HR@1 clean model"}


def test_scanner_threshold_moves_metrics_and_filters(synthetic_store):
    seed_scan(synthetic_store)
    at = open_page("scanner")
    before = {m.label: m.value for m in at.metric}
    at.slider(key="scanner_threshold").set_value(0.9).run()
    after = {m.label: m.value for m in at.metric}
    assert int(after["Flagged"]) < int(before["Flagged"])
    assert float(after["Precision"]) >= float(before["Precision"])
    table = frame(at, "span", "score")
    # flagged: at or above the threshold, or carrying the recurring trigger (all 30 "cf" items, whatever their score)
    assert ((table["score"] >= 0.9) | table["campaign"].notna()).all()
    assert (table["campaign"] == "cf").sum() == 30 and float(after["Recall"]) == 1.0
    assert frame(at, "trigger")[["trigger", "items", "poisoned"]].values.tolist() == [["cf", 30, 30]]
    at.text_input(key="scanner_search").input("cf").run()
    at.selectbox(key="scanner_show").select("all").run()
    table = frame(at, "span", "score")
    assert len(table) == 30 and table["title"].str.endswith(" cf").all()


def test_scanner_shows_the_unicode_reason_as_plain_text(synthetic_store):
    """A title flagged by Unicode hygiene shows its reason next to it and stays flagged at any threshold."""
    seed_scan(synthetic_store)
    hidden = "Title\u200b7 <b>x</b>"
    with synthetic_store.connect(write=True) as con:
        con.execute("UPDATE scan_results SET title = ?, score = 0.99, reason = ? WHERE item_id = '7'",
                    [hidden, "contains U+200B ZERO WIDTH SPACE"])
    at = open_page("scanner")
    assert at.checkbox(key="scanner_unicode").value is True
    at.slider(key="scanner_threshold").set_value(1.0).run()
    table = frame(at, "reason", "score")
    row = table[table["item_id"] == "7"].iloc[0]
    assert row["title"] == hidden and row["reason"] == "contains U+200B ZERO WIDTH SPACE"
    assert set(table["item_id"]) == {"7"} | set(table.loc[table["campaign"].notna(), "item_id"])
    assert int({m.label: m.value for m in at.metric}["Flagged"]) == len(table)
    assert "<b>x</b>" not in "".join(str(m.value) for m in at.markdown)  # data is never rendered as markup


def test_reports_lists_runs_and_exports(synthetic_store, downloads):
    seed_attack_run(synthetic_store)
    seed_scan(synthetic_store)
    at = open_page("reports")
    assert at.selectbox(key="reports_run").value == "attack-seeded"
    assert "kaleido" in texts(at)
    report = download(at, downloads, "reports_report").decode()
    assert "attack-seeded" in report and "Plotly.newPlot" in report
    metrics = pd.read_csv(io.BytesIO(download(at, downloads, "reports_metrics_csv")))
    assert set(metrics["name"]) == {"hr@1", "asr"}
    scan = pd.read_parquet(io.BytesIO(download(at, downloads, "reports_scan_parquet")))
    assert len(scan) == 300 and scan["title"].str.startswith("'=Title").all()  # formula-safe
    assert report.count("Plotly.newPlot") == 2 and report.count("plotly.js v") == 1  # metrics, loss; library once
    charts = at.get("plotly_chart")  # the camera icon saves PNG at report resolution; no per-plot HTML
    assert charts and all(json.loads(c.proto.config)["toImageButtonOptions"]["scale"] == 3 for c in charts)
    assert not [b.key for b in at.get("download_button") if b.key.endswith("_html")]


def test_scanner_exports_flagged_items_at_the_threshold(synthetic_store, downloads):
    seed_scan(synthetic_store)
    at = open_page("scanner")
    at.slider(key="scanner_threshold").set_value(0.7).run()
    exported = pd.read_csv(io.BytesIO(download(at, downloads, "scanner_export")))
    assert len(exported) == int({m.label: m.value for m in at.metric}["Flagged"])
    assert ((exported["score"] >= 0.7) | exported["campaign"].notna()).all()
    assert exported["title"].str.startswith("'=").all()


def test_dataset_upload_with_mapping_imports_catalog(home):
    at = open_page("dataset")
    raw = b"sku,name,poisoned\n1,Alpha (1999),0\n2,=cmd|' /C calc'!A0,0\n3,Gamma 5v,1\n"
    at.file_uploader(key="dataset_upload").upload("shop.csv", raw, "text/csv").run()
    at.selectbox(key="dataset_map_item_id").select("sku")
    at.selectbox(key="dataset_map_title").select("name")
    at.selectbox(key="dataset_map_label").select("poisoned")
    at.text_input(key="dataset_upload_name").input("shop")
    at.button[[b.label for b in at.button].index("Import")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("start with = + - or @" in w.value for w in at.warning)
    assert "Imported as shop." in texts(at)
    store = Store(home / "badrec.duckdb")
    assert store.load_items("shop")["title"].tolist()[1] == "=cmd|' /C calc'!A0"  # stored verbatim, as text


def test_dataset_bad_upload_shows_error_and_writes_nothing(home):
    at = open_page("dataset")
    at.file_uploader(key="dataset_upload").upload("bad.csv", b"id,title\n1,A\n1,B\n", "text/csv").run()
    at.button[[b.label for b in at.button].index("Import")].click().run()
    assert any("conflicting titles" in e.value for e in at.error)
    assert Store(home / "badrec.duckdb").list_datasets().empty


def wait_jobs(store: Store, timeout: float = 1200) -> None:
    """Poll the store (as the page's live panel does) until no job is queued or running."""
    deadline = time.monotonic() + timeout
    while len(store.active_runs()):
        assert time.monotonic() < deadline, "job did not finish in time"
        time.sleep(0.5)


def tiny_scan_settings(at: AppTest) -> None:
    """The Scanner page's smallest training (seconds): the mini scanner, no rounds, no baselines, one epoch, 50 titles,
    2 cross-fitting folds."""
    at.selectbox(key="scanner_model").select("mini")
    at.number_input(key="scanner_rounds").set_value(0)
    at.multiselect(key="scanner_methods").set_value([])
    at.number_input(key="scanner_epochs").set_value(1)
    at.number_input(key="scanner_triggers").set_value(12)
    at.number_input(key="scanner_max_titles").set_value(50)
    at.number_input(key="scanner_folds").set_value(2)
    at.toggle(key="scanner_spans").set_value(False).run()


def test_scanner_runs_a_tiny_scan_job(synthetic_store):
    """The job's id is the scan's id from queue to result; the Results box moves to a newly finished scan by
    itself and names it readably; the panel says "nothing running" once, not once per job kind."""
    at = open_page("scanner")
    assert texts(at).count("No job of this kind is queued or running.") == 1
    at.radio(key="scanner_source").set_value("dataset").run()
    tiny_scan_settings(at)
    at.number_input(key="scanner_probes").set_value(4).run()
    assert re.search(r"Time before launch\*\*: scan about .+ here: scanner \d+ (s|min) · scoring", texts(at))
    at.button(key="scanner_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wait_jobs(synthetic_store)
    job = synthetic_store.list_runs("scan").iloc[0]
    assert job["status"] == "done", job["error"]
    assert at.success[0].value == f"Queued {job['run_id']}."
    at.run()
    scan_id = json.loads(job["result"])["scan_id"]
    assert scan_id == job["run_id"] and synthetic_store.scan_row(scan_id) is not None
    assert json.loads(job["result"])["crossfit_folds"] == 2  # the Advanced fields reached the scan
    assert json.loads(job["config"])["scanner"]["frozen"]["probes_per_title"] == 4
    assert at.selectbox(key="scanner_scan").value == scan_id
    assert f"Scan id `{scan_id}`" in texts(at)
    label = at.selectbox(key="scanner_scan").options[0]
    assert label.startswith("dataset synthetic · ") and label.endswith(" · mini scanner") and "scan-" not in label
    assert "scanner cached (skipped)" in texts(at)  # the same settings again: only scoring is left
    at.button(key="scanner_start").click().run()  # a second scan (cached scanner): the box moves to it
    wait_jobs(synthetic_store)
    second = synthetic_store.list_runs("scan").iloc[0]["run_id"]
    at.run()
    assert second != scan_id and at.selectbox(key="scanner_scan").value == second
    assert {m.label: m.value for m in at.metric}["Items"] == "60"
    at.selectbox(key="scanner_show").select("all").run()
    assert len(frame(at, "span", "score")) == 60
    rows = synthetic_store.scan_results(scan_id)  # a clean catalog: the cross-fitted threshold flags none of it,
    assert not rows["flagged"].any() and rows["span"].isna().all()  # and with spans off no row carries a span
    assert "expected FPR on clean titles" in " ".join(c.value for c in at.caption)  # the calibration is shown


@pytest.mark.parametrize("name, raw, line", [
    ("empty.csv", b"", "file is empty"),
    ("binary.csv", b"item_id,title\n1,\x00\x01\x02\n", "binary"),
    ("columns.csv", b"sku;price\n1;2\n", "no item_id column"),
])
def test_scanner_refuses_a_bad_upload_before_any_job(synthetic_store, name, raw, line):
    at = open_page("scanner")
    at.radio(key="scanner_source").set_value("catalog").run()
    at.file_uploader(key="scanner_upload").upload(name, raw, "text/csv").run()
    assert len(at.error) == 1 and at.error[0].value.startswith(f"{name}: ") and line in at.error[0].value
    assert "\n" not in at.error[0].value
    assert at.button(key="scanner_start").disabled  # nothing can be queued with it
    assert synthetic_store.list_runs("scan").empty and not (synthetic_store.path.parent / "uploads").exists()


def test_scanner_accepts_an_odd_encoding_with_one_warning_and_keeps_the_file_name(synthetic_store):
    at = open_page("scanner")
    at.radio(key="scanner_source").set_value("catalog").run()
    raw = "item_id,title\n1,Amélie (2001)\n2,Léon (1994)\n".encode("utf-16")
    at.file_uploader(key="scanner_upload").upload("films.csv", raw, "text/csv").run()
    assert not at.error and [w.value for w in at.warning] == ["films.csv: file is UTF-16; decoded (UTF-8 is the "
                                                              "usual encoding)"]
    assert not at.button(key="scanner_start").disabled


def test_scanner_hides_no_scan_yet_while_a_scan_runs(synthetic_store):
    import threading

    from core.runs.jobs import JobManager

    at = open_page("scanner")
    assert "No scan yet" in texts(at)
    release = threading.Event()
    manager = JobManager(Store(synthetic_store.path), min_interval_s=0.0)
    run_id = manager.submit("scan", "synthetic", {}, lambda progress, rid: release.wait(60) and {})
    try:
        at.run()
        assert run_id in texts(at) and "No scan yet" not in texts(at)
        assert "No job of this kind is queued or running." not in texts(at)
    finally:
        release.set()
        manager.wait(run_id, timeout=60)
        manager.shutdown()


def test_attack_launches_a_tiny_run_and_compare_shows_it(synthetic_store):
    at = open_page("attack")
    at.text_input(key="attack_target_search").input("Movie B1").run()
    at.multiselect(key="attack_targets").select("1").run()  # "Movie B1 (1981)"
    assert at.radio(key="attack_mix").value == "shuffled"
    at.radio(key="attack_mix").set_value("paired").run()
    at.number_input(key="attack_seed").set_value(3)
    at.number_input(key="attack_lora_layers").set_value(1)
    launch_smallest_attack(at, eval_users=4)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Queued attack-") for s in at.success)
    wait_jobs(synthetic_store)
    run = synthetic_store.list_runs("attack").iloc[0]
    assert run["status"] == "done", run["error"]
    config = json.loads(run["config"])
    assert config["poison_ratio"] == 0.2 and config["target_items"] == ["1"] and config["eval_users"] == 4
    assert config["mix"] == "paired" and config["model"]["lora_layers"] == 1
    assert not synthetic_store.train_log(run["run_id"]).empty  # the live loss curve's source
    # the same choices on the command line describe the same run: a seed on either surface gives the same numbers
    args = build_parser().parse_args(
        "attack --dataset synthetic --poison-ratio 0.2 --items 1 --mix paired --epochs 0.1 --eval-users 4 "
        "--windows-per-user 1 --candidates 5 --tiny-size smoke --no-generate --seed 3 --lora-layers 1".split())
    assert config == config_from_args(args).to_dict()

    at = open_page("compare")
    assert at.selectbox(key="compare_run").value == run["run_id"]
    side = frame(at, "rank_change")
    assert len(side) == 5 and side["is_attack_item"].sum() == 1
    assert "Attacker's item at rank" in texts(at)


def test_scanner_defends_an_attack_run_in_the_background(synthetic_store):
    """'Defend the run' queues core.pscanner.defend.run_defend on a real tiny attack run; the Defences table then
    shows what it dropped and the attack's numbers before and after, as the job recorded them."""
    from tiny_helpers import tiny_attack

    from core.attack.experiment import run_attack

    attack = run_attack(synthetic_store, tiny_attack())
    at = open_page("scanner")
    assert at.button(key="scanner_defend").disabled  # only a run can be defended
    at.radio(key="scanner_source").set_value("run").run()
    at.selectbox(key="scanner_run").select(attack["run_id"])
    tiny_scan_settings(at)
    at.button(key="scanner_defend").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wait_jobs(synthetic_store)
    job = synthetic_store.list_runs("defend").iloc[0]
    assert job["status"] == "done", job["error"]
    result = json.loads(job["result"])
    at.run()
    table = frame(at, "asr before", "asr after")
    assert table["attack run"].tolist() == [attack["run_id"]]
    assert table["asr before"].iloc[0] == pytest.approx(attack["poisoned"]["asr"])
    assert table["asr after"].iloc[0] == pytest.approx(result["after"]["asr"])
    assert table["flagged"].iloc[0] == result["detection"]["n_flagged"] == len(result["dropped"])


# -- issue 15: attack form, run history, Compare, one progress bar per job ------------------------------------
def seed_ranked_run(store: Store, run_id: str = "attack-ranked") -> str:
    """A finished smoke-size, reduced run laid out as core.attack.experiment records one: for test users 100, 10, 2
    and 1, top 10 of 20 candidates per list plus the attacker's item ("9") at its real rank below the top.
    Poisoned model: with the trigger, user 2's list puts item 9 first, user 1's moves it from 14 to 12;
    users 10 and 100 get the same list with and without the trigger."""
    from core.attack.badrec import AttackConfig
    from core.lm.tinylm import SIZES

    config = AttackConfig(dataset="synthetic", tiny=SIZES["smoke"], eval_users=4).to_dict()
    store.create_run(run_id, "attack", "synthetic", config, 0, {})
    lists = [("clean", "clean"), ("clean", "trigger"), ("poisoned", "clean"), ("poisoned", "trigger"),
             ("poisoned", "no_trigger"), ("poisoned", "transfer")]
    rows = []
    for user in ("100", "10", "2", "1"):
        for model, variant in lists:
            order = [str(i) for i in range(20) if i != 9]
            at = {("2", "trigger"): 0, ("1", "trigger"): 11}.get((user, variant), 13) if model == "poisoned" else 13
            order.insert(at, "9")
            for rank, item in enumerate(order, 1):
                if rank <= 10 or item == "9":
                    title = f"Movie {item}" + (" 5v" if item == "9" and variant == "trigger" else "")
                    rows.append((run_id, model, variant, user, rank, item, title, -float(rank), item == "9",
                                 item == "3"))
    recs = pd.DataFrame(rows, columns=["run_id", "model", "variant", "user_id", "rank", "item_id", "title", "score",
                                       "is_attack_item", "is_target"])
    from core.metrics import rate_intervals
    clean, poisoned = {"hr@1": 0.25}, {"hr@1": 0.5, "asr": 0.25}
    intervals = rate_intervals({"hr@1": [1, 0, 0, 0]}, {"hr@1": [1, 1, 0, 0], "asr": [0, 0, 1, 0]})
    store.finish_run(run_id, {"n_test_users": 4, "poisoning": {"n_poison_samples": 7, "poison_ratio_actual": 0.0125},
                              "clean": clean, "poisoned": poisoned, "intervals": intervals},
                     {"seconds": 1}, {"clean": clean, "poisoned": poisoned}, {"recommendations": recs})
    return run_id


def test_compare_numeric_users_changed_filter_toy_label_and_rank_below_the_top(synthetic_store):
    run_id = seed_ranked_run(synthetic_store)
    at = open_page("compare")
    warnings = " ".join(w.value for w in at.warning)
    assert "Toy victim" in warnings and "Reduced run: only the first 4 test users" in warnings
    assert at.selectbox(key="compare_user").options == ["user 1 · list changed", "user 2 · trigger wins · list "
                                                        "changed", "user 10", "user 100"]
    assert "Attacker's item at rank 12 (below the top 10, shown after it): Movie 9 5v" in texts(at)
    side = frame(at, "rank_change")
    assert side["rank"].tolist() == [*range(1, 11), 12] and side["rank_change"].iloc[-1] == 2
    ranks = frame(at, "inserted_with_trigger").set_index("model")
    assert ranks.loc["poisoned", "inserted_without_trigger"] == "14" and ranks.loc["clean", "clean_candidates"] == "14"
    at.radio(key="compare_filter").set_value("changed").run()
    assert [o.split(" ·")[0] for o in at.selectbox(key="compare_user").options] == ["user 1", "user 2"]
    at.radio(key="compare_filter").set_value("hit").run()
    assert at.selectbox(key="compare_user").value == "2"
    assert "Attacker's item at rank 1: Movie 9 5v" in texts(at)
    ci = frame(at, "difference 95 % CI").set_index("metric")  # 4 users: every interval is wide, and says so
    assert ci.loc["ASR", "poisoned"] == 0.25 and ci.loc["ASR", "poisoned 95 % CI"] == "0.046 to 0.699"
    assert ci.loc["HR@1", "poisoned − clean"] == 0.25 and ci.loc["ASR", "difference 95 % CI"] == ""
    from core.views.reports import run_report_html
    report = run_report_html(synthetic_store, run_id).decode()
    assert "Toy victim" in report and "Reduced run" in report and "0.046 to 0.699" in report


def test_compare_history_breaks_time_ties_as_the_protocol_does(store):
    """User 100 chose items 10 and then 9 at the same second (file order): the protocol holds out 9 as the test
    item; the History panel lists 9 first and the lists highlight 9 (item-id order would put 10 first)."""
    from core.data.dataset import load_dataset
    from core.data.protocol import ProtocolConfig, build_split

    base = make_synthetic()
    ties = pd.DataFrame([("100", item, ts, 4.0) for item, ts in
                         (("1", 10), ("2", 20), ("3", 30), ("4", 40), ("5", 50), ("10", 60), ("9", 60))],
                        columns=["user_id", "item_id", "ts", "rating"])
    store.save_dataset("synthetic", "test", "interactions", base.items, pd.concat([base.interactions, ties]), [])
    split = build_split(load_dataset(store, "synthetic"), ProtocolConfig(n_candidates=5))
    case = next(c for c in split.test if c.user == "100")
    test_item = split.item_ids[case.target]
    assert test_item == "9"
    rows = [("attack-ties", m, v, "100", rank, split.item_ids[c], split.titles[c], -float(rank), False, c == case.target)
            for m, v in (("poisoned", "trigger"), ("poisoned", "no_trigger"))
            for rank, c in enumerate(case.candidates, 1)]
    recs = pd.DataFrame(rows, columns=["run_id", "model", "variant", "user_id", "rank", "item_id", "title", "score",
                                       "is_attack_item", "is_target"])
    store.create_run("attack-ties", "attack", "synthetic", {"poison_ratio": 0.01}, 0, {})
    store.finish_run("attack-ties", {}, {}, {"poisoned": {"asr": 0.0}}, {"recommendations": recs})
    at = open_page("compare")
    history = frame(at, "role", "title")
    assert history.iloc[0]["role"] == "test item (held out)" and history.iloc[0]["title"] == split.titles[case.target]
    highlighted = frame(at, "rank_change")
    assert highlighted[highlighted["is_target"]]["title"].tolist() == [split.titles[case.target]]


def test_compare_opens_the_run_named_in_the_address(synthetic_store):
    seed_attack_run(synthetic_store, "attack-old")
    time.sleep(0.01)
    seed_ranked_run(synthetic_store, "attack-new")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.query_params["run"] = "attack-old"
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="compare_run").value == "attack-old"


def test_attack_saved_trigger_fixes_the_fields_and_drives_the_run(synthetic_store):
    synthetic_store.save_trigger_set("mine", [{"text": "zorblat", "level": "word", "position": "suffix", "seed": 0}])
    at = open_page("attack")
    at.selectbox(key="attack_saved_trigger").select("mine: zorblat (word, suffix)").run()
    level, text, position = (at.selectbox(key="attack_level"), at.text_input(key="attack_trigger"),
                             at.radio(key="attack_position"))
    assert (level.value, text.value, position.value) == ("word", "zorblat", "suffix")
    assert level.disabled and text.disabled and position.disabled
    launch_smallest_attack(at, eval_users=2)
    assert not at.exception and not at.error, [e.value for e in at.error]
    run = synthetic_store.list_runs("attack").iloc[0]
    assert json.loads(run["config"])["trigger"] == {"text": "zorblat", "level": "word", "position": "suffix", "seed": 0}
    wait_jobs(synthetic_store)
    run = synthetic_store.list_runs("attack").iloc[0]
    assert run["status"] == "done", run["error"]
    titles = synthetic_store.query("SELECT title FROM poison_records WHERE run_id = ? AND title IS NOT NULL",
                                   [run["run_id"]])["title"]
    assert len(titles) and titles.str.endswith(" zorblat").all()
    at.selectbox(key="attack_saved_trigger").select("(set here)").run()  # editable again, showing the same values
    assert not at.selectbox(key="attack_level").disabled and at.selectbox(key="attack_level").value == "word"


def test_one_default_trigger_position_and_model_id_only_when_it_applies(synthetic_store):
    from core.attack.badrec import AttackConfig
    from core.cli.main import build_parser

    default = AttackConfig().trigger.position
    cli = build_parser().parse_args(["attack"]).trigger_position
    at = open_page("attack")
    assert at.radio(key="attack_position").value == default == cli
    assert open_page("triggers").radio(key="triggers_position").value == default
    assert not [t for t in at.text_input if t.key == "attack_model_id"]  # tiny: no model id to type
    assert [s for s in at.selectbox if s.key == "attack_tiny_size"]
    at.selectbox(key="attack_model_kind").select("Hugging Face id or local folder").run()
    assert at.text_input(key="attack_model_id").label == "Model id or path"
    assert not [s for s in at.selectbox if s.key == "attack_tiny_size"]  # the tiny model's size no longer applies
    at.radio(key="attack_victim").set_value("tallrec").run()
    assert not [t for t in at.toggle if t.key == "attack_generate"]  # generate mode is LLaRA's


def test_attack_run_history_shows_headline_metrics_and_opens_compare_and_reports(synthetic_store):
    seed_ranked_run(synthetic_store, "attack-ranked")
    at = open_page("attack")
    history = frame(at, "asr", "hr1_clean", "hr1_poisoned", "rho", "n_poison_samples").set_index("run_id")
    assert history.loc["attack-ranked", ["asr", "hr1_clean", "hr1_poisoned", "rho", "n_poison_samples"]].tolist() == \
        [0.25, 0.25, 0.5, 0.0125, 7]
    at.button(key="attack_open_compare").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="compare_run").value == "attack-ranked"
    at = open_page("attack")
    at.button(key="attack_open_reports").click().run()
    assert at.selectbox(key="reports_run").value == "attack-ranked"


def test_attack_monitor_shows_one_bar_over_the_job_stages(synthetic_store):
    """A job with three stages, paused in the second: the live panel reads "stage 2/3: poisoned model, epoch
    1/1, step 40/119, ETA ... overall" and its bar is past the first stage, not restarted at 34 %."""
    import threading

    from core.runs.jobs import JobManager

    release, reached = threading.Event(), threading.Event()

    def job(progress, run_id):
        progress.stages(["clean model", "poisoned model", "evaluation"], [119, 119, 40])
        for name in ("clean model", "poisoned model"):
            progress.stage(name, epochs=1.0)
            for step in range(1, 120 if name == "clean model" else 41):
                time.sleep(0.005)
                progress.update(step, 119, f"{name}: loss 1.000, 900 tok/s")
        reached.set()
        release.wait(600)  # held in stage 2 until the page has been read, however slow the machine
        return {}

    at = open_page("attack")  # first: the page's own job manager marks runs of no live process as failed
    manager = JobManager(Store(synthetic_store.path), min_interval_s=0.0)
    run_id = manager.submit("attack", "synthetic", {}, job)
    try:
        assert reached.wait(600)  # 160 progress writes to DuckDB: seconds here, minutes on a loaded CI machine
        at.run()
        message = synthetic_store.get_run(run_id)["message"]
        assert message.startswith("stage 2/3: poisoned model, epoch 1/1, step 40/119, ETA ") and " overall" in message
        assert message in texts(at)
        bar = [p.value for p in at.get("progress")]
        assert len(bar) == 1 and 40 <= bar[0] <= 70, bar  # past the clean model's stage, far from done
    finally:
        release.set()
        manager.wait(run_id, timeout=60)
        manager.shutdown()


def test_a_real_run_shows_its_stages_and_keeps_the_attackers_rank_below_the_top(synthetic_store):
    """A smoke-size run launched from the page: while it runs, its row reads "stage i/n: ..., ETA ... overall";
    when done, every list with the attacker's item inserted holds that item's row even where it ranks below the
    stored top 10, and Compare shows that rank."""
    import re

    at = open_page("attack")
    at.number_input(key="attack_ratio").set_value(0.2)
    at.number_input(key="attack_epochs").set_value(0.1)
    at.number_input(key="attack_eval_users").set_value(4)
    at.number_input(key="attack_windows").set_value(1)
    at.number_input(key="attack_candidates").set_value(20)
    at.selectbox(key="attack_tiny_size").select("smoke")
    at.toggle(key="attack_generate").set_value(False)
    at.button[[b.label for b in at.button].index("Launch attack")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    messages: set[str] = set()
    deadline = time.monotonic() + 1200
    while len(active := synthetic_store.active_runs()):
        assert time.monotonic() < deadline, "job did not finish in time"
        messages.update(m for m in active["message"] if m)
        time.sleep(0.2)
    run = synthetic_store.list_runs("attack").iloc[0]
    assert run["status"] == "done", run["error"]
    # (steps of the smoke model take milliseconds: the page's 0.5 s writes catch the longer stages; the
    # training stages' labels are checked on the CLI's bar in test_progress.py)
    # (the first stage may finish before it has a rate to estimate from: "ETA estimating" is right there)
    assert any(m.startswith("stage 1/") for m in messages), messages
    assert any(re.match(r"stage \d/\d: .+, ETA \d.* overall", m) for m in messages), messages
    assert not any(re.search(r"epoch [2-9]", m) for m in messages)
    recs = synthetic_store.query("SELECT * FROM recommendations WHERE run_id = ?", [run["run_id"]])
    inserted = recs[recs["variant"] != "clean"]
    per_list = inserted.groupby(["model", "variant", "user_id"])["is_attack_item"].sum()
    assert len(per_list) == 2 * 3 * 4 and (per_list >= 1).all()  # each model: 3 attack variants; 4 users
    below = inserted[inserted["is_attack_item"] & (inserted["rank"] > 10)]
    assert len(below) and (recs[~recs["is_attack_item"]]["rank"] <= 10).all()
    right = below[below["variant"] != "no_trigger"]
    model, variant, user, rank = (right if len(right) else below).sort_values(["model", "variant", "user_id"]).iloc[0][
        ["model", "variant", "user_id", "rank"]]
    at = open_page("compare")
    at.radio(key="compare_model").set_value(model).run()
    if variant == "no_trigger":  # the left list of the poisoned model: the row closes the list
        at.selectbox(key="compare_user").select(user).run()
        shown = frame(at, "title", "is_attack_item")
        assert shown[shown["is_attack_item"]]["rank"].max() == rank > 10
    else:
        at.selectbox(key="compare_right").select(variant).run()
        at.selectbox(key="compare_user").select(user).run()
        assert f"Attacker's item at rank {rank} (below the top 10, shown after it)" in texts(at)
    ranks = frame(at, "inserted_with_trigger").set_index("model")
    column = {"trigger": "inserted_with_trigger", "no_trigger": "inserted_without_trigger",
              "transfer": "trigger_on_other_item"}[variant]
    assert ranks.loc[model, column] != "> 10"  # a real rank (the best-placed attacker's item of that list)


def test_attack_resumes_an_interrupted_run_from_its_checkpoint(store, monkeypatch):
    """A run cancelled mid-way through its poisoned model is listed under "Interrupted runs"; Resume queues it
    in the background under its own id and it finishes from the checkpoint (issue 14 item 4)."""
    from tiny_helpers import synthetic_store, tiny_attack

    from core.attack.experiment import run_attack
    from core.lm.train import TrainConfig
    from core.progress import CallbackProgress, Cancelled

    monkeypatch.setenv("BADREC_CHECKPOINT_S", "0")  # a checkpoint after every step
    synthetic_store(store)
    cancel = CallbackProgress(lambda *a: None)

    def stop_mid_poisoning(done, total, message, eta):
        if message.startswith("poisoned model") and done >= 3:
            cancel.cancel.set()
    cancel.fn = stop_mid_poisoning
    with pytest.raises(Cancelled):
        run_attack(store, tiny_attack(train=TrainConfig(epochs=1, batch_size=4, max_len=256)), cancel,
                   run_id="attack-stopped")
    at = open_page("attack")
    assert "Interrupted runs" in texts(at) and at.selectbox(key="attack_resume_run").value == "attack-stopped"
    at.button(key="attack_resume").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Queued attack-stopped to resume from its checkpoint." in texts(at)
    wait_jobs(store)
    run = store.get_run("attack-stopped")
    assert run["status"] == "done", run["error"]
    assert run["result"]["train"]["poisoned"]["resumed_at"] >= 3 and len(store.list_runs("attack")) == 1
    at.run()
    assert "Interrupted runs" not in texts(at)


def test_attack_form_states_its_time_before_launch_and_offers_the_quick_demo(synthetic_store):
    """The form shows the stages it will run with their expected time here; the quick demo preset fills the
    README's first-10-minutes attack, and its stated time is that estimate."""
    at = open_page("attack")
    line = next(c.value for c in at.caption if c.value.startswith("**Time before launch**"))
    assert re.search(r"about .+ here: base model .+ · clean model .+ · poisoned model .+ · evaluation ", line)
    at.button(key="attack_quick_demo").click().run()
    assert not at.exception
    values = {k: at.session_state[k] for k in ("attack_ratio", "attack_epochs", "attack_windows",
                                                "attack_candidates", "attack_history_len", "attack_eval_users")}
    assert values == {"attack_ratio": 0.3, "attack_epochs": 2.0, "attack_windows": 1, "attack_candidates": 10,
                      "attack_history_len": 5, "attack_eval_users": 20}
    assert at.selectbox(key="attack_tiny_size").value == "small" and not at.toggle(key="attack_generate").value
    demo = next(c.value for c in at.caption if c.value.startswith("**Time before launch**"))
    assert demo != line and "measured on" in demo


def test_pages_show_a_write_made_after_their_last_render(synthetic_store):
    """Pages read through results kept per database version (pages.shared.reads): a run another process
    finished after the first render is listed on the next rerun, on Compare and on Reports."""
    seed_attack_run(synthetic_store, "attack-first")
    compare = open_page("compare")
    reports = open_page("reports")
    assert compare.selectbox(key="compare_run").options == ["attack-first"]
    time.sleep(0.01)
    seed_ranked_run(Store(synthetic_store.path), "attack-second")  # its own handle, as a CLI process has
    compare.run()
    reports.run()
    assert not compare.exception and not reports.exception
    assert compare.selectbox(key="compare_run").options == ["attack-second", "attack-first"]
    assert "attack-second" in texts(reports) + " ".join(str(o) for s in reports.selectbox for o in s.options)


def test_series_names_passed_over_are_listed_for_review(store):
    """A recurring n-gram the series check passed over is not flagged, but the Scanner page lists it."""
    titles = ["Friday the 13th Part 2 (1981)", "Friday the 13th Part 3 (1982)", "Toy Story (1995)"]
    rows = pd.DataFrame({"scan_id": "scan-1", "item_id": ["1", "2", "3"], "title": titles, "score": [0.4, 0.4, 0.1],
                         "flagged": False, "method": "scanner", "span": [None] * 3,
                         "label": pd.array([None] * 3, dtype="boolean"), "campaign": [None] * 3})
    series = [{"text": "Friday the", "n_titles": 2, "median_score": 0.4, "median_without": 0.1}]
    store.create_run("scan-1", "scan", "file:c.csv", {"scanner": {"model": "mini"}}, 0, {})
    store.finish_run("scan-1", {"scanner": {"model": "mini"}}, {}, {})
    store.write_scan([rows], lambda: [{"scan_id": "scan-1", "source": "file:c.csv", "method": "scanner",
                                       "threshold": 0.9, "n_items": 3, "n_flagged": 0,
                                       "metrics": {"series_passed": series}}])
    at = open_page("scanner")
    assert "Series names passed over (1)" in [e.label for e in at.expander]
    assert frame(at, "text", "n_titles")["text"].tolist() == ["Friday the"]
