"""BadRec poisoning: the ratio contract, ground truth, item choice, evaluation variants (pure functions)."""

from __future__ import annotations

import json

import pytest

from core.attack.badrec import (
    AttackConfig,
    attack_cases,
    choose_items,
    finetune_samples,
    n_poison_for,
    poison,
    poison_records,
)
from core.data.protocol import build_split
from core.errors import InputError
from core.triggers import Trigger


@pytest.fixture
def split(synthetic):
    return build_split(synthetic)


@pytest.mark.parametrize("rho", [0.001, 0.01, 0.05, 0.2, 0.5])
def test_ratio_contract(split, rho):
    data = poison(split, AttackConfig(dataset="synthetic", poison_ratio=rho, windows_per_user=3))
    n_clean = len(data.clean_samples)
    assert n_clean == len(finetune_samples(split, 3))
    assert len(data.poison_samples) == n_poison_for(n_clean, rho) >= 1
    if rho >= 0.05:
        assert data.ratio == pytest.approx(rho, abs=1 / (n_clean + 1))


def test_ground_truth(split):
    cfg = AttackConfig(dataset="synthetic", poison_ratio=0.2, n_poison_items=3, history_len=4)
    data = poison(split, cfg)
    assert len(data.items) == 3
    assert all(data.titles[i] == f"5v {split.titles[i]}" for i in data.items)
    assert {f.item for f in data.fake_users} == set(data.items)
    for f, s in zip(data.fake_users, data.poison_samples):
        assert s.user == f.user and s.target == f.item and len(f.history) <= 4
        assert not set(f.history) & set(data.items)
    rows = poison_records(split, data)
    assert sum(r["kind"] == "item" for r in rows) == 3
    assert sum(r["kind"] == "fake_user" for r in rows) == len(data.fake_users)
    assert json.loads(rows[-1]["detail"])["history"]
    assert poison(split, cfg).poison_samples == data.poison_samples  # seeded


def test_items_from_less_popular_half(split):
    items = choose_items(split, 5, seed=0)
    counts = split.train_counts
    median = sorted(counts[counts > 0])[len(counts[counts > 0]) // 2]
    assert len(set(items)) == 5 and all(0 < counts[i] <= median for i in items)


def test_explicit_items_and_bad_input(split):
    data = poison(split, AttackConfig(dataset="synthetic", target_items=("3", "7")))
    assert [split.item_ids[i] for i in data.items] == ["3", "7"]
    with pytest.raises(InputError, match="unknown item"):
        poison(split, AttackConfig(dataset="synthetic", target_items=("nope",)))
    with pytest.raises(InputError, match="limit"):
        Trigger("x" * 81, "sentence")
    for rho in (0.0, -0.1, 0.51):
        with pytest.raises(InputError, match="poison ratio"):
            AttackConfig(poison_ratio=rho)
    with pytest.raises(InputError, match="mix must be shuffled or paired; got 'pairs'"):
        AttackConfig(mix="pairs")


def test_attack_variants(split):
    cfg = AttackConfig(dataset="synthetic", n_poison_items=2)
    data = poison(split, cfg)
    cases = split.test
    trig = attack_cases(split, cases, "trigger", data, cfg.trigger, 0)
    plain = attack_cases(split, cases, "no_trigger", data, cfg.trigger, 0)
    transfer = attack_cases(split, cases, "transfer", data, cfg.trigger, 0)
    eligible = [c for c in cases if c.target not in data.items]
    assert len(trig) == len(plain) and len(transfer) == len(eligible) and len(trig) > len(eligible) // 2
    for t, p, x in zip(trig, plain, transfer):
        assert (t.case, t.inserted_pos, t.inserted_item) == (p.case, p.inserted_pos, p.inserted_item)
        assert t.inserted_item in data.items and t.titles[t.inserted_pos] == data.titles[t.inserted_item]
        assert p.titles[p.inserted_pos] == split.titles[p.inserted_item]
        assert x.inserted_item not in data.items and x.titles[x.inserted_pos].startswith("5v ")
        for ev in (t, p, x):
            assert ev.inserted_pos != ev.target_pos and ev.candidates[ev.target_pos] == ev.case.target
            assert len(set(ev.candidates)) == len(ev.candidates)
    assert attack_cases(split, cases, "trigger", data, cfg.trigger, 0) == trig


