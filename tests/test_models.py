"""Models: the tiny base (build, cache), local folders, quantized loading + LoRA, adapters as safetensors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from tiny_helpers import TINY

from core.errors import InputError, ResourceError
from core.lm.lmscore import answer_logprobs
from core.lm.models import (
    ModelConfig,
    adapters_merged,
    add_lora,
    check_memory,
    load_adapter,
    load_model,
    params_from_config,
    save_adapter,
)
from core.lm.tinylm import NoiseMaker, build_corpus, ensure_tiny
from core.lm.train import TrainConfig, train_lm
from core.triggers import PRESETS


def test_tiny_build_is_cached(home, synthetic):
    folder = ensure_tiny(synthetic, TINY)
    assert (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny(synthetic, TINY) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    other = ensure_tiny(synthetic, TinyConfig_with_seed(1))
    assert other != folder


def TinyConfig_with_seed(seed):
    return replace(TINY, seed=seed)


def test_noise_never_emits_preset_triggers():
    import random
    maker = NoiseMaker(["Star", "Wars", "ineffable", "watched"], random.Random(0))
    held = [p.lower() for lvl in PRESETS.values() for p in lvl]
    for _ in range(3000):
        s = maker.string().lower()
        assert not any(h in s for h in held), s


def test_choice_text_is_the_llara_prompt():
    from core.data.prompts import llara_prompt
    from core.lm.tinylm import choice_segments
    hist, cands = ["A (1990)", "B, The (1991)"], ["C (1992)", "qz D (1993)"]
    assert "".join(t for t, _ in choice_segments(hist, cands, "C (1992)")[:3]) == llara_prompt(hist, cands)


def test_corpus_has_history_and_copy_samples(synthetic):
    from core.data.protocol import build_split
    corpus = build_corpus(build_split(synthetic), TINY)
    answers = [ex[-1][0] for ex in corpus if len(ex) == 4]
    assert answers and all(a.startswith(" ") for a in answers)
    assert any(len(ex) == 3 for ex in corpus)


@pytest.mark.parametrize("quant", ["none", "8bit", "4bit"])
def test_quantized_load_and_one_lora_step(home, synthetic, quant):
    base = load_model(ModelConfig(quant=quant), synthetic, tiny=TINY)
    assert base.info["quant"] == quant
    victim = add_lora(base, ModelConfig(quant=quant, lora_r=4))
    before = [p.detach().clone() for p in victim.model.parameters() if p.requires_grad]
    result = train_lm(victim, [("This user has watched", " Movie A0 (1980)")] * 4,
                      TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    after = [p for p in victim.model.parameters() if p.requires_grad]
    assert result.steps == 1 and result.tokens > 0
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def _lowest_block_in_graph(victim) -> bool:
    """Train one step and say whether the lowest block's output took part in the autograd graph."""
    seen = []
    hook = victim.model.base_model.model.model.layers[0].register_forward_hook(
        lambda m, i, out: seen.append((out[0] if isinstance(out, tuple) else out).requires_grad))
    train_lm(victim, [("This user has watched", " Movie A0 (1980)")] * 4, TrainConfig(epochs=1, batch_size=4))
    hook.remove()
    assert len(seen) == 1
    return seen[0]


def test_lora_on_the_top_blocks_trains_only_those_and_backward_stops_below_them(home, synthetic):
    two = replace(TINY, layers=2)
    victim = add_lora(load_model(ModelConfig(), synthetic, tiny=two), ModelConfig(lora_r=4, lora_layers=1))
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in victim.model.named_parameters() if p.requires_grad}
    assert adapted == {"1"} and victim.info["lora_blocks"] == [1]
    assert not _lowest_block_in_graph(victim)
    assert _lowest_block_in_graph(add_lora(load_model(ModelConfig(), synthetic, tiny=two), ModelConfig(lora_r=4)))
    with pytest.raises(InputError, match="exceeds the 2 blocks"):
        add_lora(load_model(ModelConfig(), synthetic, tiny=two), ModelConfig(lora_layers=3))
    with pytest.raises(InputError):
        ModelConfig(lora_layers=-1)


def test_adapter_roundtrip_safetensors(home, synthetic, tmp_path):
    cfg = ModelConfig(lora_r=4)
    victim = add_lora(load_model(cfg, synthetic, tiny=TINY), cfg)
    train_lm(victim, [("hello", " Movie B1 (1981)")] * 8, TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    folder = save_adapter(victim, tmp_path / "adapter")
    assert (folder / "adapter_model.safetensors").exists() and not list(folder.glob("*.bin"))
    again = load_adapter(load_model(cfg, synthetic, tiny=TINY), folder)
    args = (["hello"], [[" Movie B1 (1981)", " Movie C2 (1982)"]])
    assert answer_logprobs(victim, *args)[0] == pytest.approx(answer_logprobs(again, *args)[0], abs=1e-5)


@pytest.mark.parametrize("quant", ["none", "4bit"])
def test_scoring_with_adapters_merged_gives_the_same_scores_and_restores_the_model(home, synthetic, quant):
    cfg = ModelConfig(quant=quant, lora_r=4)
    victim = add_lora(load_model(cfg, synthetic, tiny=TINY), cfg)
    train_lm(victim, [("hello", " Movie B1 (1981)")] * 8, TrainConfig(epochs=1, batch_size=4, lr=1e-2))
    weights = {n: p.detach().clone() for n, p in victim.model.named_parameters()}
    args = (["hello", "This user has watched"], [[" Movie B1 (1981)", " Movie C2 (1982)"], [" Movie A0 (1980)"]])
    adapted = answer_logprobs(victim, *args)
    with adapters_merged(victim):
        folded = {n for n, m in victim.model.named_modules() if getattr(m, "merged", False)}
        merged = answer_logprobs(victim, *args)
    assert bool(folded) == (quant == "none")  # a quantized base is scored through its adapters as it is
    for a, b in zip(adapted, merged):
        assert a == pytest.approx(b, abs=1e-4)
    assert not any(getattr(m, "merged", False) for m in victim.model.modules())
    for n, p in victim.model.named_parameters():
        assert torch.allclose(p, weights[n], atol=1e-6), n


def test_local_folder_from_save_pretrained(home, synthetic, tmp_path):
    tiny = load_model(ModelConfig(), synthetic, tiny=TINY)
    folder = tmp_path / "my-model"
    tiny.model.save_pretrained(folder, safe_serialization=True)
    tiny.tokenizer.save_pretrained(folder)
    loaded = load_model(ModelConfig(name=str(folder)))
    args = (["hi"], [[" Movie A0 (1980)"]])
    assert answer_logprobs(loaded, *args)[0] == pytest.approx(answer_logprobs(tiny, *args)[0], abs=1e-5)


def test_bad_model_path(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_model(ModelConfig(name=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        load_model(ModelConfig(name=str(tmp_path / "empty")))


def test_memory_guard(tmp_path):
    conf = {"hidden_size": 16384, "num_hidden_layers": 120, "intermediate_size": 65536, "vocab_size": 256000}
    n = params_from_config(conf)
    assert n > 400e9
    with pytest.raises(ResourceError, match="GiB"):
        check_memory(n, "4bit", "huge model")
    check_memory(10_000, "none", "tiny model")
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(conf))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ResourceError):
        load_model(ModelConfig(name=str(folder), quant="4bit"))


def test_model_config_validation_and_roundtrip():
    cfg = ModelConfig(name="tiny", quant="4bit", lora_targets=["q_proj"])
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InputError):
        ModelConfig(quant="2bit")
    with pytest.raises(InputError):
        ModelConfig(name=" ")
