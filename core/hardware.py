"""What this machine computes with: CPU features, the compute dtype and bitsandbytes' 4-bit kernel path.

The same seed gives different numbers on an AVX2-only CPU (bf16 emulated, so
fp32) and on one with AVX512-BF16 or AMX (bf16, and bitsandbytes' packed 4-bit
kernel): every run records `machine_info` so a stored number says which.
`BADREC_DTYPE` (auto|fp32|bf16) and `BADREC_BNB_PACKED` (auto|off) force either
path on any machine that can run it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .errors import InputError

DTYPES = ("auto", "bf16", "fp32")
DTYPE_ENV = "BADREC_DTYPE"
PACKED_ENV = "BADREC_BNB_PACKED"
PACKED_MODES = ("auto", "off")
# bitsandbytes' CPU repack tiles the output dimension in blocks of 32 rows (`block_n`)
PACKED_BLOCK_N = 32


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", frozenset()
    name, flags = "", frozenset()
    for line in text.splitlines():
        if line.startswith("model name") and not name:
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = frozenset(line.split(":", 1)[1].split())
    return name, flags


def cpu_features() -> dict:
    """The CPU features that change speed or numbers here: AVX2, AVX512-BF16, AMX."""
    name, flags = _cpuinfo()
    return {"cpu": name, "avx2": "avx2" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags}


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def native_bf16() -> bool:
    """True where bf16 matmuls are fast: CUDA, or a CPU with AVX512-BF16 or AMX (~80x slower emulated)."""
    feats = cpu_features()
    return _cuda() or feats["avx512_bf16"] or feats["amx_bf16"]


def _env_choice(var: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(var, "auto").strip().lower() or "auto"
    if value not in choices:
        raise InputError(f"{var}={value!r} is not one of {', '.join(choices)}")
    return value


def resolve_dtype(requested: str = "auto") -> str:
    """`bf16` or `fp32`: an explicit request wins, then `BADREC_DTYPE`, then what this machine runs fast."""
    if requested not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}")
    if requested == "auto":
        requested = _env_choice(DTYPE_ENV, DTYPES)
    if requested != "auto":
        return requested
    return "bf16" if native_bf16() else "fp32"


def packed_4bit_available(compute_dtype: str) -> bool:
    """Whether bitsandbytes may take its packed CPU 4-bit kernel for inference.

    That kernel computes in bf16 whatever the compute dtype says, so an fp32 run
    keeps the dequantize-and-matmul path; `BADREC_BNB_PACKED=off` turns it off
    for bf16 runs too.
    """
    from bitsandbytes.functional import has_avx512bf16
    if _cuda() or compute_dtype != "bf16" or _env_choice(PACKED_ENV, PACKED_MODES) == "off":
        return False
    return bool(has_avx512bf16())


def packable(module) -> bool:
    """Can bitsandbytes' CPU repack take this `Linear4bit`? (It fails on layers narrower than a block.)"""
    block = int(getattr(module.weight, "blocksize", 64) or 64)
    return (module.in_features >= block and module.in_features % block == 0
            and module.out_features % PACKED_BLOCK_N == 0)


def _linear4bit_modules(model):
    from bitsandbytes.nn import Linear4bit
    return [m for m in model.modules() if isinstance(m, Linear4bit)]


def guard_4bit(model, compute_dtype: str) -> str:
    """Let only layers the packed kernel accepts reach it; returns the kernel path for the run record.

    bitsandbytes repacks a 4-bit weight at its first CPU inference forward on
    AVX512-BF16 machines, and the repack crashes for layers narrower than its
    block size (64): such layers, and every layer when the packed path is off,
    keep the plain path.
    """
    layers = _linear4bit_modules(model)
    if not layers:
        return "none"
    if _cuda():
        return "cuda"
    allowed = packed_4bit_available(compute_dtype)
    n_packed = 0
    for m in layers:
        m.support_avx512bf16_for_cpu = allowed and packable(m)
        n_packed += m.support_avx512bf16_for_cpu
    if n_packed == 0:
        return "cpu-dequant"
    return "cpu-packed-bf16" if n_packed == len(layers) else f"cpu-packed-bf16 ({n_packed}/{len(layers)} layers)"


def unpack_4bit(model) -> int:
    """Undo the inference-only repack before training; returns how many layers it restored.

    A repacked weight runs through a kernel with no backward, so training after a
    scoring pass would silently drop gradients through those layers (measured:
    LoRA weights with no gradient). bitsandbytes undoes it the same way when saving.
    """
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    n = 0
    for m in _linear4bit_modules(model):
        state = getattr(m.weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu_inverse(m.weight.data, state)
            n += 1
    return n


def machine_kind() -> str:
    """One word for the kind of machine, as tables show it: cuda, amx, avx512-bf16, avx2 or other."""
    feats = cpu_features()
    if _cuda():
        return "cuda"
    if feats["amx_bf16"]:
        return "amx"
    if feats["avx512_bf16"]:
        return "avx512-bf16"
    return "avx2" if feats["avx2"] else "other"


def machine_info(compute_dtype: str, bnb_kernel: str | None = None) -> dict:
    """What a run records about where it ran: CPU features, CUDA, compute dtype, 4-bit kernel path."""
    info = {"kind": machine_kind(), **cpu_features(), "cuda": _cuda(), "compute_dtype": compute_dtype}
    if bnb_kernel is not None:
        info["bnb_kernel"] = bnb_kernel
    return info
