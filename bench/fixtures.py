"""What benchmarks run on: ml-100k's split and a default-size tiny model (random weights: speed does not
depend on what the weights learned, and building the real one takes minutes)."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

from core.attack.recommend import Case
from core.data.dataset import Dataset
from core.data.protocol import ProtocolConfig, Split, build_split
from core.lm.models import LoadedModel
from core.lm.tinylm import TinyConfig, new_model, train_tokenizer
from core.runs.store import Store


@lru_cache(maxsize=1)
def ml100k() -> tuple[Dataset, Split]:
    from core.data import builtin
    folder, _ = builtin.obtain("ml-100k")
    items, inter, _ = builtin.parse("ml-100k", folder)
    ds = Dataset("ml-100k", items, inter)
    return ds, build_split(ds, ProtocolConfig(seed=0))


def tiny_model(dtype: str = "bf16", cfg: TinyConfig = TinyConfig()) -> LoadedModel:
    _, split = ml100k()
    tok = _tokenizer(cfg.vocab_size)
    model = new_model(cfg, tok).eval()
    return LoadedModel(model, tok, {"compute_dtype": dtype, "tiny": True})


@lru_cache(maxsize=2)
def _tokenizer(vocab_size: int):
    _, split = ml100k()
    return train_tokenizer(split.titles, vocab_size)


def cases(n: int | None = None) -> list[Case]:
    _, split = ml100k()
    tests = split.test if n is None else split.test[:n]
    return [Case(t.user, tuple(split.titles[i] for i in t.history), tuple(split.titles[i] for i in t.candidates),
                 t.candidates, t.target_pos) for t in tests]


def temp_store() -> Store:
    return Store(Path(tempfile.mkdtemp(prefix="badrec-bench-")) / "bench.duckdb")


def set_threads() -> int:
    import torch
    n = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n
