"""Baseline poison detectors measured beside P-Scanner in the same scan (DESIGN.md §4).

- ONION-style: how much a title's perplexity under a base causal LM drops when one
  word is removed (Qi et al. 2021); the title's score is the largest drop.
- Token statistics: words that look rare in the catalog's own language (a character
  bigram model of its titles) yet recur across several titles, and word n-grams that
  recur across titles — the footprint of one trigger placed on several items.
- LLM judge: an OpenAI-compatible endpoint rates each title, only when one is configured.
- Ensemble: the mean of the methods' percentile ranks.

Every function returns one score per title (higher = more suspicious) and, where it
has one, the suspicious span.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from core.errors import EndpointError
from core.progress import Progress

_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]")


# -- ONION ---------------------------------------------------------------------------
def lm_nll(model, tokenizer, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """Mean next-token negative log-likelihood of each text under a causal LM (any HF model)."""
    import torch

    out = np.empty(len(texts))
    bos = tokenizer.bos_token or ""
    pad_side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = np.argsort([len(t) for t in texts], kind="stable")
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                idx = order[i:i + batch_size]
                enc = tokenizer([bos + texts[j] for j in idx], return_tensors="pt", padding=True,
                                add_special_tokens=False, truncation=True, max_length=128)
                logits = model(**enc).logits[:, :-1].float()
                target = enc["input_ids"][:, 1:]
                mask = enc["attention_mask"][:, 1:].float()
                nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                out[idx] = ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy()
    finally:
        tokenizer.padding_side = pad_side
    return out


def onion_scores(model, tokenizer, titles: Sequence[str], progress: Progress | None = None,
                 chunk: int = 512) -> tuple[np.ndarray, list[str | None]]:
    """Per title: max over words of (log-perplexity of the title - log-perplexity without that word)."""
    scores = np.zeros(len(titles))
    spans: list[str | None] = [None] * len(titles)
    for start in range(0, len(titles), chunk):
        texts, owners, words_of = [], [], []
        for k, title in enumerate(titles[start:start + chunk]):
            words = _WORD.findall(title)
            words_of.append(words)
            texts.append(title)
            owners.append((k, -1))
            if len(words) > 1:
                for i in range(len(words)):
                    texts.append(" ".join(words[:i] + words[i + 1:]))
                    owners.append((k, i))
        nll = lm_nll(model, tokenizer, texts)
        full = {k: nll[n] for n, (k, i) in enumerate(owners) if i < 0}
        best: dict[int, tuple[float, int]] = {}
        for n, (k, i) in enumerate(owners):
            if i >= 0:
                drop = full[k] - nll[n]
                if k not in best or drop > best[k][0]:
                    best[k] = (drop, i)
        for k, words in enumerate(words_of):
            if k in best:
                scores[start + k] = best[k][0]
                spans[start + k] = words[best[k][1]]
        if progress:
            progress.update(min(start + chunk, len(titles)), len(titles), "ONION baseline")
    return scores, spans


# -- token statistics ---------------------------------------------------------------------
def _char_bigram_nll(words: Sequence[str], reference: Sequence[str]) -> dict[str, float]:
    """Mean -log P(c_i | c_{i-1}) of each word under an add-one bigram model of the reference words."""
    counts: dict[tuple[str, str], int] = {}
    unigram: dict[str, int] = {}
    for w in reference:
        s = "^" + w + "$"
        for a, b in zip(s, s[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + 1
            unigram[a] = unigram.get(a, 0) + 1
    v = len({c for w in reference for c in w}) + 2
    out = {}
    for w in words:
        s = "^" + w + "$"
        out[w] = float(np.mean([-math.log((counts.get((a, b), 0) + 1) / (unigram.get(a, 0) + v))
                                for a, b in zip(s, s[1:])]))
    return out


def token_stats_scores(titles: Sequence[str], max_n: int = 4) -> tuple[np.ndarray, list[str | None]]:
    """Rare-yet-recurring words and recurring word n-grams.

    A word scores its rarity (z-score of its character-bigram NLL among the catalog's distinct words,
    floored at 0) times log2 of the number of titles containing it; an n-gram of n >= 2 words that
    recurs in k >= 2 titles scores (n - 1) * log2(k), as short series names ("Star Trek") are
    common but sentences shared by several titles are not. Anything in more than ~1% of titles counts
    as the catalog's own language. Memory is bounded by hashing n-grams.
    """
    tokenised = [[w.lower() for w in _WORD.findall(t)] for t in titles]
    vocab_counts: dict[str, int] = {}
    for words in tokenised:
        for w in set(words):
            vocab_counts[w] = vocab_counts.get(w, 0) + 1
    distinct = list(vocab_counts)
    nll = _char_bigram_nll(distinct, distinct)
    vals = np.array(list(nll.values()))
    mu, sd = float(vals.mean()), float(vals.std() or 1.0)
    # A word in more than ~1% of titles is part of the catalog's language (years, "the"), not a trigger.
    common = 5 + 0.01 * len(titles)
    # Punctuation and one-character words ("&", "2") are part of any title language.
    word_score = {w: min(6.0, max(0.0, (nll[w] - mu) / sd)) * math.log2(vocab_counts[w])
                  if vocab_counts[w] <= common and len(w) > 1 and _ALNUM.search(w) else 0.0 for w in distinct}

    hashes = [[hash(" ".join(words[i:i + n])) for n in range(2, max_n + 1) for i in range(len(words) - n + 1)]
              for words in tokenised]
    flat = np.fromiter((h for hs in hashes for h in set(hs)), dtype=np.int64)
    uniq, counts = np.unique(flat, return_counts=True) if len(flat) else (np.zeros(0, np.int64), np.zeros(0))
    scores = np.zeros(len(titles))
    spans: list[str | None] = [None] * len(titles)
    for k, words in enumerate(tokenised):
        best, span = 0.0, None
        for w in words:
            if word_score[w] > best:
                best, span = word_score[w], w
        idx = 0
        for n in range(2, max_n + 1):
            for i in range(len(words) - n + 1):
                h = hashes[k][idx]
                idx += 1
                pos = np.searchsorted(uniq, h)
                df = int(counts[pos]) if pos < len(uniq) and uniq[pos] == h else 1
                s = (n - 1) * math.log2(df) if 2 <= df <= common else 0.0
                if s > best:
                    best, span = s, " ".join(words[i:i + n])
        scores[k], spans[k] = best, span
    return scores, spans


# -- LLM judge -------------------------------------------------------------------------
JUDGE_SYSTEM = ("You audit item catalogs for backdoor triggers: odd character strings, out-of-place words or "
                "sentences inserted into titles. Reply with JSON only.")


def judge_scores(client, titles: Sequence[str], batch: int = 40, progress: Progress | None = None) -> np.ndarray:
    """P(poisoned) for each title from the endpoint, `batch` titles per request (raises `EndpointError`)."""
    out = np.empty(len(titles))
    for start in range(0, len(titles), batch):
        part = list(titles[start:start + batch])
        listing = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(part))
        prompt = (f"For each of these {len(part)} titles, give the probability (0 to 1) that it contains an "
                  f"inserted trigger.\n{listing}\n"
                  f'Answer with JSON: {{"scores": [{len(part)} numbers in the same order]}}')

        def check(obj, n=len(part)):
            vals = obj.get("scores") if isinstance(obj, dict) else None
            if not isinstance(vals, list) or len(vals) != n:
                raise EndpointError(f"judge reply must hold {n} scores")
            try:
                arr = np.clip(np.array([float(v) for v in vals]), 0.0, 1.0)
            except (TypeError, ValueError) as exc:
                raise EndpointError("judge scores are not numbers") from exc
            if np.isnan(arr).any():
                raise EndpointError("judge scores contain NaN")
            return arr

        out[start:start + len(part)] = client.chat_json(JUDGE_SYSTEM, prompt, check)
        if progress:
            progress.update(min(start + batch, len(titles)), len(titles), "LLM judge")
    return out


# -- ensemble -----------------------------------------------------------------------------
def percentile_ranks(scores: np.ndarray) -> np.ndarray:
    """Each score's rank in [0, 1] (ties share their mean rank)."""
    import pandas as pd

    return (pd.Series(scores).rank(method="average").to_numpy() - 1) / max(len(scores) - 1, 1)


def ensemble_scores(parts: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted mean of the methods' percentile ranks."""
    weights = weights or {k: 1.0 for k in parts}
    total = sum(weights[k] for k in parts)
    return sum(weights[k] * percentile_ranks(v) for k, v in parts.items()) / total
