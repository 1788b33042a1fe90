"""Tiny model settings and a synthetic store shared by the model, training and attack tests (seconds to build)."""

from __future__ import annotations

from conftest import make_synthetic

from core.attack.badrec import AttackConfig
from core.lm.models import ModelConfig
from core.lm.tinylm import TinyConfig
from core.lm.train import TrainConfig

TINY = TinyConfig(vocab_size=320, hidden=16, layers=1, heads=2, ffn=32, max_len=256, history_epochs=0.3,
                  n_choice=16, batch_size=8)


def synthetic_store(store):
    ds = make_synthetic()
    store.save_dataset("synthetic", "test", "interactions", ds.items, ds.interactions, [])
    return ds


def tiny_attack(**kw) -> AttackConfig:
    base = dict(dataset="synthetic", model=ModelConfig(), tiny=TINY, n_poison_items=2,
                train=TrainConfig(epochs=0.5, batch_size=8, max_len=256), eval_users=4, generate=False)
    base.update(kw)
    return AttackConfig(**base)
