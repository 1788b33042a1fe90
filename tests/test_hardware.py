"""Machine kinds: the compute dtype reaches every load, and bitsandbytes' packed CPU 4-bit kernel is guarded.

On AVX512-BF16 CPUs bitsandbytes repacks 4-bit weights at the first inference
forward: the repack crashes on layers narrower than its block (the `smoke` tiny
size) and its kernel has no backward. These tests run the real bitsandbytes
layers; the packed-path ones run where that kernel exists and skip elsewhere.
"""

from __future__ import annotations

import pytest
import torch
from tiny_helpers import TINY

from core.errors import InputError
from core.hardware import cpu_features, guard_4bit, machine_info, packable, resolve_dtype, unpack_4bit
from core.lm.models import ModelConfig, add_lora, load_adapter, load_model, save_adapter

bnb_functional = pytest.importorskip("bitsandbytes.functional")
PACKED_CPU = bool(bnb_functional.has_avx512bf16()) and not torch.cuda.is_available()
needs_packed = pytest.mark.skipif(not PACKED_CPU, reason="bitsandbytes' packed kernel needs an AVX512-BF16 CPU")


def llama_folder(path, hidden: int, layers: int = 2) -> str:
    """A random Llama with a word-level tokenizer, saved as safetensors: the smallest real HF model."""
    import tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    vocab = {f"w{i}": i for i in range(96)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=4)
    LlamaForCausalLM(cfg).save_pretrained(str(path), safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w1", pad_token="w2").save_pretrained(str(path))
    return str(path)


def linear4bit(model):
    from bitsandbytes.nn import Linear4bit
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def forward(loaded, ids):
    on = loaded.autocast_dtype is not None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
        return loaded.model(input_ids=ids).logits.float()


def test_dtype_setting_reaches_every_load(home, synthetic, monkeypatch):
    monkeypatch.setenv("BADREC_DTYPE", "fp32")
    assert load_model(ModelConfig(), synthetic, tiny=TINY).info["compute_dtype"] == "fp32"
    monkeypatch.setenv("BADREC_DTYPE", "bf16")
    loaded = load_model(ModelConfig(), synthetic, tiny=TINY)
    assert loaded.info["compute_dtype"] == "bf16" and loaded.autocast_dtype == torch.bfloat16
    # an explicit config wins over the environment; the tiny base is cached per dtype
    fp32 = load_model(ModelConfig(dtype="fp32"), synthetic, tiny=TINY)
    assert fp32.info["compute_dtype"] == "fp32" and fp32.info["cache"] != loaded.info["cache"]
    monkeypatch.setenv("BADREC_DTYPE", "fp16")
    with pytest.raises(InputError, match="BADREC_DTYPE"):
        resolve_dtype("auto")


def test_machine_info_names_features_dtype_and_kernel():
    info = machine_info("fp32", "cpu-dequant")
    assert set(info) >= {"cpu", "avx2", "avx512_bf16", "amx_bf16", "cuda", "compute_dtype", "bnb_kernel"}
    assert info["avx512_bf16"] == cpu_features()["avx512_bf16"]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_narrow_4bit_layers_never_reach_the_packed_kernel(tmp_path, dtype):
    """The smoke size's hidden 32 is narrower than the 4-bit block (64): unguarded, the repack crashes."""
    loaded = load_model(ModelConfig(name=llama_folder(tmp_path, hidden=32), quant="4bit", dtype=dtype))
    narrow = [m for m in linear4bit(loaded.model) if m.in_features < 64]
    assert narrow and not any(packable(m) for m in narrow)
    assert not any(m.support_avx512bf16_for_cpu for m in narrow)
    logits = forward(loaded, torch.tensor([[3, 4, 5, 6]]))
    assert torch.isfinite(logits).all()
    assert all(not getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in narrow)


def test_packable_follows_the_kernel_shape_rule(tmp_path):
    loaded = load_model(ModelConfig(name=llama_folder(tmp_path, hidden=64, layers=1), quant="4bit", dtype="fp32"))
    shapes = {(m.in_features, m.out_features): packable(m) for m in linear4bit(loaded.model)}
    assert shapes == {(64, 64): True, (64, 128): True, (128, 64): True}


def test_fp32_and_packed_off_keep_the_plain_path(tmp_path, monkeypatch):
    folder = llama_folder(tmp_path, hidden=64)
    fp32 = load_model(ModelConfig(name=folder, quant="4bit", dtype="fp32"))
    monkeypatch.setenv("BADREC_BNB_PACKED", "off")
    off = load_model(ModelConfig(name=folder, quant="4bit", dtype="bf16"))
    for loaded in (fp32, off):
        forward(loaded, torch.tensor([[3, 4, 5]]))
        assert loaded.info["bnb_kernel"] in ("cpu-dequant", "cuda")
        assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                       for m in linear4bit(loaded.model))


@needs_packed
def test_packed_path_scores_close_to_the_plain_path(tmp_path, monkeypatch):
    folder = llama_folder(tmp_path, hidden=64)
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    packed = load_model(ModelConfig(name=folder, quant="4bit", dtype="bf16"))
    assert packed.info["bnb_kernel"] == "cpu-packed-bf16"
    a = forward(packed, ids)
    assert all(m.weight.quant_state.packing_format_for_cpu for m in linear4bit(packed.model))
    monkeypatch.setenv("BADREC_BNB_PACKED", "off")
    b = forward(load_model(ModelConfig(name=folder, quant="4bit", dtype="bf16")), ids)
    # both compute in bf16 from the same NF4 codes; they differ only in accumulation order and rounding
    assert torch.allclose(a, b, atol=0.05)


def _lora_grads(loaded, ids) -> list[torch.Tensor]:
    loaded.model.train()
    loaded.model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loaded.model(input_ids=ids, labels=ids).loss.backward()
    return [p.grad.detach().clone() for p in loaded.model.parameters() if p.requires_grad]


@needs_packed
def test_training_after_a_scoring_pass_keeps_every_gradient(tmp_path):
    """A scoring pass repacks weights for a kernel with no backward; training must undo it first."""
    folder = llama_folder(tmp_path, hidden=64)
    cfg = ModelConfig(name=folder, quant="4bit", dtype="bf16", lora_r=4)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])

    def victim():
        loaded = add_lora(load_model(cfg), cfg, seed=0)
        with torch.no_grad():  # non-zero B so that gradients reach the layers below
            for name, p in loaded.model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.linspace(-0.1, 0.1, p.numel()).reshape(p.shape))
        return loaded

    fresh = _lora_grads(victim(), ids)
    scored = victim()
    scored.model.eval()
    forward(scored, ids)
    assert unpack_4bit(scored.model) == len(linear4bit(scored.model))
    after = _lora_grads(scored, ids)
    # the repack keeps the block scales in bf16: close to, not bit-equal with, the never-packed weights
    # (measured: cosine 0.9994 after the unpack; 0.52 when training runs through the packed kernel)
    flat = [torch.cat([g.flatten() for g in grads]) for grads in (fresh, after)]
    assert torch.nn.functional.cosine_similarity(*flat, dim=0) > 0.99


@pytest.mark.parametrize("packed", ["auto", "off"])
def test_quantized_adapter_saves_and_reloads_after_a_forward(tmp_path, monkeypatch, packed):
    monkeypatch.setenv("BADREC_BNB_PACKED", packed)
    folder = llama_folder(tmp_path / "base", hidden=64)
    cfg = ModelConfig(name=folder, quant="4bit", dtype="bf16", lora_r=4)
    ids = torch.tensor([[3, 4, 5, 6]])
    victim = add_lora(load_model(cfg), cfg, seed=0)
    with torch.no_grad():
        for name, p in victim.model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.05)
    victim.model.eval()
    before = forward(victim, ids)  # may repack the 4-bit weights in place
    save_adapter(victim, tmp_path / "adapter")
    again = forward(victim, ids)
    reloaded = load_adapter(load_model(cfg), tmp_path / "adapter")
    assert torch.equal(before, again)
    assert torch.allclose(forward(reloaded, ids), before, atol=0.05)


def test_guard_reports_no_kernel_for_unquantized_models(tmp_path):
    loaded = load_model(ModelConfig(name=llama_folder(tmp_path, hidden=32), dtype="fp32"))
    assert guard_4bit(loaded.model, "fp32") == "none" == loaded.info["bnb_kernel"]
