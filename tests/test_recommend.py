"""Scoring: the KV-cached batch path equals naive full-sequence scoring; TALLRec P(Yes); LLaRA validity."""

from __future__ import annotations

import pytest
import torch
from tiny_helpers import TINY

from core.attack.recommend import (
    Case,
    generate_metrics,
    llara_generate,
    llara_scores,
    score_variants,
    tallrec_parts,
    tallrec_scores,
    validity,
    yes_no_ids,
)
from core.lm.lmscore import answer_logprobs, autocast, first_line_done
from core.lm.models import ModelConfig, load_model
from core.lm.train import encode_segments

# each dtype's tolerance for cached vs naive scores: fp32 is exact up to summation order; under bf16
# autocast the packed and the full-sequence pass round differently (measured up to 8.3e-4 nats)
TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2}


def naive_logprob(loaded, prompt, answer):
    """Score one answer with one full forward pass and no cache, in the model's compute dtype."""
    ids, w = encode_segments(loaded.tokenizer, [(prompt, 0.0), (answer, 1.0)], 10_000)
    with torch.no_grad(), autocast(loaded):
        logits = loaded.model(input_ids=torch.tensor([ids], device=loaded.device)).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(1, len(ids)) if w[t] > 0)


@pytest.fixture
def tiny(home, synthetic):
    """Pinned to fp32, so the exact comparisons below mean the same on every CPU."""
    return load_model(ModelConfig(dtype="fp32"), synthetic, tiny=TINY)


@pytest.fixture(params=["fp32", "bf16"])
def tiny_in(request, home, synthetic):
    """The tiny model in each compute dtype (bf16 is emulated, slowly, on AVX2-only CPUs)."""
    return load_model(ModelConfig(dtype=request.param), synthetic, tiny=TINY)


@pytest.fixture
def scrambled(tiny):
    """The tiny model with unit noise on every weight: its briefly pre-trained greedy output is one token
    repeated whatever the prompt, this one's depends on every token it reads, so decoding bugs show."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in tiny.model.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    return tiny


def test_cached_scoring_equals_naive(tiny_in):
    prompts = ["This user has watched Movie A0 (1980).", "Short", "A much longer prompt " * 6]
    answers = [[" Movie B1 (1981)", " X", " 5v Movie C2 (1982)"], [" Movie D3 (1983)"], [" Yes", " No."]]
    got = answer_logprobs(tiny_in, prompts, answers, batch_size=2)
    tol = TOLERANCE[tiny_in.info["compute_dtype"]]
    for p, ans, row in zip(prompts, answers, got):
        assert row == pytest.approx([naive_logprob(tiny_in, p, a) for a in ans], abs=tol)


def cases(n=3):
    titles = [f"Movie {chr(65 + i)}{i} ({1980 + i})" for i in range(6)]
    return [Case(f"u{k}", tuple(titles[:2 + k]), tuple(titles[2:6]), (2, 3, 4, 5), k % 4,
                 tuple(j % 2 == 0 for j in range(2 + k)), k % 2 == 0) for k in range(n)]


def test_tallrec_yes_probability_matches_naive(tiny_in):
    tiny = tiny_in
    cs = cases()
    got = tallrec_scores(tiny, cs, batch_size=2)
    yes, no = yes_no_ids(tiny.tokenizer)
    tol = TOLERANCE[tiny.info["compute_dtype"]] / 10  # a probability, not a sum of log-probabilities
    for c, row in zip(cs, got):
        prefix, suffix = tallrec_parts(c)
        for title, p in zip(c.candidates, row):
            from core.lm.train import prompt_prefix_ids
            tok = tiny.tokenizer
            ids = prompt_prefix_ids(tok) + tok(prefix, add_special_tokens=False)["input_ids"] + \
                tok(title + suffix, add_special_tokens=False)["input_ids"]
            with torch.no_grad(), autocast(tiny):
                logits = tiny.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            ly, ln = torch.log_softmax(logits, -1)[[yes, no]].tolist()
            assert p == pytest.approx(1 / (1 + torch.exp(torch.tensor(ln - ly)).item()), abs=max(tol, 1e-4))


def test_llara_scores_shape_and_generate(tiny):
    cs = cases()
    scores = llara_scores(tiny, cs)
    assert [len(s) for s in scores] == [4, 4, 4]
    answers = llara_generate(tiny, cs, max_new_tokens=4)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    m = generate_metrics(answers, cs)
    assert 0 <= m["valid_ratio"] <= 1


def naive_first_line(loaded, case, max_new_tokens):
    """Greedy decoding with a full forward pass per token, no cache, no early stop but EOS."""
    from core.data.prompts import llara_prompt
    from core.lm.train import prompt_prefix_ids
    tok = loaded.tokenizer
    ids = prompt_prefix_ids(tok) + tok(llara_prompt(case.history, case.candidates, "movie"),
                                       add_special_tokens=False)["input_ids"]
    out = []
    for _ in range(max_new_tokens):
        with torch.no_grad():
            nxt = int(loaded.model(input_ids=torch.tensor([ids + out], device=loaded.device)).logits[0, -1].argmax())
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
    return tok.decode(out, skip_special_tokens=True).strip().split("\n")[0]


def test_batched_generate_equals_naive_greedy_first_line(scrambled):
    """Batched decoding with a KV cache that stops a row at its first newline gives the same first line."""
    cs = cases(4)
    got = llara_generate(scrambled, cs, max_new_tokens=12, batch_size=3)
    assert got == [naive_first_line(scrambled, c, 12) for c in cs]


def triggered(cs, slot):
    """The same cases with one candidate renamed, as an attack variant does."""
    return [Case(c.user, c.history, tuple("5v " + t if i == slot else t for i, t in enumerate(c.candidates)),
                 c.items, c.target_pos, c.liked, c.label) for c in cs]


def test_variants_scored_together_equal_each_alone(scrambled):
    """A user's variants share their prompt prefix (encoded once, then one tail per variant); the rank
    scores, TALLRec P(Yes) and the clean variant's greedy answers equal those of each variant alone."""
    cs = cases(4)
    variants = {"clean": cs, "late": triggered(cs, 3), "early": triggered(cs, 0)}
    scores, answers = score_variants(scrambled, "llara", variants, generate="clean", max_new_tokens=12,
                                     batch_size=1)
    for name, vc in variants.items():
        assert scores[name] == [pytest.approx(row, abs=1e-4) for row in llara_scores(scrambled, vc, batch_size=2)]
    assert answers == [naive_first_line(scrambled, c, 12) for c in cs]
    assert len(set(answers)) > 1
    p_yes, none = score_variants(scrambled, "tallrec", variants, batch_size=3)
    assert none is None
    for name, vc in variants.items():
        assert p_yes[name] == [pytest.approx(row, abs=1e-5) for row in tallrec_scores(scrambled, vc, batch_size=2)]


def test_first_line_stop_rule_matches_strip_then_split():
    """Decoding stops where `answer.strip().split("\\n")[0]` can no longer change."""
    for pieces in (["\n", "\n", " Heat", " (1995)", "\n", "x"], [" Heat (1995)\nmore"], ["  ", "\n", "A", "\nB"],
                   ["Alien", " (1979)"]):
        started, cut = False, None
        for k, p in enumerate(pieces):
            done, started = first_line_done(p, started)
            if done:
                cut = k + 1
                break
        text = "".join(pieces).strip()
        assert "".join(pieces[:cut]).strip().split("\n")[0] == text.split("\n")[0]
        assert (cut is not None) == ("\n" in text)  # it stops exactly when a first line ends


def test_validity_rule():
    cands = ["Heat (1995)", "Alien (1979)", "Aliens (1986)"]
    assert validity("Heat (1995)", cands) == 0
    assert validity("I pick ALIEN (1979)\nbecause", cands) == 1
    assert validity("Heat (1995) or Alien (1979)", cands) is None
    assert validity("nothing", cands) is None
