"""The frozen-LLM scanner (core.pscanner.scanner_frozen) on a tiny Llama GGUF written by the test: the real GGUF
conversion, tokenizer, forward passes, head fitting and safetensors cache, on a 2-layer model."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

from core.cli.main import main as cli
from core.lm.models import ModelConfig
from core.pscanner.linear_head import PRIOR_HEAD, PRIOR_META, fit_head, save_head, shipped_prior
from core.pscanner.scanner import FrozenHeadConfig, ScannerConfig
from core.pscanner.scanner_frozen import FeatureExtractor, example_hosts, extractor_for, title_examples
from core.pscanner.scanner_train import get_scanner

pytest.importorskip("gguf")
from test_gguf_model import write_tiny_gguf  # noqa: E402  (after the importorskip)

WORDS = ["Moon", "River", "Night", "Story", "Ghost", "Summer", "King", "Road", "Heart", "Storm", "City", "Fire"]


def titles(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return sorted({f"{rng.choice(WORDS)} {rng.choice(WORDS)} ({rng.randint(1950, 2000)})" for _ in range(n * 3)})[:n]


@pytest.fixture
def gguf_cfg(home, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    return ScannerConfig(model=ModelConfig(name=str(path)), n_triggers=40, rounds=1, agent_per_round=20,
                         frozen=FrozenHeadConfig(pos_per_title=2))


def test_a_gguf_scanner_defaults_to_frozen_features_and_mini_stays_fine_tuned(gguf_cfg):
    assert gguf_cfg.mode == "frozen" and ScannerConfig(model=ModelConfig(name="smollm2-135m")).mode == "frozen"
    assert ScannerConfig().mode == "full" and ScannerConfig(model=ModelConfig(name="tiny")).mode == "lora"


def test_a_texts_features_do_not_depend_on_the_texts_computed_with_it(gguf_cfg):
    """A scan's numbers must not depend on what the process computed before (the dashboard keeps one extractor):
    the same text alone, in a batch of other lengths or among other texts of its length gives the same features
    (bit for bit on bf16, to float rounding in fp32, where the BLAS path depends on the batch's row count)."""
    ext = extractor_for(gguf_cfg)
    texts = ["Moon River (1961)", "A much longer title with many more words in it (1999) and more", "X",
             "Moon Rover (1962)", "Night Story", ""]
    together = ext.features(texts)
    assert together.shape == (6, ext.dim) and set(texts) <= set(ext.cache)
    for batch_size in (1, 2):
        alone = FeatureExtractor(ext.model, ext.tokenizer, batch_size=batch_size, dtype=ext.dtype)
        np.testing.assert_allclose(alone.features(texts[::-1])[::-1], together, rtol=1e-5, atol=1e-5)
    later = FeatureExtractor(ext.model, ext.tokenizer, dtype=ext.dtype)
    later.features(["Moon Rover (1961)", "A title"])  # cached first, so the rest are batched differently
    np.testing.assert_allclose(later.features(texts), together, rtol=1e-5, atol=1e-5)


def test_in_fp32_texts_of_every_length_share_full_batches_and_in_bf16_only_equal_lengths(gguf_cfg, monkeypatch):
    """A small batch costs nearly a full one's time on a CPU (the weights are streamed once per batch), so fp32,
    where a batch moves a row by float rounding only, packs texts of any length; bf16 keeps one length per batch
    for bit-identical features (E50, E60 in docs/SCANNER.md)."""
    import torch

    ext = extractor_for(gguf_cfg)
    texts = ["X", "Night Story", "Moon River (1961)", "A much longer title with many more words in it (1999)"]
    lengths = {len(ext.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts}
    assert len(lengths) == len(texts)
    for dtype, passes in ((None, 2), (torch.bfloat16, len(texts))):
        fresh = FeatureExtractor(ext.model, ext.tokenizer, ext.layers, batch_size=3, dtype=dtype)
        seen = []
        monkeypatch.setattr(fresh, "_forward",
                            lambda encs, f=fresh._forward, seen=seen: seen.append(len(encs)) or f(encs))
        assert fresh.features(texts).shape == (4, fresh.dim)
        assert len(seen) == passes and sum(seen) == len(texts)


def test_features_read_from_the_prefix_cache_equal_the_models_own_forward_over_the_whole_text(gguf_cfg):
    """The cue before every title is run once and its KV cache reused: each title's hidden states and token
    surprisals must be those of one plain forward pass over `prefix + title + newline`."""
    import torch

    ext = extractor_for(gguf_cfg)
    texts = ["Moon River (1961)", "Night Story", "X"]
    got = FeatureExtractor(ext.model, ext.tokenizer, dtype=ext.dtype).features(texts)
    width = ext.model.config.hidden_size
    for text, row in zip(texts, got):
        title = ext.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ext.prefix + title + ext.close])
        with torch.inference_mode():
            out = ext.model(input_ids=ids, output_hidden_states=True)
        a, m = len(ext.prefix), len(title)
        last = out.hidden_states[ext.layers[-1]][0, a:a + m]
        surprisal = -torch.log_softmax(out.logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[a - 1:, 0]
        k = len(ext.layers) - 1
        np.testing.assert_allclose(row[2 * k * width:(2 * k + 1) * width], last.mean(0).numpy(), atol=1e-4)
        np.testing.assert_allclose(row[-6:-1], [surprisal[:-1].max(), surprisal[:-1].mean(), surprisal[-1],
                                                 surprisal[0], surprisal[-2]], rtol=1e-4, atol=1e-4)


def test_fit_head_separates_separable_data_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    a, b = fit_head(x, y, 1e-3), fit_head(x, y, 1e-3)
    assert np.array_equal(a.predict(x), b.predict(x))
    assert np.mean((a.predict(x) >= 0.5) == y) > 0.97


def test_a_head_fitted_on_little_data_keeps_its_prior_and_on_much_data_follows_the_data():
    rng = np.random.default_rng(1)
    big = rng.normal(3.0, 4.0, size=(4000, 40))  # the prior's features: other location and scale than a fold's
    prior = fit_head(big, (big[:, 0] > 3.0).astype(float), 1e-3)  # what the prior learnt: feature 0 says poisoned
    few = rng.normal(size=(12, 40))
    pinned = fit_head(few, (few[:, 1] > 0).astype(float), 1e6, prior=prior)  # an overwhelming penalty
    np.testing.assert_allclose(pinned.w / pinned.sd, prior.w / prior.sd, rtol=1e-3, atol=1e-6)  # the prior's slope
    few = rng.normal(3.0, 4.0, size=(12, 40))  # a fold of 12 titles whose labels follow the same rule
    probe = rng.normal(3.0, 4.0, size=(500, 40))
    truth = probe[:, 0] > 3.0
    with_prior = np.mean((fit_head(few, (few[:, 0] > 3.0).astype(float), 1.0, prior=prior).predict(probe) >= 0.5)
                         == truth)
    without = np.mean((fit_head(few, (few[:, 0] > 3.0).astype(float), 1.0).predict(probe) >= 0.5) == truth)
    assert with_prior > 0.95 and with_prior > without + 0.1  # 12 examples in 40 dimensions: the prior carries it
    many = rng.normal(size=(3000, 40))
    follows = fit_head(many, (many[:, 1] > 0).astype(float), 1e-3, prior=prior)
    probe = rng.normal(size=(500, 40))
    assert np.mean((follows.predict(probe) >= 0.5) == (probe[:, 1] > 0)) > 0.95  # enough data overrules it


def test_title_examples_are_the_same_whichever_fold_asks(gguf_cfg):
    from core.pscanner.agent import AgentConfig, propose

    pool = propose(AgentConfig(n=20, seed=0)).triggers
    one = title_examples("Moon River (1961)", pool, gguf_cfg, ["Night"])
    assert one == title_examples("Moon River (1961)", pool, gguf_cfg, ["Night"])
    assert [e.label for e in one].count(True) == 2 and one[0].title == "Moon River (1961)"


def test_a_trained_frozen_scanner_learns_its_triggers_and_round_trips_through_the_cache(gguf_cfg):
    train = titles(60)
    scanner, cached = get_scanner(train, gguf_cfg, domain="toy")
    assert not cached and scanner.info["kind"].startswith("frozen")
    from core.pscanner.agent import AgentConfig, propose

    pool = propose(AgentConfig(n=40, seed=0)).triggers
    held = titles(30, seed=9)
    triggered = [pool[i % len(pool)].render(t) for i, t in enumerate(held)]
    s_clean, s_trig = scanner.score(held), scanner.score(triggered)
    assert ((0 <= s_clean) & (s_clean <= 1)).all()
    assert s_trig.mean() > s_clean.mean() + 0.2  # a 2-layer random LM still tells its triggers' tokens
    again, cached = get_scanner(train, gguf_cfg, domain="toy")
    assert cached and again.threshold == scanner.threshold
    np.testing.assert_allclose(again.score(held + triggered), scanner.score(held + triggered), atol=1e-9)
    assert len(scanner.spans(triggered[:3])) == 3


def test_an_adversarial_round_probes_at_most_its_share_of_fresh_triggers_per_title(gguf_cfg):
    """On a small catalog the agent's `agent_per_round` triggers crowd a few titles: with `probes_per_title` a round
    probes at most that many per title, a large catalog still gets the agent's number, and 0 (the default) keeps it."""
    from dataclasses import replace

    for per_title, n_titles, expected in ((1, 30, 30), (2, 30, 60), (3, 60, 100), (0, 30, 100)):
        cfg = replace(gguf_cfg, agent_per_round=100, miss_eps=0.0,
                      frozen=FrozenHeadConfig(pos_per_title=1, probes_per_title=per_title))
        scanner, _ = get_scanner(titles(n_titles), cfg, domain="toy", use_cache=False)
        assert scanner.history[1]["n_proposed"] == expected == cfg.frozen.round_probes(100, n_titles)


def test_only_the_example_titles_get_copies_and_every_fold_picks_from_the_same_ones(gguf_cfg):
    """`example_titles` bounds the texts a large catalog's heads featurize: a fold's titles outside the catalog-wide
    sample train as themselves only (No), and two folds' samples are one sample cut by their own titles."""
    from dataclasses import replace

    catalog = titles(60)
    hosts = example_hosts(catalog, 12)
    assert len(hosts) == 12 and example_hosts(catalog, 60) is None and example_hosts(catalog, 0) is None
    cfg = replace(gguf_cfg, rounds=0, frozen=FrozenHeadConfig(pos_per_title=2, hard_per_title=1, example_titles=12))
    for fold in (catalog[:45], catalog[15:]):
        scanner, _ = get_scanner(fold, cfg, domain="toy", use_cache=False, base_titles=catalog)
        n_train = scanner.info["n_train_titles"]
        mine = hosts & set(fold)
        assert mine < set(fold) and n_train < scanner.history[0]["n_examples"] <= n_train + 3 * len(mine)


def test_a_small_catalogs_heads_shrink_towards_the_prior_whose_checksum_keys_their_cache(gguf_cfg, tmp_path,
                                                                                          monkeypatch):
    """Heads on at most `prior_max_titles` titles start from the prior head of their model and layers; its bytes
    are in their cache key, so a rebuilt prior never serves heads fitted towards the old one."""
    import hashlib
    from dataclasses import replace

    from core.pscanner import linear_head
    from core.pscanner.scanner_train import scanner_key

    def with_prior(cap: int) -> ScannerConfig:
        return replace(gguf_cfg, frozen=replace(gguf_cfg.frozen, prior_max_titles=cap))

    prior, _ = get_scanner(titles(60, seed=3), with_prior(0), domain="other catalogs", use_cache=False)
    folder = tmp_path / "prior"
    folder.mkdir()
    save_head(prior.head, folder / PRIOR_HEAD)
    meta = {"model": gguf_cfg.model.name, "layers": list(gguf_cfg.frozen.layers), "n_titles": 60}
    (folder / PRIOR_META).write_text(json.dumps(meta))
    monkeypatch.setattr(linear_head, "PRIOR_DIR", folder)
    small = titles(30)
    shrunk, _ = get_scanner(small, with_prior(30), domain="toy", use_cache=False)
    plain, _ = get_scanner(small, with_prior(29), domain="toy", use_cache=False)  # 30 titles: above the cap
    assert shrunk.info["prior"] == {"sha256": hashlib.sha256((folder / PRIOR_HEAD).read_bytes()).hexdigest(),
                                    "n_titles": 60}
    assert plain.info["prior"] is None and not np.allclose(shrunk.head.w, plain.head.w)
    keys = scanner_key(small, with_prior(30)), scanner_key(small, with_prior(29))
    save_head(plain.head, folder / PRIOR_HEAD)  # the prior rebuilt
    assert scanner_key(small, with_prior(30)) != keys[0] and scanner_key(small, with_prior(29)) == keys[1]
    (folder / PRIOR_META).write_text(json.dumps(meta | {"layers": [0]}))  # built on other features: not used
    assert get_scanner(small, with_prior(30), domain="toy", use_cache=False)[0].info["prior"] is None


def test_the_shipped_prior_fits_the_default_scanners_features():
    prior = shipped_prior("smollm2-135m", FrozenHeadConfig().layers)
    assert prior is not None and prior.head.w.shape == (2 * 3 * 576 + 6,)  # mean and last state of 3 layers
    assert prior.meta["n_titles"] >= 1000 and not {"ml-100k", "steam"} & set(prior.meta["datasets"])


def test_scan_of_an_upload_with_a_gguf_scanner_cross_fits_frozen_heads(gguf_cfg, tmp_path, capsys):
    cat = titles(50, seed=3)
    path = tmp_path / "catalog.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title"])
        w.writerows(enumerate(cat))
    out = tmp_path / "scores.csv"
    args = ["scan", "--catalog", str(path), "--scanner-model", gguf_cfg.model.name, "--rounds", "0", "--out", str(out),
            "--no-spans", "--json"]
    assert cli([*args, "--rerank", "0", "--campaign-spread", "0"]) == 0  # no variants of the campaign step's checks
    res = json.loads(capsys.readouterr().out)
    assert res["n_items"] == 50 and res["calibration"]["n_scores"] == 50 and "rerank" not in res["calibration"]
    # every fold's head trained on the same texts of a title: each featurized once, not once per fold
    per_title = 1 + gguf_cfg.frozen.hard_per_title + 1  # the CLI's recipe: one triggered copy per title
    assert 50 * 2 < len(extractor_for(gguf_cfg).cache) <= 50 * per_title

    def scores() -> list[float]:
        with open(out, newline="") as fh:
            return [float(r["score"]) for r in csv.DictReader(fh)]

    plain = scores()
    assert len(plain) == 50 and all(0 <= s <= 1 for s in plain)
    # by default the top titles (all 50 of so small a catalog) are re-ordered by deletion contrast: the same
    # scores handed out in another order, so the same threshold flags as many titles
    assert cli(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["calibration"]["rerank"]["n_titles"] == 50 and again["n_flagged"] == res["n_flagged"]
    reordered = scores()
    assert sorted(reordered) == sorted(plain) and reordered != plain and "check" not in again["calibration"]["rerank"]
    # asked to, fresh triggers on the catalog's own titles decide first, and the scores follow the verdict
    assert cli([*args, "--rerank-probes", "60"]) == 0
    checked = json.loads(capsys.readouterr().out)["calibration"]["rerank"]
    assert 40 <= checked["check"]["n_probes"] <= 50 and checked["applied"] == checked["check"]["keep"]
    assert scores() == (reordered if checked["applied"] else plain)


def test_auto_picks_the_llm_for_catalogs_it_scans_in_minutes_and_mini_for_bulk():
    from core.pscanner.scanner import AUTO_LLM_MAX_TITLES, LLM_SCANNER, resolve_model

    auto = ScannerConfig(model=ModelConfig(name="auto"), rounds=1)
    assert resolve_model(auto, AUTO_LLM_MAX_TITLES).model.name == LLM_SCANNER
    assert resolve_model(auto, AUTO_LLM_MAX_TITLES + 1).model.name == "mini"
    assert resolve_model(auto, 10).rounds == 1 and resolve_model(ScannerConfig(), 10).model.name == "mini"
    assert resolve_model(auto, 10, reference=True).model.name == "mini"  # a trusted reference: fine-tuned mini


def test_a_scan_has_a_trusted_reference_for_a_run_or_an_upload_with_its_domain():
    from core.pscanner.scan_config import ScanConfig, has_reference

    assert has_reference(ScanConfig(source="run", run_id="r"))
    assert has_reference(ScanConfig(source="catalog", catalog_path="c.csv", dataset="ml-100k"))
    assert not has_reference(ScanConfig(source="catalog", catalog_path="c.csv"))
    assert not has_reference(ScanConfig(source="catalog", catalog_path="c.csv", dataset="ml-100k", train_on="catalog"))
    assert not has_reference(ScanConfig(source="dataset", dataset="ml-100k"))  # it scans the dataset itself


def test_a_checked_reranking_charges_its_probes_to_the_time_estimate():
    from core.pscanner.scan_config import ScanConfig, contrasted_titles

    frozen = ScannerConfig(model=ModelConfig(name="x.gguf"), finetune="frozen")
    own = ScanConfig(source="catalog", catalog_path="c.csv", scanner=frozen)
    assert contrasted_titles(own, 2000) == 100 and contrasted_titles(own, 600) == 50  # the top 5 %, at least 50
    assert contrasted_titles(ScanConfig(source="catalog", catalog_path="c.csv", scanner=frozen, rerank_probes=60),
                             2000) == 160
    assert contrasted_titles(ScanConfig(source="run", run_id="r", scanner=frozen, rerank_probes=60), 2000) == 0


def test_the_feature_cache_stops_growing_at_its_limit_and_features_stay_right(gguf_cfg, monkeypatch):
    import core.pscanner.scanner_frozen as sf

    ext = extractor_for(gguf_cfg)
    texts = ["Moon (1961)", "River (1970)", "Night Story", "Ghost King (1999)"]
    full = FeatureExtractor(ext.model, ext.tokenizer, dtype=ext.dtype).features(texts)
    monkeypatch.setattr(sf, "CACHE_LIMIT", 2)
    small = FeatureExtractor(ext.model, ext.tokenizer, dtype=ext.dtype)
    np.testing.assert_allclose(small.features(texts), full, atol=1e-6)
    assert len(small.cache) == 2


def test_a_frozen_scanners_cache_key_names_the_dtype_of_its_features(monkeypatch, gguf_cfg):
    """A head learnt on bf16 features (an AVX512-BF16 or CUDA machine) is not reused on fp32 features; the
    fine-tuned `mini` computes in fp32 everywhere, so its key does not move."""
    from core.pscanner.scanner_train import scanner_key

    titles = ["Moon River (1961)", "Night Story (1999)"]
    keys = {}
    for dtype in ("fp32", "bf16"):
        monkeypatch.setenv("BADREC_DTYPE", dtype)
        keys[dtype] = (scanner_key(titles, gguf_cfg), scanner_key(titles, ScannerConfig()))
    assert keys["fp32"][0] != keys["bf16"][0] and keys["fp32"][1] == keys["bf16"][1]


def test_features_follow_the_models_compute_dtype(gguf_cfg, monkeypatch):
    """bf16 autocast where the machine computes bf16 natively: features stay close to fp32's."""
    import torch

    from core.pscanner import scanner_frozen as sf

    monkeypatch.setenv("BADREC_DTYPE", "bf16")
    sf._EXTRACTORS.clear()
    ext = extractor_for(gguf_cfg)
    assert ext.dtype == torch.bfloat16
    texts = ["Moon River (1961)", "Ghost King (1999)", "Summer Road"]
    fp32 = FeatureExtractor(ext.model, ext.tokenizer).features(texts)
    bf16 = ext.features(texts)
    assert not np.array_equal(fp32, bf16)
    np.testing.assert_allclose(bf16, fp32, rtol=0.1, atol=0.1 * float(np.abs(fp32).max()))
    sf._EXTRACTORS.clear()
