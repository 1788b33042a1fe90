"""Models that share their bottom blocks run those blocks once.

With adapters on the top N blocks only (`ModelConfig.lora_layers`), the clean and the poisoned victim are
the same frozen model below their lowest adapted block. Scoring both on the same inputs, the first model
runs every block and records what its bottom blocks hand up (`recording`); the others skip those blocks
and replay it (`replaying`). The replayed tensors are the ones the skipped blocks would have computed from
the same weights and inputs, so the scores are the same as scoring each model alone; with SmolLM2's top 10
of 30 blocks adapted, two victims cost 40 block passes a token instead of 60. Training does the same
across the two victims' training sets (`TrunkFeatures`): the second runs only the top blocks on the
sequences the first one saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

from .loaded import LoadedModel, model_parts


def _adapters(module) -> int:
    from peft.tuners.lora import LoraLayer
    return sum(isinstance(m, LoraLayer) for m in module.modules())


def shared_blocks(models: Sequence[LoadedModel]) -> int:
    """How many bottom blocks all `models` share: below every model's lowest adapted block, with equal
    weights and the same config. 0 when there is nothing to share (one model, an adapter outside the
    blocks, a different base)."""
    if len(models) < 2:
        return 0
    n = min(frozen_blocks(m) for m in models)
    first = model_parts(models[0].model)[0]
    for m in models[1:]:
        n = _common(first, model_parts(m.model)[0], n)
    return n


def frozen_blocks(loaded: LoadedModel) -> int:
    """How many bottom blocks of `loaded` carry no adapter (0 with an adapter outside the blocks)."""
    layers = getattr(model_parts(loaded.model)[0], "layers", None)
    if layers is None:
        return 0
    per_block = [_adapters(layer) for layer in layers]
    if _adapters(loaded.model) != sum(per_block):
        return 0
    return next((i for i, k in enumerate(per_block) if k), len(per_block))


def _common(first, other, n: int) -> int:
    """How many of the bottom `n` blocks two decoders hold equal (0 when config or embeddings differ)."""
    if first.config.to_dict() != other.config.to_dict() or not _same(first.get_input_embeddings(),
                                                                     other.get_input_embeddings()):
        return 0
    return next((i for i in range(n) if not _same(first.layers[i], other.layers[i])), n)


def _same(a, b) -> bool:
    """Whether two modules hold equal tensors under the same names."""
    import torch
    mine, theirs = a.state_dict(), b.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@dataclass
class Tape:
    """Per decoder call of the recording model: the first block's input (None: not checked) and the shared
    blocks' output."""

    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    at: int = 0


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def recording(loaded: LoadedModel, n: int, tape: Tape) -> Iterator[None]:
    """Record, per decoder call, the input of block 0 and the output of block `n - 1`."""
    layers = model_parts(loaded.model)[0].layers
    first = layers[0].register_forward_pre_hook(lambda mod, args, kwargs: tape.inputs.append(_hidden(args, kwargs)),
                                                with_kwargs=True)
    last = layers[n - 1].register_forward_hook(lambda mod, args, out: tape.outputs.append(out))
    try:
        yield
    finally:
        first.remove()
        last.remove()


def _stand_in(index: int, n: int, tape: Tape):
    """Block `index` (< n) while replaying: no compute, the recorded output at the top one.

    It still puts a placeholder of the right length into the KV cache, so the cache's length (which the
    attention mask is sized from) and its row operations stay as without the replay; only blocks that
    really run read keys and values."""
    import torch

    class StandIn(torch.nn.Module):
        def forward(self, hidden_states, *args, **kwargs):
            if index == 0:
                expected = tape.inputs[tape.at] if tape.at < len(tape.inputs) else hidden_states[:0]
                if expected is not None and not torch.equal(hidden_states, expected):
                    raise RuntimeError("shared blocks replayed out of step: the models were not given the "
                                       "same inputs in the same order")
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            if cache is not None:
                b, t = hidden_states.shape[:2]
                slot = hidden_states.new_zeros((b, 1, t, 1))
                cache.update(slot, slot, index)
            if index < n - 1:
                return hidden_states
            tape.at += 1
            return tape.outputs[tape.at - 1]

    return StandIn()


@contextmanager
def replaying(loaded: LoadedModel, n: int, tape: Tape) -> Iterator[None]:
    """Run `loaded` with its bottom `n` blocks replaced by the recording model's results (`recording`)."""
    layers = model_parts(loaded.model)[0].layers
    originals = [layers[i] for i in range(n)]
    tape.at = 0
    for i in range(n):
        layers[i] = _stand_in(i, n, tape)
    try:
        yield
        if tape.at != len(tape.outputs):
            raise RuntimeError("shared blocks replayed out of step: fewer calls than recorded")
    finally:
        for i, module in enumerate(originals):
            layers[i] = module


def sharing(loaded: LoadedModel, position: int, n: int, tape: Tape):
    """The context the `position`-th of several models sharing `n` bottom blocks runs in: the first records,
    the others replay; with nothing shared, each model simply runs."""
    if n == 0:
        return nullcontext()
    return recording(loaded, n, tape) if position == 0 else replaying(loaded, n, tape)


class _Stop(Exception):
    """Raised past the frozen blocks: the rest of the forward pass is not needed."""


@dataclass
class TrunkFeatures:
    """The frozen bottom blocks' output per training sequence, kept across trainings of one base.

    The clean and the poisoned victim of an attack train on mostly the same sequences; with adapters on the
    top blocks only, what the blocks below make of a sequence is the same for both, so the second training
    runs only the top blocks on the sequences the first one saw (~2x less work a token with SmolLM2's top
    10 of 30). Each sequence is run alone, so its features do not depend on the batch it came in: a
    resumed training computes exactly what an unbroken one did. Kept up to `budget_bytes`; beyond, features
    are computed and not kept.
    """

    budget_bytes: int = 2 * 2**30
    kept: dict = field(default_factory=dict)
    used: int = 0
    _base: object = None  # the decoder whose blocks made the kept features
    _checked: dict = field(default_factory=dict)  # id(decoder) -> how many blocks it shares with `_base`

    def blocks(self, loaded: LoadedModel) -> int:
        """The frozen blocks `loaded` shares with the models these features came from."""
        n = frozen_blocks(loaded)
        decoder = model_parts(loaded.model)[0]
        if self._base is None:
            self._base = decoder
        if id(decoder) not in self._checked:
            self._checked[id(decoder)] = _common(self._base, decoder, n)
        return min(n, self._checked[id(decoder)])

    def of(self, loaded: LoadedModel, n: int, ids: list[int]):
        """The output of the bottom `n` blocks for one sequence, (len(ids), hidden), computed once."""
        import torch
        key = (n, tuple(ids))
        if key in self.kept:
            return self.kept[key]
        decoder = model_parts(loaded.model)[0]
        out: list = []

        def stop(mod, args, output):
            out.append(output)
            raise _Stop

        hook, training = decoder.layers[n - 1].register_forward_hook(stop), decoder.training
        decoder.eval()  # frozen blocks: no dropout, so the features are the sequence's alone
        try:
            with torch.no_grad():
                decoder(input_ids=torch.tensor([ids], device=loaded.device), use_cache=False)
        except _Stop:
            pass
        finally:
            hook.remove()
            decoder.train(training)
        features = out[0][0]
        size = features.numel() * features.element_size()
        if self.used + size <= self.budget_bytes:
            self.kept[key] = features
            self.used += size
        return features


@contextmanager
def feeding(loaded: LoadedModel, n: int, hidden) -> Iterator[None]:
    """Run `loaded` once with its bottom `n` blocks' output given (`hidden`, batch x tokens x width)."""
    with replaying(loaded, n, Tape(inputs=[None], outputs=[hidden])):
        yield
