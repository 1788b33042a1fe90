"""Every page driven headless through Streamlit's AppTest against a real DuckDB store in a temp home."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.store import Store
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
    """A finished attack run laid out as core.experiment records one (rows written through the store):
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
    assert ranks.loc["poisoned", "inserted_with_trigger"] == 1 and ranks.loc["clean", "inserted_with_trigger"] == 3
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
    assert b"<html" in download(at, downloads, "reports_loss_fig_html")[:300]


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
    """The Scanner page's smallest training (seconds): no rounds, no baselines, one epoch, 50 titles."""
    at.number_input(key="scanner_rounds").set_value(0)
    at.multiselect(key="scanner_methods").set_value([])
    at.number_input(key="scanner_epochs").set_value(1)
    at.number_input(key="scanner_triggers").set_value(12)
    at.number_input(key="scanner_max_titles").set_value(50)
    at.toggle(key="scanner_spans").set_value(False).run()


def test_scanner_runs_a_tiny_scan_job(synthetic_store):
    at = open_page("scanner")
    at.radio(key="scanner_source").set_value("dataset").run()
    tiny_scan_settings(at)
    at.button(key="scanner_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    wait_jobs(synthetic_store)
    job = synthetic_store.list_runs("scan").iloc[0]
    assert job["status"] == "done", job["error"]
    at.run()
    scan_id = json.loads(job["result"])["scan_id"]
    assert at.selectbox(key="scanner_scan").value == scan_id
    assert {m.label: m.value for m in at.metric}["Items"] == "60"
    at.selectbox(key="scanner_show").select("all").run()
    assert len(frame(at, "span", "score")) == 60
    rows = synthetic_store.scan_results(scan_id)  # spans were switched off: flagged rows carry none
    assert rows["flagged"].any() and rows["span"].isna().all()


def test_attack_launches_a_tiny_run_and_compare_shows_it(synthetic_store):
    at = open_page("attack")
    at.text_input(key="attack_target_search").input("Movie B1").run()
    at.multiselect(key="attack_targets").select("1").run()  # "Movie B1 (1981)"
    at.number_input(key="attack_ratio").set_value(0.2)
    at.number_input(key="attack_epochs").set_value(0.1)
    at.number_input(key="attack_eval_users").set_value(4)
    at.number_input(key="attack_windows").set_value(1)
    at.number_input(key="attack_candidates").set_value(5)
    at.selectbox(key="attack_tiny_size").select("smoke")
    at.toggle(key="attack_generate").set_value(False)
    at.button[[b.label for b in at.button].index("Launch attack")].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Queued attack-") for s in at.success)
    wait_jobs(synthetic_store)
    run = synthetic_store.list_runs("attack").iloc[0]
    assert run["status"] == "done", run["error"]
    config = json.loads(run["config"])
    assert config["poison_ratio"] == 0.2 and config["target_items"] == ["1"] and config["eval_users"] == 4
    assert not synthetic_store.train_log(run["run_id"]).empty  # the live loss curve's source

    at = open_page("compare")
    assert at.selectbox(key="compare_run").value == run["run_id"]
    side = frame(at, "rank_change")
    assert len(side) == 5 and side["is_attack_item"].sum() == 1
    assert "Attacker's item at rank" in texts(at)


def test_scanner_defends_an_attack_run_in_the_background(synthetic_store):
    """'Defend the run' queues core.defend.run_defend on a real tiny attack run; the Defences table then
    shows what it dropped and the attack's numbers before and after, as the job recorded them."""
    from core.experiment import run_attack
    from tiny_helpers import tiny_attack

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
