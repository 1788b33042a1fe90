"""The evaluation protocol on the real ml-100k: no leakage, well-formed candidates, seeded, sane baselines."""

from __future__ import annotations

import pandas as pd
import pytest

from core.data.dataset import Dataset
from core.data.protocol import ProtocolConfig, baselines, build_split
from core.errors import InputError


@pytest.fixture(scope="module")
def ml100k(ml100k_store):
    ds = Dataset("ml-100k", ml100k_store.load_items("ml-100k"), ml100k_store.load_interactions("ml-100k"))
    return ds, build_split(ds, ProtocolConfig(seed=0))


def test_counts(ml100k):
    _, split = ml100k
    assert len(split.test) == 943 and len(split.valid) == 943
    # every interaction except each user's validation and test item, minus each user's first item
    assert len(split.train) == 100_000 - 3 * 943


def test_no_test_target_leaks_into_training_windows(ml100k):
    _, split = ml100k
    windows: dict[str, set[int]] = {}
    for s in split.train:
        windows.setdefault(s.user, set()).update((*s.history, s.target))
    for case in split.test:
        seq = split.sequences[case.user]
        assert case.target == seq[-1]
        # ml-100k has no repeated (user, item) pairs, so the target must not appear at all
        assert case.target not in windows[case.user]
        assert seq[-2] not in windows[case.user]  # validation item neither


def test_histories_are_time_ordered_prefixes(ml100k):
    ds, split = ml100k
    inter = ds.interactions
    user = split.test[0].user
    ts = inter[inter.user_id == user].sort_values("ts", kind="mergesort")
    ids = [split.item_ids[i] for i in split.sequences[user]]
    assert ids == ts["item_id"].tolist()
    assert split.test[0].history == tuple(split.sequences[user][:-1][-10:])


def test_candidates_hold_target_once_and_no_history(ml100k):
    _, split = ml100k
    for case in split.test + split.valid:
        assert len(case.candidates) == 20 == len(set(case.candidates))
        assert case.candidates.count(case.target) == 1
        negatives = set(case.candidates) - {case.target}
        assert not negatives & split.user_items(case.user)


def test_same_seed_same_candidates_other_seed_differs(ml100k):
    ds, split = ml100k
    again = build_split(ds, ProtocolConfig(seed=0))
    assert [c.candidates for c in again.test] == [c.candidates for c in split.test]
    other = build_split(ds, ProtocolConfig(seed=1))
    assert [c.candidates for c in other.test] != [c.candidates for c in split.test]


def test_target_position_is_shuffled(ml100k):
    _, split = ml100k
    positions = {c.target_pos for c in split.test}
    assert len(positions) == 20


def test_baselines(ml100k):
    _, split = ml100k
    b = baselines(split)
    assert b["random"]["hr@1"] == pytest.approx(0.05)
    assert b["random"]["hr@5"] == pytest.approx(0.25)
    assert 0.19 <= b["popularity"]["hr@1"] <= 0.30
    assert b["popularity"]["hr@5"] > b["popularity"]["hr@1"]


def test_min_interactions_filter(synthetic):
    short = synthetic.interactions.groupby("user_id").head(4)  # every user keeps 4 of 12
    full_u0 = synthetic.interactions[synthetic.interactions.user_id == "u0"]
    ds = Dataset("s", synthetic.items, pd.concat([short[short.user_id != "u0"], full_u0]))
    split = build_split(ds, ProtocolConfig(min_interactions=5))
    assert list(split.sequences) == ["u0"]
    with pytest.raises(InputError, match=">= 13"):
        build_split(synthetic, ProtocolConfig(min_interactions=13))


def test_bad_config_and_catalog_only(synthetic):
    with pytest.raises(InputError):
        ProtocolConfig(n_candidates=1)
    catalog = Dataset("cat", synthetic.items, synthetic.interactions.iloc[0:0])
    with pytest.raises(InputError, match="catalog only"):
        build_split(catalog)
