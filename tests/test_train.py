"""The training loop: loss only on answers, determinism under a seed, the batch plan, logging, cancellation."""

from __future__ import annotations

import pytest
from tiny_helpers import TINY

from core.errors import InputError
from core.lm.models import ModelConfig, add_lora, load_model
from core.lm.train import TrainConfig, batch_plan, encode_segments, train_lm, train_segments
from core.progress import CallbackProgress, Cancelled

PAIRS = [("This user has watched Movie A0 (1980).", " Movie B1 (1981)"),
         ("This user has watched Movie C2 (1982).", " Movie D3 (1983)")] * 4


def fresh(synthetic):
    return add_lora(load_model(ModelConfig(), synthetic, tiny=TINY), ModelConfig(lora_r=4))


def test_encode_weights_answer_and_eos_only(home, synthetic):
    tok = load_model(ModelConfig(), synthetic, tiny=TINY).tokenizer
    ids, w = encode_segments(tok, [("prompt text", 0.0), (" Movie A0 (1980)", 1.0)], 256)
    n_answer = len(tok(" Movie A0 (1980)", add_special_tokens=False)["input_ids"])
    assert ids[-1] == tok.eos_token_id
    assert sum(w) == n_answer + 1 and w[-n_answer - 1:] == [1.0] * (n_answer + 1)


def test_same_seed_same_losses_and_loss_falls(home, synthetic):
    cfg = TrainConfig(epochs=4, batch_size=4, lr=1e-2, seed=3, log_every=1)
    logs = []
    a = train_lm(fresh(synthetic), PAIRS, cfg, on_log=lambda *x: logs.append(x))
    b = train_lm(fresh(synthetic), PAIRS, cfg)
    assert a.losses == b.losses
    assert a.losses[-1] < a.losses[0]
    assert [x[0] for x in logs] == list(range(1, a.steps + 1)) and all(x[1] == a.steps for x in logs)
    assert a.to_dict()["tokens_per_s"] > 0


def test_cancel_stops_training(home, synthetic):
    prog = CallbackProgress(lambda *a: None)
    prog.cancel.set()
    with pytest.raises(Cancelled):
        train_lm(fresh(synthetic), PAIRS, TrainConfig(), prog)


def test_config_validation_and_empty_input(home, synthetic):
    with pytest.raises(InputError):
        TrainConfig(lr=0)
    with pytest.raises(InputError):
        TrainConfig(epochs=0)
    with pytest.raises(InputError, match="no training examples"):
        train_lm(fresh(synthetic), [], TrainConfig())
    assert TrainConfig(**TrainConfig(lr=5e-4).to_dict()) == TrainConfig(lr=5e-4)


def test_a_batch_plan_passes_over_every_example_once_per_epoch_and_riders_change_no_other_batch():
    lengths = [5 + (i * 7) % 13 for i in range(40)]
    cfg = TrainConfig(epochs=3, batch_size=4, seed=5)
    base = batch_plan(lengths, cfg)
    paired = batch_plan(lengths, cfg, riders=6)
    flat = sorted(i for step in base for i in step)
    assert flat == sorted(list(range(40)) * 3) and len(base) == 30
    assert len(paired) == len(base)  # the same steps ...
    assert [[i for i in step if i < 40] for step in paired] == base  # ... on the same batches, riders aside
    assert sorted(i for step in paired for i in step if i >= 40) == sorted(list(range(40, 46)) * 3)
    assert batch_plan(lengths, TrainConfig(epochs=3, batch_size=4, seed=6)) != base
    assert len(batch_plan(lengths, TrainConfig(epochs=0.5, batch_size=4, seed=5), riders=6)) == 5


def test_riders_leave_every_step_before_the_first_one_they_join(home, synthetic):
    cfg = TrainConfig(epochs=2, batch_size=2, lr=1e-2, seed=1)
    examples = [[(p, 0.0), (a, 1.0)] for p, a in PAIRS]
    rider = [[("This user has watched Movie E4 (1984).", 0.0), (" Movie F5 (1985)", 1.0)]]
    plan = batch_plan([1] * len(examples), cfg, riders=1)
    first = min(n for n, step in enumerate(plan) if len(examples) in step)
    alone = train_segments(fresh(synthetic), examples, cfg, plan=[[i for i in s if i < 8] for s in plan])
    joined = train_segments(fresh(synthetic), examples + rider, cfg, plan=plan)
    assert joined.steps == alone.steps == len(plan)
    assert joined.losses[:first] == alone.losses[:first] and joined.losses[first] != alone.losses[first]
    with pytest.raises(InputError, match="outside the 8"):
        train_segments(fresh(synthetic), examples, cfg, plan=plan)
