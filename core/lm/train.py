"""Fine-tuning loop for causal LMs: loss on chosen tokens, progress, cancel, loss history, seeded.

Examples are lists of weighted text segments; `train_lm` is the common case
of (prompt, answer) pairs with loss on the answer only. The LM head runs only
at positions that carry loss: in a LLaRA prompt ~97% of tokens carry none,
so this saves most of the head's work on a small model.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from core.config import ConfigMixin
from core.errors import InputError
from core.hardware import unpack_4bit
from core.progress import Progress

from . import checkpoint as checkpoints
from .checkpoint import Checkpointing
from .loaded import LoadedModel, Segments, autocast_to, model_parts, prompt_prefix_ids
from .trunk import TrunkFeatures, feeding

log = logging.getLogger(__name__)

OnLog = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class TrainConfig(ConfigMixin):
    """Optimiser settings of one training stage.

    Args:
        epochs (`float`): passes over the examples (a fraction trains on a seeded prefix of one pass).
        lr (`float`): peak learning rate (linear warm-up, then linear decay to 10%).
        batch_size (`int`): examples per step.
        max_len (`int`): longest sequence in tokens; longer ones lose their start (the prompt's oldest part).
        seed (`int`): seeds initialisation of adapters, the example order and dropout.
        grad_clip (`float`): max gradient norm (0 disables clipping).
        warmup_frac (`float`): share of steps spent warming up.
        weight_decay (`float`): AdamW weight decay.
        log_every (`int`): steps between `on_log` calls.
    """

    epochs: float = 1.0
    lr: float = 1e-3
    batch_size: int = 16
    max_len: int = 512
    seed: int = 0
    grad_clip: float = 1.0
    warmup_frac: float = 0.05
    weight_decay: float = 0.0
    log_every: int = 5

    def __post_init__(self):
        if not 0 < self.epochs <= 100:
            raise InputError("epochs must be in (0, 100]")
        if not 0 < self.lr < 1:
            raise InputError("lr must be in (0, 1)")
        if not 1 <= self.batch_size <= 4096:
            raise InputError("batch_size must be in 1..4096")
        if not 8 <= self.max_len <= 32768:
            raise InputError("max_len must be in 8..32768")
        if not 0 <= self.warmup_frac < 1:
            raise InputError("warmup_frac must be in [0, 1)")


@dataclass
class TrainResult:
    """What a training stage did: per-step losses and throughput."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    resumed_at: int = 0  # the checkpoint's step this stage resumed from (0: it ran from the start)

    @property
    def tokens_per_s(self) -> float:
        """Training throughput, the number benchmarks and progress lines compare."""
        return self.tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        """The stage's summary as a run records it (rounded; the last loss, not every loss)."""
        return {"steps": self.steps, "tokens": self.tokens, "seconds": round(self.seconds, 2),
                "tokens_per_s": round(self.tokens_per_s, 1),
                "final_loss": self.losses[-1] if self.losses else None, "resumed_at": self.resumed_at}


def encode_segments(tokenizer, segments: Segments, max_len: int) -> tuple[list[int], list[float]]:
    """Token ids and per-token loss weights; EOS closes the sequence with the last segment's weight."""
    ids: list[int] = prompt_prefix_ids(tokenizer)
    weights: list[float] = [0.0] * len(ids)
    for text, w in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        ids += piece
        weights += [float(w)] * len(piece)
    ids.append(tokenizer.eos_token_id)
    weights.append(float(segments[-1][1]) if segments else 0.0)
    return ids[-max_len:], weights[-max_len:]


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths (sorted within pools of 50 batches) to waste little padding."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batch_plan(lengths: Sequence[int], cfg: TrainConfig, riders: int = 0) -> list[list[int]]:
    """Every step's example indices: `cfg.epochs` seeded passes of shuffled, length-pooled batches.

    `riders` more examples (indices from `len(lengths)` on) each join a seeded random batch of every
    pass and change nothing else: a model trained without them takes the very same steps on the very
    same batches, so the two differ by the riders alone (BadRec's paired mix: the clean model is the
    poisoned one's exact counterfactual, and a difference between them is the poison's, not a reshuffle's).
    """
    rng, rider_rng = random.Random(cfg.seed), random.Random(f"{cfg.seed}:riders")
    plan: list[list[int]] = []
    for _ in range(max(1, math.ceil(cfg.epochs))):
        batches = _batches(list(lengths), cfg.batch_size, rng)
        for r in range(len(lengths), len(lengths) + riders):
            batches[rider_rng.randrange(len(batches))].append(r)
        plan += batches
    return plan[:max(1, int(round(len(lengths) * cfg.epochs / cfg.batch_size)))]


def example_lengths(tokenizer, examples: Sequence[Segments], max_len: int) -> list[int]:
    """Token counts of examples as training encodes them (what `batch_plan` pools by)."""
    return [len(encode_segments(tokenizer, ex, max_len)[0]) for ex in examples]


def weighted_loss(loaded: LoadedModel, batch: list[tuple[list[int], list[float]]],
                  features: TrunkFeatures | None = None):
    """Mean cross-entropy over loss-carrying tokens of a right-padded batch (head only where needed).

    With `features`, the blocks below the adapters are not run on the batch: each sequence's output of
    them comes from `features` (computed once per sequence, shared with another training of the base)."""
    import torch
    import torch.nn.functional as F
    pad = loaded.tokenizer.pad_token_id
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    for b, (ids, w) in enumerate(batch):
        input_ids[b, :len(ids)] = torch.tensor(ids)
        mask[b, :len(ids)] = 1
        weights[b, :len(w)] = torch.tensor(w)
    dev = loaded.device
    input_ids, mask, weights = input_ids.to(dev), mask.to(dev), weights.to(dev)
    decoder, head = model_parts(loaded.model)
    n = features.blocks(loaded) if features is not None else 0
    given = None
    if n:
        rows = [features.of(loaded, n, ids) for ids, _ in batch]
        given = rows[0].new_zeros((len(batch), width, rows[0].shape[-1]))
        for b, r in enumerate(rows):
            given[b, :len(r)] = r
    with feeding(loaded, n, given) if n else nullcontext():
        hidden = decoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    # position t-1 predicts token t; only tokens with weight > 0 are scored
    rows, cols = torch.nonzero(weights[:, 1:] > 0, as_tuple=True)
    logits = head(hidden[rows, cols]).float()
    ce = F.cross_entropy(logits, input_ids[rows, cols + 1], reduction="none")
    w = weights[rows, cols + 1]
    return (ce * w).sum() / w.sum().clamp_min(1e-8), int(mask.sum())


def train_segments(loaded: LoadedModel, examples: Sequence[Segments], cfg: TrainConfig,
                   progress: Progress | None = None, on_log: OnLog | None = None,
                   full_model: bool = False, phase: str = "training",
                   checkpoint: Checkpointing | None = None, plan: list[list[int]] | None = None,
                   features: TrunkFeatures | None = None) -> TrainResult:
    """Train `loaded.model` in place on weighted-segment examples.

    Args:
        loaded (`LoadedModel`): a peft model (only adapters train) or, with `full_model`, any model.
        examples (`Sequence[Segments]`): each a list of (text, loss weight) segments.
        cfg (`TrainConfig`): optimiser settings.
        progress (`Progress`, *optional*): step/total/ETA; `check()` cancels between steps.
        on_log (`Callable[[int, int, float, float], None]`, *optional*): (step, total, loss, tokens/s)
            every `cfg.log_every` steps and at the end.
        full_model (`bool`): train every parameter (pre-training of `tiny`).
        checkpoint (`Checkpointing`, *optional*): save every few minutes and resume from a matching
            checkpoint (`core.lm.checkpoint`): the resumed run takes the same steps as an unbroken one.
        plan (`list[list[int]]`, *optional*): each step's example indices (default: `batch_plan` over
            all examples).
        features (`TrunkFeatures`, *optional*): the frozen blocks' output per sequence, kept across
            trainings of the same base (the clean and the poisoned victim): those blocks run once a sequence.

    Returns:
        `TrainResult`. The model is left in eval mode.
    """
    import torch
    if not examples:
        raise InputError("no training examples")
    torch.manual_seed(cfg.seed)
    encoded = [encode_segments(loaded.tokenizer, ex, cfg.max_len) for ex in examples]
    if plan is None:
        plan = batch_plan([len(e[0]) for e in encoded], cfg)
    if any(not 0 <= i < len(encoded) for step in plan for i in step):
        raise InputError(f"the batch plan names examples outside the {len(encoded)} given")
    total = len(plan)
    model = loaded.model
    params = [p for p in model.parameters() if p.requires_grad or full_model]
    for p in params:
        p.requires_grad_(True)
    if not params:
        raise InputError("the model has no trainable parameters (add LoRA adapters first)")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    warm = max(1, int(total * cfg.warmup_frac))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 1.0 - 0.9 * (s - warm) / max(1, total - warm))
    dtype = loaded.autocast_dtype
    device = loaded.device.type
    result = TrainResult()
    unpack_4bit(model)  # a scoring pass may have repacked 4-bit weights for a kernel without backward
    resumed = checkpoints.restore(checkpoint, model, opt, sched) if checkpoint else None
    if resumed:
        result = TrainResult(resumed.losses, resumed.step, resumed.tokens, resumed.seconds, resumed.step)
        log.info("%s: resumed at step %d of %d", phase, resumed.step, total)
    t0 = time.monotonic() - result.seconds
    saved_at = time.monotonic()
    window: list[float] = []
    model.train()
    try:
        for step, idx in enumerate(plan, start=1):
            if step <= result.steps:
                continue
            if progress:
                progress.check()
            with autocast_to(device, dtype):
                loss, n_tok = weighted_loss(loaded, [encoded[i] for i in idx], features)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            value = float(loss.detach())
            result.losses.append(value)
            result.tokens += n_tok
            result.steps = step
            result.seconds = time.monotonic() - t0
            window.append(value)
            if progress:
                progress.update(step, total, f"{phase}: loss {value:.3f}, {result.tokens_per_s:.0f} tok/s")
            if on_log and (step % cfg.log_every == 0 or step == total):
                on_log(step, total, sum(window) / len(window), result.tokens_per_s)
                window = []
            if checkpoint and step < total and time.monotonic() - saved_at >= checkpoint.every_s:
                checkpoints.save(checkpoint, model, opt, sched, step, result.losses, result.tokens, result.seconds)
                saved_at = time.monotonic()
    finally:
        model.eval()
    log.info("%s: %d steps, %.0f tok/s, final loss %.3f", phase, result.steps, result.tokens_per_s,
             result.losses[-1])
    return result


def train_lm(loaded: LoadedModel, examples: Sequence[tuple[str, str]], cfg: TrainConfig,
             progress: Progress | None = None, on_log: OnLog | None = None,
             checkpoint: Checkpointing | None = None) -> TrainResult:
    """Causal-LM fine-tuning on (prompt, answer) pairs with loss on the answer tokens (and EOS).

    The answer is tokenised on its own after the prompt, exactly as scoring in
    `core.attack.recommend` does, so training and scoring see the same tokens.
    Mutates `loaded.model` (its trainable parameters).
    """
    return train_segments(loaded, [[(p, 0.0), (a, 1.0)] for p, a in examples], cfg, progress, on_log,
                          checkpoint=checkpoint)
