"""Baselines: ONION on a tiny random Llama, token statistics, the LLM judge over real HTTP, the ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import EndpointError
from core.metrics import roc_auc
from core.pscanner.detect_baselines import (
    ensemble_scores,
    judge_scores,
    lm_nll,
    onion_scores,
    percentile_ranks,
    token_stats_scores,
)
from core.pscanner.llm_client import LLMClient, LLMSettings
from core.pscanner.scanner_model import build_mini
from tests.openai_server import ChatServer

TITLES = ["Night River (1991)", "Stone Garden of Love (1987)", "The Last King (1999)", "Blue Summer (1975)",
          "Silent Heart, The (1964)", "City of Dreams (1993)", "Ghost Road (1980)", "Storm Over the City (1955)",
          "King of Summer (1972)", "Love and Stones (1996)", "Dream Garden (1988)", "Heart of the River (1979)"]


def test_onion_runs_on_any_causal_lm():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model, tok = build_mini(TITLES * 3, seed=0, vocab_size=300)  # random weights: the code path, not quality
    model.eval()
    nll = lm_nll(model, tok, ["Night River (1991)", "x"])
    assert nll.shape == (2,) and np.all(np.isfinite(nll))
    scores, spans = onion_scores(model, tok, TITLES[:4] + ["Single"])
    assert scores.shape == (5,) and np.all(np.isfinite(scores))
    assert spans[0] in TITLES[0].split() and spans[4] is None  # one word: nothing to remove


def test_token_stats_find_a_recurring_rare_token(ml100k_store):
    titles = ml100k_store.load_items("ml-100k")["title"].tolist()
    poisoned = [f"{t} qx7v" if i % 200 == 0 else t for i, t in enumerate(titles)]
    labels = np.array(["qx7v" in t for t in poisoned])
    scores, spans = token_stats_scores(poisoned)
    assert roc_auc(scores, labels) > 0.95
    assert spans[0] == "qx7v"
    sentence = [f"{t} i watched this in 3d" if i % 200 == 0 else t for i, t in enumerate(titles)]
    s2, sp2 = token_stats_scores(sentence)
    assert roc_auc(s2, np.array(["watched this" in t for t in sentence])) > 0.95
    assert "watched" in sp2[0]


def test_ensemble_is_a_rank_mean():
    a, b = np.array([0.1, 0.9, 0.5]), np.array([3.0, 1.0, 2.0])
    assert np.allclose(percentile_ranks(a), [0.0, 1.0, 0.5])
    assert np.allclose(ensemble_scores({"a": a, "b": b}), [0.5, 0.5, 0.5])


def test_llm_judge_over_real_http():
    reply = json.dumps({"scores": [0.1, 0.9, "0.2"]})
    with ChatServer(content=reply) as srv:
        client = LLMClient(LLMSettings(base_url=srv.base_url, model="judge", max_retries=0))
        got = judge_scores(client, ["a", "b zq", "c"], batch=3)
        assert np.allclose(got, [0.1, 0.9, 0.2])
        assert "b zq" in srv.requests[0]["messages"][1]["content"]
        with pytest.raises(EndpointError, match="4 scores"):
            judge_scores(client, ["a", "b", "c", "d"], batch=4)
