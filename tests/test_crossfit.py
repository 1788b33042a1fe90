"""Cross-fitted scanning (core.pscanner.crossfit): folds, the catalog-calibrated threshold, and that no title is
scored by a scanner that trained on it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core import settings
from core.errors import InputError
from core.pscanner.crossfit import assign_folds, calibrate_catalog, crossfit_scanner, n_folds
from core.pscanner.scanner_train import scanner_key
from tests.test_scanner import TINY, _titles


def test_folds_are_seeded_balanced_and_shrink_to_two_on_huge_catalogs():
    titles = [f"title {i}" for i in range(103)]
    a, b = assign_folds(titles, 5, 0), assign_folds(list(reversed(titles)), 5, 0)
    assert a == b  # the order of the catalog does not matter, the seed does
    assert assign_folds(titles, 5, 1) != a
    sizes = np.bincount(list(a.values()))
    assert sizes.max() - sizes.min() <= 1
    assert n_folds(1682, 5, 4000) == 5 and n_folds(8000, 5, 4000) == 2


def test_calibration_holds_the_fpr_on_clean_titles_despite_poisoned_ones():
    """Clean logits from a logistic distribution plus 2.5 % poisoned titles far above them: an empirical
    99th percentile of the catalog would sit among the poisoned titles; the fitted tail does not."""
    rng = np.random.default_rng(0)
    clean = 1 / (1 + np.exp(-rng.logistic(-3.0, 1.0, 20_000)))
    poisoned = np.full(500, 0.9999)
    for catalog in (clean, np.concatenate([clean, poisoned])):
        cal = calibrate_catalog(catalog, 0.01, floor=0.0)
        assert 0.002 <= float(np.mean(clean >= cal.threshold)) <= 0.015
        assert abs(cal.expected_fpr - 0.01) < 1e-6 and cal.threshold < 0.99
    # the floor: a catalog whose clean titles all score low is flagged at P(Yes) >= 0.5, not at its own tail
    low = calibrate_catalog(np.concatenate([clean * 0.1, poisoned]), 0.01)
    assert low.threshold == 0.5 and low.expected_fpr < 0.01
    with pytest.raises(InputError):
        calibrate_catalog(np.zeros(5), 0.01)


def test_a_small_catalog_sets_its_top_titles_aside_when_poison_reaches_the_tail_anchors():
    """50 titles, 6 of them poisoned (12 %, above the fit's 90th-percentile anchor): the plain fit lifts the
    threshold over most poisoned titles; setting the top aside flags them all and no clean one. With no poisoned
    titles the set-aside changes nothing, on 50 titles and on 2,000."""
    rng = np.random.default_rng(0)
    clean = 1 / (1 + np.exp(-rng.logistic(-3.0, 1.0, 44)))
    poisoned = 1 / (1 + np.exp(-rng.normal(6.0, 1.0, 6)))
    catalog = np.concatenate([clean, poisoned])
    plain, aside = calibrate_catalog(catalog, 0.01), calibrate_catalog(catalog, 0.01, max_set_aside=0.1)
    assert np.sum(poisoned >= plain.threshold) <= 2
    assert np.all(poisoned >= aside.threshold) and not np.any(clean >= aside.threshold)
    assert "titles above the threshold beyond the target's share set aside" in aside.method
    for n in (50, 2_000):
        only_clean = 1 / (1 + np.exp(-rng.logistic(-3.0, 1.0, n)))
        assert calibrate_catalog(only_clean, 0.01, max_set_aside=0.1) == calibrate_catalog(only_clean, 0.01)


def test_each_title_is_scored_by_the_scanner_of_its_fold_which_never_trained_on_it(home):
    titles = sorted(set(_titles(60)))
    catalog = titles[:-2] + [f"{titles[-2]} zzqx", f"zzqx {titles[-1]}"]  # two poisoned titles
    cfg = replace(TINY, rounds=0, train=replace(TINY.train, epochs=2), min_steps=10, n_triggers=30)
    cf, cached = crossfit_scanner(catalog, cfg, folds=3, domain="test")
    assert not cached and len(cf.scanners) == 3 and cf.info["folds"] == 3
    assert cf.calibration is not None and cf.threshold == cf.calibration.threshold >= 0.5
    base = sorted(set(catalog))
    for j, scanner in enumerate(cf.scanners):
        trained_on = [t for t in base if cf.fold[t] != j]
        mine = [t for t in catalog if cf.fold[t] == j]
        assert mine and not set(mine) & set(trained_on)
        # a scanner was trained and cached on exactly the other folds' titles (its key hashes them)
        assert (settings.cache_dir("scanners") / f"mini-{scanner_key(trained_on, cfg, base)}" / "meta.json").exists()
        assert scanner.info["n_titles"] == len(trained_on)
        assert np.allclose(cf.score(mine), scanner.score(mine))
    outside = ["Silent River of the Ghost (1977) zzqx"]
    assert np.allclose(cf.score(outside), np.mean([s.score(outside) for s in cf.scanners], axis=0))
    again, cached = crossfit_scanner(catalog, cfg, folds=3, domain="test")
    assert cached and np.allclose(again.score(catalog), cf.score(catalog))  # same seed, same scores
    assert len(cf.spans(catalog[-2:])) == 2


def test_tiny_catalogs_get_more_folds_so_each_scanner_keeps_twenty_titles():
    assert n_folds(24, 2, 4000) == 6 and n_folds(26, 5, 4000) == 5 and n_folds(22, 5, 4000) == 11
    with pytest.raises(InputError, match="22 distinct titles"):
        n_folds(21, 5, 4000)


def test_the_page_and_cli_say_how_the_threshold_was_set_and_warn_when_far_too_much_is_flagged():
    from dataclasses import asdict

    from core.pscanner.scan import calibration_caption, flagged_warning

    rng = np.random.default_rng(1)
    cal = asdict(calibrate_catalog(1 / (1 + np.exp(-rng.logistic(-3.0, 1.0, 2_000))), 0.01))
    text = calibration_caption(cal)
    assert "target FPR of 1.0%" in text and f"expected FPR on clean titles {cal['expected_fpr']:.2%}" in text
    assert "re-ordered" not in text
    assert "the top 167 titles re-ordered" in calibration_caption(cal | {"rerank": {"n_titles": 167, "share": 0.1}})
    check = {"n_probes": 60, "cut": 15, "recall_without": 0.5, "recall_with": 0.4, "keep": False}
    skipped = calibration_caption(cal | {"rerank": {"n_titles": 167, "applied": False, "check": check}})
    assert "checked and not applied" in skipped and "50% without, 40% with it" in skipped and "re-ordered" not in skipped
    assert flagged_warning(0.04, 0.01) is None  # 4x the target: a poisoned catalog may well look like this
    assert "far above the target FPR of 1.0%" in flagged_warning(0.46, 0.01)
    assert flagged_warning(0.9, None) is None  # a threshold set by hand promises no FPR


def test_a_scanners_cache_key_names_its_titles_config_and_shared_base():
    """A cached scanner is reused only for the same titles, config and (cross-fitting) shared base; a config that
    went through a run's JSON, or was recorded before the configs nested, names the same scanner."""
    from dataclasses import replace

    from core.pscanner.scanner import ScannerConfig

    titles, cfg = ["Toy Story (1995)", "Heat (1995)"], ScannerConfig()
    key = scanner_key(titles, cfg)
    assert scanner_key(titles, ScannerConfig.from_dict(cfg.to_dict())) == key
    flat = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "train")}
    flat |= {"model": "mini", "quant": "none", "lora_r": 16, "lora_alpha": 32, "epochs": 3, "lr": 2e-3, "batch_size": 64}
    assert scanner_key(titles, ScannerConfig.from_dict(flat)) == key
    others = {scanner_key(titles[:1], cfg), scanner_key(titles, replace(cfg, seed=1)),
              scanner_key(titles, replace(cfg, train=replace(cfg.train, lr=1e-3))),
              scanner_key(titles, cfg, base_titles=titles + ["Up (2009)"])}
    assert key not in others and len(others) == 4
