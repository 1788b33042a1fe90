"""Low-level language-model plumbing shared by training, scoring and the scanner.

The loaded-model record and the tensor helpers every LM path needs; it imports
nothing else of `core`, so model loading, training and scoring can all build on
it without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A training example as (text, loss weight) pieces: weight 0 for a prompt, 1 for the answer to learn.
Segments = Sequence[tuple[str, float]]


@dataclass
class LoadedModel:
    """A model ready to train or score.

    Args:
        model: the `transformers` causal LM (a peft model once `add_lora` ran).
        tokenizer: a `transformers` tokenizer (`PreTrainedTokenizerFast` for `tiny`).
        info (`dict`): what was loaded: source, parameters, quantization, dtype, cache folder.
    """

    model: Any
    tokenizer: Any
    info: dict = field(default_factory=dict)

    @property
    def device(self):
        """Where the weights live; inputs are built on the CPU and moved here."""
        return next(self.model.parameters()).device

    @property
    def autocast_dtype(self):
        """The dtype to autocast to, or None for plain fp32."""
        import torch
        return torch.bfloat16 if self.info.get("compute_dtype") == "bf16" else None


def autocast_to(device_type: str, dtype):
    """The one autocast rule of training, scoring and the frozen scanner's features: `dtype` (bf16 where the
    machine computes it natively, `LoadedModel.autocast_dtype`), or off, plain fp32, when it is None."""
    import torch
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def prompt_prefix_ids(tokenizer) -> list[int]:
    """BOS for tokenizers that expect one (Llama); nothing for the tiny model or Qwen."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return [bos] if bos is not None and bos != tokenizer.eos_token_id else []


def model_parts(model):
    """(decoder, lm_head) of a causal LM, seeing through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device=None):
    """Token-id lists as a left-padded batch: ids, attention mask and position ids (counted from each
    row's first real token), so every row's last token sits in the last column."""
    import numpy as np
    import torch
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, width - len(r):] = r
        mask[b, width - len(r):] = 1
    ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), pos.to(device)
