"""Every config dataclass goes through JSON and back unchanged (core.config.ConfigMixin), and a run's
recorded config JSON is the one older runs recorded, so they still load."""

import json

import pytest

from core.attack.badrec import AttackConfig
from core.attack.sweep import SweepGrid
from core.config import ConfigMixin
from core.data.protocol import ProtocolConfig
from core.errors import InputError
from core.lm.models import ModelConfig
from core.lm.tinylm import SIZES, TinyConfig
from core.lm.train import TrainConfig
from core.pscanner.agent import AgentConfig
from core.pscanner.campaign import CampaignConfig
from core.triggers import Trigger

CONFIGS = [
    AttackConfig(),
    AttackConfig(dataset="x", victim="tallrec", poison_ratio=0.02, target_items=("1", "2"), eval_users=5,
                 model=ModelConfig(quant="4bit", lora_targets=("q_proj",), dtype="fp32"), tiny=SIZES["smoke"],
                 trigger=Trigger("I watched this 3D movie", "sentence", "random", 3),
                 train=TrainConfig(epochs=0.5, lr=5e-4), protocol=ProtocolConfig(n_candidates=10)),
    ModelConfig(name="smollm2-135m", lora_r=8),
    TrainConfig(lr=5e-4, batch_size=4),
    TinyConfig(hidden=64, heads=2),
    *SIZES.values(),
    ProtocolConfig(history_len=5, seed=3),
    Trigger("cf", "char", "suffix"),
    CampaignConfig(top=0.2, min_titles=4),
    AgentConfig(n=10, families=("word",), exclude=frozenset({"b", "a"}), use_llm=True),
    SweepGrid(fixed={"tiny_size": "smoke", "no_generate": True}, grid={"poison_ratio": (0.01, 0.02), "seed": (0,)}),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_survives_json(cfg):
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data == cfg.to_dict()
    assert type(cfg).from_dict(data) == cfg


def test_every_config_dataclass_outside_the_scanner_uses_the_mixin():
    assert {type(c) for c in CONFIGS} == {AttackConfig, ModelConfig, TrainConfig, TinyConfig, ProtocolConfig,
                                          Trigger, CampaignConfig, AgentConfig, SweepGrid}
    assert all(issubclass(t, ConfigMixin) for t in {type(c) for c in CONFIGS})


# The JSON `AttackConfig().to_dict()` recorded in DuckDB before the mixin (runs rows, cache keys): unchanged.
RECORDED = (
    '{"dataset": "ml-100k", "eval_users": null, "fake_user_strategy": "copy", "generate": true, "history_len": 10, '
    '"mix": "shuffled", "model": {"dtype": "auto", "lora_alpha": 32, "lora_dropout": 0.0, "lora_r": 16, "lora_targets": ["q_proj", '
    '"k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "name": "tiny", "quant": "none"}, '
    '"n_poison_items": 5, "poison_catalog": true, "poison_ratio": 0.01, "protocol": {"history_len": 10, '
    '"min_interactions": 5, "n_candidates": 20, "seed": 0}, "seed": 0, "target_items": [], "tiny": {"batch_size": 16, '
    '"choice_history_min": 3, "chunk_titles": 24, "ffn": 768, "heads": 4, "hidden": 256, "history_epochs": 1.0, '
    '"layers": 4, "lr": 0.003, "max_candidates": 12, "max_len": 384, "min_candidates": 5, "n_choice": 6000, '
    '"n_echo": 0, "noise_prob": 0.5, "prefix_share": 0.5, "seed": 0, "vocab_size": 6144}, "top_k": 10, '
    '"train": {"batch_size": 16, "epochs": 1.0, "grad_clip": 1.0, "log_every": 5, "lr": 0.002, "max_len": 512, '
    '"seed": 0, "warmup_frac": 0.05, "weight_decay": 0.0}, "trigger": {"level": "char", "position": "prefix", '
    '"seed": 0, "text": "5v"}, "victim": "llara", "windows_per_user": 2}'
)


def test_a_run_records_the_same_config_json_as_before():
    assert json.dumps(AttackConfig().to_dict(), sort_keys=True) == RECORDED
    assert AttackConfig.from_dict(json.loads(RECORDED)) == AttackConfig()


def test_a_config_recorded_before_a_field_existed_loads_with_its_default():
    old = json.loads(RECORDED)
    del old["poison_catalog"], old["model"]["dtype"], old["tiny"], old["mix"]
    cfg = AttackConfig.from_dict(old)
    assert cfg.poison_catalog is True and cfg.model.dtype == "auto" and cfg.tiny == TinyConfig()
    assert cfg.mix == "shuffled"  # how every run before the field trained


def test_unknown_keys_are_named_nested_ones_too():
    with pytest.raises(InputError, match="unknown AttackConfig keys poison_rate"):
        AttackConfig.from_dict({"poison_rate": 0.1})
    with pytest.raises(InputError, match="unknown ModelConfig keys rank; use name, quant"):
        AttackConfig.from_dict({"model": {"rank": 8}})
    with pytest.raises(InputError, match="must be a JSON object"):
        Trigger.from_dict(["5v"])


def test_a_field_added_later_is_recorded_only_when_set():
    assert "lora_layers" not in ModelConfig().to_dict()
    cfg = ModelConfig(name="smollm2-135m", lora_layers=10)
    assert cfg.to_dict()["lora_layers"] == 10 and ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert AttackConfig(model=cfg).clean_key() != AttackConfig(model=ModelConfig(name="smollm2-135m")).clean_key()


def test_a_grid_file_is_its_to_dict():
    text = {"fixed": {"tiny_size": "smoke"}, "grid": {"poison_ratio": [0.01, 0.02]}}
    assert SweepGrid.from_dict(text).to_dict() == text


def test_cache_keys_are_the_ones_earlier_runs_cached_under():
    """Clean adapters and tiny bases cached before `fingerprint` replaced two private hashes are found again."""
    import pandas as pd

    from core.config import fingerprint
    from core.data.dataset import Dataset
    from core.lm.tinylm import cache_key

    cfg = AttackConfig(model=ModelConfig(dtype="fp32", quant="4bit"))
    assert fingerprint(cfg.clean_key()) == "34c9c233a6bb49f2"
    ds = Dataset("d", pd.DataFrame({"item_id": ["1", "2"], "title": ["A", "B"]}),
                 pd.DataFrame({"user_id": ["u", "u"], "item_id": ["1", "2"], "ts": [1, 2]}))
    assert cache_key(ds, TinyConfig(), ProtocolConfig(), "fp32") == "520ae15f9fdf2aeb"
