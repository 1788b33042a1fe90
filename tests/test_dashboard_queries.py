"""The store's dashboard queries: filters, sorting and limits done in SQL return the right rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.runs.store import Store


@pytest.fixture
def scan_store(store: Store) -> Store:
    n = 1000
    rng = np.random.default_rng(0)
    scores = rng.random(n)
    df = pd.DataFrame({"scan_id": "s1", "item_id": [str(i) for i in range(n)],
                       "title": [f"Title {i}" + (" 5v" if i % 10 == 0 else "") for i in range(n)],
                       "score": scores, "flagged": scores >= 0.5, "method": "pscanner",
                       "span": [" 5v" if i % 10 == 0 else None for i in range(n)], "label": [i % 10 == 0 for i in range(n)],
                       "campaign": ["5v" if i % 10 == 0 else None for i in range(n)]})
    with store.connect(write=True) as con:
        con.register("df", df)
        con.execute("INSERT INTO scan_results BY NAME SELECT * FROM df")
    return store


def test_scan_page_filters_sorts_and_limits(scan_store):
    page = scan_store.scan_results_page("s1", limit=10)
    assert len(page) == 10 and page["score"].is_monotonic_decreasing
    asc = scan_store.scan_results_page("s1", sort="score", descending=False, limit=5)
    assert asc["score"].is_monotonic_increasing
    flagged = scan_store.scan_results_page("s1", flagged=True, limit=2000)
    assert flagged["flagged"].all() and len(flagged) == scan_store.scan_results_count("s1", flagged=True)
    # at a threshold, "flagged" = score >= it, or carrying a recurring trigger (a campaign)
    at_09 = scan_store.scan_results_count("s1", flagged=True, threshold=0.9)
    every = scan_store.scan_scores("s1")
    assert at_09 == int(((every["score"] >= 0.9) | every["campaign"].notna()).sum()) > 100
    campaigns = scan_store.scan_campaigns("s1")
    assert campaigns[["trigger", "items", "poisoned"]].values.tolist() == [["5v", 100, 100]]
    hits = scan_store.scan_results_page("s1", search="5V", limit=2000)
    assert len(hits) == 100 and hits["title"].str.endswith(" 5v").all()
    assert hits["marked"].str.endswith("⟦ 5v⟧").all()
    assert scan_store.scan_results_page("s1", search="17")["item_id"].str.contains("17").all()
    with pytest.raises(ValueError):
        scan_store.scan_results_page("s1", sort="score; DROP TABLE runs")


def test_search_is_a_parameter_not_sql(scan_store):
    assert scan_store.scan_results_count("s1", search="' OR 1=1 --") == 0


def test_dataset_queries(ml100k_store):
    pop = ml100k_store.item_popularity("ml-100k")
    assert len(pop) == 1682 and pop["n"].sum() == 100_000 and pop["n"].is_monotonic_decreasing
    lengths = ml100k_store.user_lengths("ml-100k")
    assert len(lengths) == 943 and lengths.min() >= 20
    found = ml100k_store.search_items("ml-100k", "usual suspects")
    assert found["title"].tolist() == ["Usual Suspects, The (1995)"]
    assert ml100k_store.sample_titles("ml-100k", 5, seed=1) == ml100k_store.sample_titles("ml-100k", 5, seed=1)
    hist = ml100k_store.user_history("ml-100k", "1", limit=5)
    assert len(hist) == 5 and hist["ts"].is_monotonic_decreasing and hist["title"].notna().all()


def test_recommendation_queries(store):
    recs = pd.DataFrame({"run_id": "r", "model": "poisoned", "variant": ["trigger"] * 2 + ["no_trigger"] * 2,
                         "user_id": ["2", "2", "10", "10"], "rank": [1, 2, 1, 2], "item_id": ["a", "b", "a", "b"],
                         "title": ["A 5v", "B", "A", "B"], "score": [0.0, -1.0, -1.0, 0.0],
                         "is_attack_item": [True, False, True, False], "is_target": [False, True, False, True]})
    store.create_run("r", "attack", "d", {"poison_ratio": 0.02}, 0, {})
    store.finish_run("r", {}, {}, {"poisoned": {"asr": 1.0}}, {"recommendations": recs})
    users = store.rec_users("r")
    assert users["user_id"].tolist() == ["2", "10"] and users["hit"].tolist() == [True, False]
    assert len(store.recommendations_for("r", "10")) == 2
    side = store.rec_side_by_side("r", "2", "poisoned")
    assert side["title"].tolist() == ["A 5v", "B"] and side["rank_change"].isna().all()  # user 2 has no baseline
    assert store.attack_item_ranks("r", "10")["inserted_without_trigger"].tolist() == [1]
    across = store.metrics_across_runs("attack")
    assert across[["run_id", "name", "value"]].values.tolist() == [["r", "asr", 1.0]]


def test_scans_listed_newest_first_each_before_its_baselines(store):
    def scans(con, scan_id, at):
        con.execute("INSERT INTO scans VALUES (?, NULL, 'x', 'm', 0.5, 1, 0, NULL, ?::TIMESTAMP)", [scan_id, at])

    with store.connect(write=True) as con:
        scans(con, "scan-old", "2026-01-01 00:00:00")
        scans(con, "scan-new", "2026-01-02 00:00:00")
        scans(con, "scan-new.tokenstats", "2026-01-02 00:00:01")
    assert store.list_scans()["scan_id"].tolist() == ["scan-new", "scan-new.tokenstats", "scan-old"]


def test_dose_points_read_rho_and_poisoned_samples_from_the_store(store):
    from core.views.reports import dose_points
    recipe = {"victim": "llara", "model": {"name": "smollm2-135m"}, "protocol": {"n_candidates": 10},
              "train": {"epochs": 1.0}}
    store.create_run("r1", "attack", "ml-100k", {"poison_ratio": 0.1, **recipe}, 0, {})
    store.finish_run("r1", {"poisoning": {"n_poison_samples": 105, "n_clean_samples": 943},
                            "intervals": {"poisoned": {"asr": [0.85, 0.93]}}}, {}, {"poisoned": {"asr": 0.9}}, {})
    store.create_run("r2", "attack", "ml-100k", {"poison_ratio": 0.01, "victim": "llara",
                                                 "model": {"name": "tiny"}}, 0, {})
    store.finish_run("r2", {}, {}, {"poisoned": {"asr": 0.0}, "clean": {"asr": 0.1}}, {})
    # the same recipe on 11x the training set: another series, not a point on r1's curve
    store.create_run("r3", "attack", "ml-100k", {"poison_ratio": 0.01, **recipe}, 0, {})
    store.finish_run("r3", {"poisoning": {"n_poison_samples": 105, "n_clean_samples": 10373}}, {},
                     {"poisoned": {"asr": 0.155}}, {})
    points = dose_points(store.metrics_across_runs("attack"), "asr").sort_values("run_id")
    assert points[["run_id", "poison_ratio", "value", "series"]].values.tolist() == [
        ["r1", 0.1, 0.9, "ml-100k · llara · smollm2-135m · 10 candidates · 943 clean samples · 1 epoch"],
        ["r2", 0.01, 0.0, "ml-100k · llara · tiny"],  # a run that recorded no recipe keeps the short label
        ["r3", 0.01, 0.155, "ml-100k · llara · smollm2-135m · 10 candidates · 10,373 clean samples · 1 epoch"]]
    assert points["n_poison_samples"].tolist()[0] == 105 and points["n_poison_samples"].isna().tolist()[1]
    assert points["n_clean_samples"].tolist()[2] == 10373
    assert points["low"].tolist()[0] == 0.85 and points["high"].isna().tolist() == [False, True, True]


def test_user_history_breaks_time_ties_as_the_protocol_does(ml100k_store):
    """ml-100k has users with several ratings in one second (user 100: 891375630 twice); a user's history as the
    Compare page shows it (11 newest) is the end of the protocol's sequence reversed, so its newest row is the
    held-out test item, for every user whose newest ratings share a second."""
    from core.data.dataset import Dataset
    from core.data.protocol import ProtocolConfig, build_split

    ds = Dataset("ml-100k", ml100k_store.load_items("ml-100k"), ml100k_store.load_interactions("ml-100k"))
    split = build_split(ds, ProtocolConfig())
    last = ds.interactions.groupby("user_id")["ts"].transform("max") == ds.interactions["ts"]
    tied = ds.interactions[last].groupby("user_id").size()
    tied = sorted(tied[tied > 1].index, key=int)
    assert "100" in tied and len(tied) > 20
    for user in tied[:25] + ["100"]:  # one query each: a sample keeps this test short on a busy CPU
        history = ml100k_store.user_history("ml-100k", user, limit=11)
        assert history["item_id"].tolist()[::-1] == [split.item_ids[i] for i in split.sequences[user][-11:]], user
    test_100 = next(c for c in split.test if c.user == "100")
    assert ml100k_store.user_history("ml-100k", "100", limit=1)["item_id"].iloc[0] == split.item_ids[test_100.target]


def test_rec_users_numeric_order_and_changed_lists(store):
    rows = []
    for user in ("100", "10", "2", "1", "x"):
        for variant in ("no_trigger", "trigger"):
            order = ["b", "a"] if user == "2" and variant == "trigger" else ["a", "b"]
            rows += [("r", "poisoned", variant, user, rank, item, item, 0.0, item == "a", False)
                     for rank, item in enumerate(order, 1)]
    recs = pd.DataFrame(rows, columns=["run_id", "model", "variant", "user_id", "rank", "item_id", "title", "score",
                                       "is_attack_item", "is_target"])
    store.create_run("r", "attack", "d", {}, 0, {})
    store.finish_run("r", {}, {}, {}, {"recommendations": recs})
    users = store.rec_users("r")
    assert users["user_id"].tolist() == ["1", "2", "10", "100", "x"]
    assert users.set_index("user_id")["changed"].to_dict() == {"1": False, "2": True, "10": False, "100": False,
                                                               "x": False}
    assert users.set_index("user_id")["hit"].to_dict()["1"] and not users.set_index("user_id")["hit"].to_dict()["2"]


def test_attack_history_has_the_headline_numbers(store):
    store.create_run("a1", "attack", "ml-100k", {"poison_ratio": 0.01, "model": {"name": "tiny"}}, 0, {})
    store.finish_run("a1", {"poisoning": {"n_poison_samples": 19, "poison_ratio_actual": 0.0099}}, {},
                     {"clean": {"hr@1": 0.3, "asr": 0.01}, "poisoned": {"hr@1": 0.29, "asr": 0.4}}, {})
    store.create_run("a2", "attack", "ml-100k", {"poison_ratio": 0.3, "model": {"name": "tiny"}}, 0, {},
                     status="running")
    store.create_run("s1", "scan", "ml-100k", {}, 0, {})
    history = store.attack_history().set_index("run_id")
    assert list(history.index) == ["a2", "a1"]
    assert history.loc["a1", ["asr", "hr1_clean", "hr1_poisoned", "rho", "n_poison_samples", "model"]].tolist() == \
        [0.4, 0.3, 0.29, 0.0099, 19, "tiny"]
    assert history.loc["a2", "rho"] == 0.3 and pd.isna(history.loc["a2", "asr"])  # running: the dose asked for


def test_a_dashboard_scan_is_labelled_with_the_scanner_auto_resolved_to(store):
    """The job was submitted as `auto`; its result records the base it resolved to, and that names the scan."""
    store.create_run("scan-1", "scan", "ml-100k", {"scanner": {"model": "auto"}}, 0, {})
    store.finish_run("scan-1", {"scanner": {"model": "smollm2-135m"}}, {}, {})
    store.create_run("scan-2", "scan", "ml-100k", {"scanner": {"model": "mini"}}, 0, {}, status="failed")
    store.write_scan([], lambda: [{"scan_id": s, "source": "file:c.csv", "method": "scanner", "n_items": 0,
                                   "n_flagged": 0} for s in ("scan-1", "scan-2")])
    assert store.list_scans().set_index("scan_id")["scanner_model"].to_dict() == \
        {"scan-1": "smollm2-135m", "scan-2": "mini"}
