"""The training loop: loss only on answers, determinism under a seed, logging, cancellation."""

from __future__ import annotations

import pytest
from tiny_helpers import TINY

from core.errors import InputError
from core.lm.models import ModelConfig, add_lora, load_model
from core.lm.train import TrainConfig, encode_segments, train_lm
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
