"""Time before launch: stages, cached parts skipped, this machine's recorded speeds preferred."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
from tiny_helpers import synthetic_store, tiny_attack

from core.attack.badrec import AttackConfig
from core.data.protocol import ProtocolConfig
from core.lm.models import ModelConfig
from core.lm.tinylm import SIZES
from core.lm.train import TrainConfig
from core.pscanner.scanner import SCANNER_TRAIN, FrozenHeadConfig, ScannerConfig
from core.views import estimate

ONE_EPOCH = replace(SCANNER_TRAIN, epochs=1)

RATES = estimate.Rates({"tiny:small": estimate.ModelRates(1000.0, 10.0, 100.0, 200.0)},
                       {"mini": 50.0, "smollm2-135m": 20.0}, {"mini": 1000.0, "smollm2-135m": 20.0}, "test table")


def upload_seconds(cfg, n: int, rates: estimate.Rates) -> float:
    """The estimated first scan of an `n`-title upload with the scan settings `cfg`, as the dashboard asks it."""
    from core.pscanner.scan_config import contrasted_titles

    return estimate.scan_estimate(cfg.scanner, n, n, False, rates, trains_on_catalog=True,
                                  reranked=contrasted_titles(cfg, n)).seconds


def demo(**kw) -> AttackConfig:
    base = dict(tiny=SIZES["small"], poison_ratio=0.3, windows_per_user=1, eval_users=20, generate=False,
                protocol=ProtocolConfig(history_len=5, n_candidates=10), train=TrainConfig(epochs=2))
    return AttackConfig(**{**base, **kw})


def test_attack_stages_follow_the_data_and_skip_what_is_cached():
    est = estimate.attack_estimate(demo(), n_users=943, n_interactions=100_000, cached=set(), rates=RATES)
    stages = {s.name: s.seconds for s in est.stages}
    # 943 clean samples (+404 poisoned at rho 0.3), 2 epochs, 16 title slots of 10 tokens at 1000 tokens/s
    assert stages["clean model"] == pytest.approx(943 * 2 * 16 * 10 / 1000)
    assert stages["poisoned model"] == pytest.approx((943 + 404) * 2 * 16 * 10 / 1000)
    assert stages["base model"] == 200 and stages["evaluation"] == pytest.approx(20 * 8 * 25 / 100)  # 8 lists per user
    cached = estimate.attack_estimate(demo(), 943, 100_000, {"base model", "clean model"}, RATES)
    assert cached.seconds < est.seconds - stages["clean model"] and "base model cached (skipped)" in cached.text()
    assert estimate.attack_estimate(demo(model=demo().model.__class__(name="gpt2")), 943, 1, set(), RATES) is None
    # adapters on the top block only: its own speeds where measured (`tiny:small@top1`), else the model's
    top = demo(model=demo().model.__class__(lora_layers=1))
    assert estimate.model_key(top) == "tiny:small@top1"
    assert estimate.attack_estimate(top, 943, 100_000, set(), RATES).seconds == pytest.approx(est.seconds)
    faster = replace(RATES, models={**RATES.models, "tiny:small@top1": estimate.ModelRates(2000.0, 10.0, 200.0, 200.0)})
    assert estimate.attack_estimate(top, 943, 100_000, set(), faster).seconds < est.seconds


def test_scan_stages_and_the_min_steps_floor():
    small = estimate.scan_estimate(ScannerConfig(rounds=0, train=ONE_EPOCH), 50, 50, False, RATES)
    big = estimate.scan_estimate(ScannerConfig(rounds=0, train=ONE_EPOCH), 1682, 1682, False, RATES)
    assert small.stages[0].seconds > 0 and big.stages[0].seconds > small.stages[0].seconds
    cached = estimate.scan_estimate(ScannerConfig(), 1682, 1682, True, RATES)
    assert cached.stages[0].cached and cached.seconds == pytest.approx(1682 / 1000 + estimate.LOAD_S)


@pytest.mark.parametrize("kind, probes, measured", [
    # E58's first scans on an AVX512-BF16 CPU (bench/results/e58-time-ml100k50-s1.json, e58-time-ml100k-s57.json),
    # before small catalogs' rounds were capped at 3 probes per title (E62)
    ("avx512-bf16", 0, {50: 50.7, 1664: 185.7}),
    # E60's on an AVX2-only CPU, fp32 (bench/results/e60-avx2-ml100k50-s1.json, e60-avx2-ml100k-s57.json), uncapped
    ("avx2", 0, {50: 161.5, 1664: 554.0}),
    # E62's (bench/results/e62-avx2-ml100k50-s1.json; 1,664 titles: the cap does not bind)
    ("avx2", 3, {50: 99.4, 1664: 554.0})])
def test_the_reference_table_covers_the_dashboards_choices(kind, probes, measured):
    from core.pscanner.scan_config import ScanConfig

    rates = estimate.load_rates(kind=kind)
    assert {"tiny:small", "tiny:smoke", "tiny:standard", "smollm2-135m"} <= set(rates.models)
    assert "mini" in rates.scanner_examples_per_s and "measured on" in rates.source
    # the scan of an upload as E58-E62 ran it (frozen SmolLM2, cross-fitted; before E63: every title's examples and
    # the top tenth re-ranked) against its measured first scans from nothing cached but the model
    frozen = FrozenHeadConfig(probes_per_title=probes, example_titles=0)
    scanner = ScannerConfig(model=ModelConfig(name="smollm2-135m"), frozen=frozen)
    cfg = ScanConfig(source="catalog", catalog_path="catalog.csv", scanner=scanner, rerank=0.1)
    for n, seconds in measured.items():
        assert upload_seconds(cfg, n, rates) == pytest.approx(seconds, rel=0.1), n


def test_the_estimate_scales_with_the_texts_the_default_recipe_saves():
    """E63's defaults (600 titles with examples, the top 5 % re-ranked) against the recipe before them, first scans on
    one AVX2 CPU (bench/results/e63-base-ml-s57.json 293.3 s, e63-time-new-ml-s57.json 191.1 s; a faster AVX2 CPU
    than the table's, so the ratio is what is compared); a 50-title catalog is unchanged (49.8 s, E62's flags)."""
    from core.pscanner.scan_config import ScanConfig

    rates = estimate.load_rates(kind="avx2")
    new = ScanConfig(source="catalog", catalog_path="catalog.csv",
                     scanner=ScannerConfig(model=ModelConfig(name="smollm2-135m")))
    old = replace(new, rerank=0.1, scanner=replace(new.scanner, frozen=replace(new.scanner.frozen, example_titles=0)))
    assert upload_seconds(new, 1664, rates) / upload_seconds(old, 1664, rates) == pytest.approx(191.1 / 293.3,
                                                                                               rel=0.05)
    assert upload_seconds(new, 50, rates) == upload_seconds(old, 50, rates)


def test_the_table_of_this_machines_kind_replaces_the_reference_where_it_was_measured(tmp_path):
    """An AVX2-only CPU computes the LLM scanner in fp32 (3-5x slower than bf16 on AVX512-BF16): a fresh home there
    is estimated from the speeds measured on that kind; what was not measured there keeps the reference's and the
    source says so; a kind with no table of its own is told its estimate comes from another machine."""
    raw = json.loads(estimate.THROUGHPUT_FILE.read_text())
    raw["kinds"] = {"avx2": {"measured": {"machine": "an AVX2 box", "load_average": "1", "date": "today"},
                             "scan_titles_per_s": {"smollm2-135m": 5.0}, "scanner_examples_per_s": {"smollm2-135m": 6.0},
                             "scanner_fixed_s": {"smollm2-135m": 70.0}}}
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(raw))
    ref, avx2 = estimate.load_rates(path, raw["measured"]["kind"]), estimate.load_rates(path, "avx2")
    assert avx2.scan_titles_per_s["smollm2-135m"] == 5.0 and avx2.scanner_examples_per_s["smollm2-135m"] == 6.0
    assert avx2.scanner_fixed_s["smollm2-135m"] == 70.0 and avx2.models == ref.models
    assert avx2.scanner_examples_per_s["mini"] == ref.scanner_examples_per_s["mini"]
    assert avx2.source.startswith("smollm2-135m measured on an AVX2 box") and "the rest measured on" in avx2.source
    assert "expect other times" not in ref.source and "this machine is cuda" in estimate.load_rates(path, "cuda").source


def test_a_finished_run_here_replaces_the_reference_and_its_cache_is_seen(store):
    synthetic_store(store)
    from core.attack.experiment import cached_stages, run_attack
    cfg = tiny_attack()
    assert cached_stages(store, cfg) == set()
    run_attack(store, cfg)
    assert cached_stages(store, cfg) == {"base model", "clean model"}
    reference = estimate.Rates({"tiny:custom": estimate.ModelRates(1.0, 1.0, 1.0, 9.0)}, {}, {}, "reference")
    rates = estimate.rates_from_runs(store.list_runs("attack"), reference)
    mine = rates.models["tiny:custom"]
    run = store.get_run(store.list_runs("attack").iloc[0]["run_id"])
    trained = run["result"]["train"]["clean"]  # trained in this run: the poisoned one may reuse its features (E72)
    assert not trained["cached"] and mine.train_tokens_per_s == pytest.approx(trained["tokens"] / trained["seconds"])
    assert mine.base_build_s == 9.0 and "from the newest runs here for tiny:custom" in rates.source
    # the same settings are estimated to evaluate in the time this run's evaluation took (its lists counted)
    est = estimate.attack_estimate(cfg, run["result"]["n_test_users"], 1, {"base model", "clean model"}, rates)
    evaluation = {s.name: s.seconds for s in est.stages}["evaluation"]
    assert evaluation == pytest.approx(run["result"]["timings"]["evaluation_s"])


def test_scan_jobs_recorded_here_set_the_scanner_speeds(store):
    """Two scan jobs (`core.runs.jobs.scan_job`, stored under their job ids): the first trains the scanner and
    calibrates its training speed so that the estimate of the same settings is the time it took; the second,
    cached, calibrates scoring."""
    from core.pscanner.scan import run_scan
    from core.pscanner.scan_config import ScanConfig
    from core.runs.jobs import JobManager, scan_job

    synthetic_store(store)
    scanner = ScannerConfig(rounds=0, train=ONE_EPOCH, n_triggers=12, max_titles=50)
    cfg = ScanConfig(source="dataset", dataset="synthetic", methods=("scanner",), scanner=scanner, spans=False,
                     crossfit=2)  # two fold scanners: the speeds are per example, whatever the folds
    manager = JobManager(store)
    try:
        ids = [manager.submit("scan", "synthetic", cfg.to_dict(), scan_job(run_scan, store, cfg)) for _ in range(2)]
        rows = [manager.wait(i, timeout=600) for i in ids]
    finally:
        manager.shutdown()
    assert [r["status"] for r in rows] == ["done", "done"] and [r["result"]["scan_id"] for r in rows] == ids
    assert [store.scan_row(i)["scan_id"] for i in ids] == ids
    rates = estimate.scan_rates_from_runs(store.list_runs("scan"), RATES)
    assert rates.source.startswith("scans recorded here for mini")
    trained = rows[0]["result"]["scanner"]["info"]["seconds"]
    again = estimate.scan_estimate(scanner, 60, 60, False, rates).stages[0].seconds
    assert again == pytest.approx(max(trained, estimate.LOAD_S + 0.1), rel=1e-6)  # the time it took
    assert rates.scan_titles_per_s["mini"] == pytest.approx(60 / max(rows[1]["result"]["seconds"] - estimate.LOAD_S,
                                                                      0.1))


def test_a_frozen_scanner_trained_on_the_catalog_scores_it_without_another_pass():
    """No trusted reference: the frozen-LLM scanner featurized every catalog title while training (cross-fitted),
    so scoring adds only the fixed cost; with a reference domain the catalog's titles still need their pass."""
    frozen = ScannerConfig(model=ModelConfig(name="smollm2-135m"))
    assert frozen.mode == "frozen"
    own = estimate.scan_estimate(frozen, 1682, 1682, False, RATES, trains_on_catalog=True)
    ref = estimate.scan_estimate(frozen, 1682, 1682, False, RATES, trains_on_catalog=False)
    assert own.stages[1].seconds == estimate.LOAD_S
    assert ref.stages[1].seconds == pytest.approx(1682 / RATES.scan_titles_per_s["smollm2-135m"] + estimate.LOAD_S)
    mini = estimate.scan_estimate(ScannerConfig(model=ModelConfig(name="mini")), 1682, 1682, False, RATES, trains_on_catalog=True)
    assert mini.stages[1].seconds > estimate.LOAD_S  # a fine-tuned scanner scores the catalog after training


def test_a_scan_with_the_auto_scanner_sets_the_speed_of_the_model_it_resolved_to():
    rows = pd.DataFrame([{"status": "done", "config": json.dumps({"scanner": {"model": "auto"}}),
                          "result": json.dumps({"scanner_cached": True, "n_items": 1000, "seconds": 10 + estimate.LOAD_S,
                                                "scanner": {"model": "smollm2-135m", "info": {}}})}])
    rates = estimate.scan_rates_from_runs(rows, RATES)
    assert rates.scan_titles_per_s["smollm2-135m"] == pytest.approx(100.0) and "auto" not in rates.scan_titles_per_s
