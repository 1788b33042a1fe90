"""P-Scanner on tiny configs: training, scoring, spans, threshold, cache, hard negatives, streaming storage."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.lm.models import ModelConfig
from core.pscanner import campaign
from core.pscanner.campaign import CampaignConfig
from core.pscanner.scanner import SCANNER_TRAIN, ScannerConfig, calibrate_threshold
from core.pscanner.scanner_data import hard_negative, title_vocab
from core.pscanner.scanner_train import get_scanner, train_scanner
from core.runs.store import Store
from tests.conftest import make_synthetic

TINY = ScannerConfig(train=replace(SCANNER_TRAIN, epochs=4, batch_size=32, lr=3e-3), min_steps=30, n_triggers=60,
                     rounds=1, agent_per_round=30,
                     exclude=("zzqx",), target_fpr=0.05)


def _titles(n: int = 80) -> list[str]:
    words = ["Night", "River", "Stone", "Love", "City", "King", "Dream", "Summer", "Ghost", "Road", "Blue",
             "Last", "Heart", "Storm", "Garden", "Silent"]
    rng = random.Random(0)
    return [f"{rng.choice(words)} {rng.choice(words)} of the {rng.choice(words)} ({rng.randint(1950, 1999)})"
            for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    os.environ["BADREC_HOME"] = str(tmp_path_factory.mktemp("scanner-home"))
    titles = sorted(set(_titles()))
    return titles, train_scanner(titles, TINY, domain="test")


def test_scores_are_probabilities_and_separate_a_blatant_trigger(trained):
    titles, scanner = trained
    clean = scanner.score(titles)
    poisoned = scanner.score([f"{t} zzqx" for t in titles[:20]])  # a trigger string never trained on
    assert clean.shape == (len(titles),) and np.all((clean >= 0) & (clean <= 1))
    assert np.all((poisoned >= 0) & (poisoned <= 1))
    assert np.median(poisoned) > np.median(clean) + 0.3
    assert np.mean(poisoned >= scanner.threshold) > 0.7
    # input order is kept although scoring sorts by length internally
    mixed = [titles[0], f"{titles[1]} zzqx", titles[2]]
    assert np.allclose(scanner.score(mixed), [clean[0], scanner.score([mixed[1]])[0], clean[2]], atol=1e-4)


def test_fast_scoring_equals_the_models_own_forward(trained):
    """Scoring skips most of the last layer, tokenizes without offsets and scores repeats once:
    the scores must equal a plain left-padded forward through the model, title by title."""
    import torch

    from core.pscanner.scanner import PROMPT, last_position_logits

    titles, scanner = trained
    batch = [titles[0], f"{titles[1]} zzqx", "A", titles[0], f"I watched this 3D movie {titles[2]}", titles[3] * 4]
    tok, model = scanner.tokenizer, scanner.model
    ref = []
    with torch.inference_mode():
        for t in batch:
            enc = tok([tok.bos_token + PROMPT.format(title=t)], return_tensors="pt", add_special_tokens=False)
            logits = model(**enc).logits[0, -1, [scanner.yes_id, scanner.no_id]]
            ref.append(torch.softmax(logits, -1)[0].item())
    assert np.allclose(scanner.score(batch, batch_size=4), ref, atol=1e-5)
    ids, mask, pos = scanner._pad(scanner._token_rows(batch))
    hf = tok([tok.bos_token + PROMPT.format(title=t) for t in batch], return_tensors="pt", padding=True,
             add_special_tokens=False)
    assert torch.equal(ids, hf["input_ids"]) and torch.equal(mask, hf["attention_mask"])
    # that padded call left padding on the shared Rust tokenizer; scoring must not inherit it
    assert np.allclose(scanner.score(batch, batch_size=4), ref, atol=1e-5)
    with torch.inference_mode():
        fast = last_position_logits(model, ids, mask, pos, range(model.config.vocab_size))
        full = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
    assert torch.allclose(fast, full, atol=1e-4)


def test_rounds_are_recorded(trained):
    _, scanner = trained
    assert scanner.history[0]["round"] == 0 and scanner.history[0]["n_examples"] > 0
    assert len(scanner.history) == 3 and 0.0 <= scanner.history[1]["miss_rate"] <= 1.0
    assert scanner.history[2]["round"] == "consolidation"
    assert set(scanner.history[1]["miss_rate_by_family"]) <= {"char", "word", "sentence"}


def test_span_points_at_the_trigger(trained):
    titles, scanner = trained
    spans = scanner.spans([f"{titles[3]} zzqx", f"{titles[5]} zzqx"])
    assert sum("zzqx" in (s or "") for s in spans) >= 1


def test_a_recurring_trigger_is_caught_below_the_threshold(trained):
    """Every twelfth title carries a trigger the scanner never saw; with the threshold out of reach (1.0) the
    campaign step alone flags exactly those titles and names the trigger."""
    titles, scanner = trained
    catalog = [f"{t} zzqx" if i % 12 == 0 else t for i, t in enumerate(titles)]
    poisoned = np.array([i % 12 == 0 for i in range(len(titles))])
    scores = scanner.score(catalog)
    flags, shared, found = campaign.flag(catalog, scores, 1.0, scanner.score, CampaignConfig(top=0.2))
    assert [c.text for c in found] == ["zzqx"] and found[0].n_titles == poisoned.sum() >= 6
    assert found[0].median_without < found[0].median_score
    assert (flags == poisoned).all() and [s for s in shared if s] == ["zzqx"] * poisoned.sum()
    # the clean catalog has no campaign, and None judges each title alone
    assert campaign.find_campaigns(titles, scanner.score(titles), scanner.score, CampaignConfig(top=0.2)) == []
    assert not campaign.flag(catalog, scores, 1.0, scanner.score, None)[0].any()


def test_hard_negative_passes_only_for_a_trusted_reference():
    """Trusted titles still above the threshold get extra No passes (recorded); an untrusted catalog
    (self-cleaning on) never does, since its odd titles may be the poison."""
    titles = sorted(set(_titles()))
    odd = [f"{t} Qx9" for t in titles[:3]]  # clean in this reference, though they look triggered
    cfg = replace(TINY, rounds=0, self_clean=False, mine_passes=3)
    mined = train_scanner(titles + odd, cfg, domain="test")
    plain = train_scanner(titles + odd, replace(cfg, mine_passes=0), domain="test")
    assert mined.history[-1]["round"] == "hard negatives"
    assert all(h["round"] != "hard negatives" for h in plain.history)
    above = [int((sc.score(titles + odd) >= sc.threshold).sum()) for sc in (plain, mined)]
    assert above[1] <= above[0]
    untrusted = train_scanner(titles + odd, replace(cfg, self_clean=True), domain="test")
    assert all(h["round"] != "hard negatives" for h in untrusted.history)


def test_threshold_calibration_bounds_the_fpr():
    clean = np.linspace(0, 1, 1000)
    t = calibrate_threshold(clean, 0.01)
    assert np.mean(clean >= t) <= 0.01
    assert np.mean(clean >= calibrate_threshold(clean, 0.1)) <= 0.1


def test_hard_negatives_are_natural_variants():
    titles = ["Toy Story (1995)", "Usual Suspects, The (1995)"]
    rng = random.Random(0)
    vocab = title_vocab(titles)
    variants = {hard_negative(t, rng, vocab) for t in titles for _ in range(60)}
    assert any(" 2 (1995)" in v or " II (1995)" in v for v in variants)
    assert any(v.startswith(("La ", "Le ", "Die ", "El ")) for v in variants)
    assert any(": " in v for v in variants)
    assert all(v != t for v in variants for t in titles) or len(variants) > 10


def test_config_validation():
    with pytest.raises(InputError):
        ScannerConfig(target_fpr=0.0)
    with pytest.raises(InputError):
        ScannerConfig(model=ModelConfig(name="mini", quant="4bit"))
    with pytest.raises(InputError):
        ScannerConfig(families=("emoji",))
    cfg = ScannerConfig(exclude=("5v",))
    assert ScannerConfig.from_dict(cfg.to_dict()) == cfg  # JSON round trip: tuples come back as tuples
    with pytest.raises(InputError):
        train_scanner(["a", "b"], TINY)


def test_cache_round_trip(home):
    titles = sorted({t for t in make_synthetic(n_items=40).items["title"]})
    cfg = ScannerConfig(train=replace(SCANNER_TRAIN, epochs=1, batch_size=32), min_steps=5, n_triggers=20, rounds=0,
                        consolidate=False)
    first, cached = get_scanner(titles, cfg)
    assert not cached
    again, cached = get_scanner(titles, cfg)
    assert cached and again.threshold == pytest.approx(first.threshold)
    assert np.allclose(again.score(titles[:5]), first.score(titles[:5]), atol=1e-5)
    assert list((home / "cache" / "scanners").glob("*/model.safetensors"))
    assert not list((home / "cache" / "scanners").rglob("*.bin"))


def _rows(scan_id: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"scan_id": scan_id, "item_id": [str(i) for i in range(n)], "title": [f"t{i}" for i in range(n)],
                         "score": np.linspace(0, 1, n), "flagged": np.linspace(0, 1, n) > 0.9, "method": "scanner",
                         "span": [None] * n, "label": pd.array([None] * n, dtype="boolean"),
                         "campaign": [None] * n})


def test_scan_storage_round_trip_and_rollback(store: Store):
    def chunks():
        yield _rows("s1", 5)
        yield _rows("s1", 5).assign(item_id=[str(i) for i in range(5, 10)])

    store.write_scan(chunks(), lambda: [{"scan_id": "s1", "source": "test", "method": "scanner", "threshold": 0.9,
                                         "n_items": 10, "n_flagged": 2, "metrics": {"f1": 1.0}}])
    assert store.scan_row("s1")["n_items"] == 10
    assert len(store.scan_results("s1")) == 10
    assert store.scan_results_count("s1") == 10

    def failing():
        yield _rows("s2", 5)
        raise RuntimeError("scoring crashed")

    with pytest.raises(RuntimeError):
        store.write_scan(failing(), lambda: [])
    assert store.scan_row("s2") is None and store.scan_results("s2").empty
    store.delete_scan("s1")
    assert store.scan_row("s1") is None and store.scan_results("s1").empty


def _oddness(texts):
    """A scorer for the pure functions below: `zzqx` is a trigger, `Xylo` an odd-but-clean word."""
    return np.array([0.95 if "zzqx" in t else 0.9 if "Xylo" in t else 0.3 for t in texts])


def test_deletion_contrast_is_how_far_removing_the_worst_span_lowers_the_score():
    from core.pscanner.scanner import deletion_contrast, logit

    c = deletion_contrast(_oddness, ["Moon River zzqx", "Xylo Xylophon", "Moon River", "zzqx"])
    assert c[0] == pytest.approx(float(logit(0.95) - logit(0.3)))  # the trigger goes, the title is clean
    assert c[1] == 0 and c[2] == 0  # odd throughout / plain: no span removal lowers it
    assert c[3] == 0  # a one-word title has no span to remove (a span is never the whole title)


def test_reranking_lifts_titles_whose_oddness_one_span_carries_and_keeps_the_scores():
    from core.pscanner.rerank import rerank_by_contrast, rerank_size
    from core.pscanner.scanner import deletion_contrast

    titles = ["Xylo Xylophon", "Moon zzqx", "Storm", "Night Road", "River zzqx"]
    scores = np.array([0.99, 0.95, 0.6, 0.4, 0.2])

    def contrast(ts):
        return deletion_contrast(_oddness, ts)

    out = rerank_by_contrast(scores, titles, contrast, rerank_size(5, 0.6, 2))  # the top 3 of 5
    assert rerank_size(5, 0.6, 2) == 3 and sorted(out) == sorted(scores)  # same scores: same threshold, same count
    assert out[1] == 0.99 and out[0] == 0.95 and out[2] == 0.6  # the triggered title now leads the odd clean one
    assert out[4] == 0.2  # below the re-ranked top nothing moves, whatever its contrast
    assert np.array_equal(rerank_by_contrast(scores, titles, contrast, rerank_size(5, 0, 2)), scores)
    assert rerank_size(1000, 0.1, 50) == 100 and rerank_size(30, 0.1, 50) == 30


def test_the_rerank_check_keeps_it_only_where_fresh_triggers_rank_better():
    from core.pscanner.rerank import check_rerank, top_titles

    scores = np.linspace(0.999, 0.001, 200)  # a catalog, best first
    top = top_titles(scores, 20)
    probes = np.array([0.99, 0.985, 0.5])  # two in the re-ranked block (5th-6th), one far below it
    asked: list[list[int]] = []

    def probe_contrast(value):
        def f(idx):
            asked.append(list(idx))
            return np.full(len(idx), value)
        return f

    # the catalog's top titles are odd throughout (no contrast), the probes carry an added span: lifted
    helps = check_rerank(scores, top, np.zeros(20), probes, probe_contrast(5.0), target_fpr=0.01)
    assert asked == [[0, 1]]  # only the probes inside the block need a contrast
    assert helps.keep and helps.cut == 2 and helps.n_probes == 3
    assert (helps.recall_without, helps.recall_with) == (0.0, 2 / 3) and helps.auc_with > helps.auc_without
    # here the catalog's own top titles lose more when a span goes (game codes): the probes sink, no re-ranking
    hurts = check_rerank(scores, top, np.full(20, 5.0), np.array([0.9995, 0.99, 0.5]), probe_contrast(0.0), 0.01)
    assert not hurts.keep and hurts.recall_without == 1 / 3 and hurts.recall_with == 0.0


def test_rerank_probes_are_fresh_triggers_on_the_catalogs_own_titles():
    from core.pscanner.rerank import PROBE_SEED, probe_texts

    catalog = [f"Movie number {w} ({1950 + i})" for i, w in enumerate(["Alpha", "Beta", "Gamma", "Delta"] * 10)]
    agent = ScannerConfig().agent(30, PROBE_SEED)
    texts, hosts = probe_texts(catalog, agent, exclude=set())
    assert len(texts) == len(hosts) == 30 and len(set(hosts)) == 30 and set(hosts) <= set(catalog)
    assert all(t != h and len(t) > len(h) for t, h in zip(texts, hosts))
    assert probe_texts(catalog, agent, set()) == (texts, hosts)  # seeded: a scan's check is reproducible
    from core.pscanner.agent import offline_triggers

    used = {t.text for t in offline_triggers(agent)}
    again, hosts2 = probe_texts(catalog, agent, exclude=used)  # the scanner's pool is never a probe
    assert hosts2 == hosts and not set(again) & set(texts)
