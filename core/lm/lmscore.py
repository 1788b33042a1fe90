"""Scoring continuations with a causal LM, each prompt encoded once.

Every victim metric comes from here (`core.attack.recommend` builds the prompts), so
clean, triggered and transferred candidate lists are scored by the same code.
Four savings, none of which changes a score beyond float rounding:

* all continuations of a batch go through one forward pass, packed side by
  side after their prompt's KV cache with a 4-D mask (`_pack`);
* prompts of one group (the variants of one user's test case) encode their
  common token prefix once (`_encode_rows`);
* greedy answers are decoded from the same prompt cache as the scores;
* models that share their bottom blocks (two victims with adapters on the top blocks only) are scored
  together, those blocks run once (`score_together`, `core.lm.trunk`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from os.path import commonprefix

from core.progress import Progress

from .loaded import LoadedModel, autocast_to, left_pad, model_parts, prompt_prefix_ids
from .trunk import Tape, shared_blocks, sharing

_LOGIT_BYTES = 256 * 2**20  # logits held at once while scoring continuations: bounds memory, not results


@dataclass(frozen=True)
class Row:
    """One prompt and the texts scored after it.

    Args:
        prompt (`str`): the prompt (the model's BOS, if it has one, goes before it).
        conts (`tuple[str, ...]`): continuations scored after the prompt.
        group (`Hashable`, *optional*): rows of one group are batched together and encode their common token
            prefix once (the variants of one user's case share the history part of their prompts).
        generate (`bool`): also decode a greedy answer from this prompt.
    """

    prompt: str
    conts: tuple[str, ...]
    group: Hashable | None = None
    generate: bool = False


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a text without special tokens (empty text: none), so pieces concatenate exactly."""
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def autocast(loaded: LoadedModel):
    """The autocast context for the model's compute dtype (off in fp32), the same rule training uses."""
    return autocast_to(loaded.device.type, loaded.autocast_dtype)


def new_cache(decoder):
    """An empty KV cache for `decoder`."""
    from transformers import DynamicCache
    return DynamicCache(config=decoder.config)


def cache_rows(decoder, cache, idx):
    """A new cache holding rows `idx` of `cache` (a row may repeat)."""
    out = new_cache(decoder)
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[idx], layer.values[idx], i)
    return out


def _right_pad(rows: Sequence[Sequence[int]], pad: int):
    """Token-id lists as a right-padded (ids, mask) pair of CPU tensors."""
    import torch
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def _encode_rows(loaded: LoadedModel, prompts: Sequence[list[int]], groups: Sequence[int]):
    """Run the prompts into a KV cache; returns (cache, 2-D mask, log-probs of the next token).

    `groups` numbers the rows' groups 0, 1, ... in order of first appearance. Rows of one group first
    encode their longest common token prefix once, then each row's own tail after a copy of it,
    right-padded; the mask then has holes, and positions count real tokens only.
    """
    import torch
    decoder, head = model_parts(loaded.model)
    pad, dev = loaded.tokenizer.pad_token_id, loaded.device
    members: list[list[int]] = [[] for _ in range(max(groups) + 1)]
    for r, g in enumerate(groups):
        members[g].append(r)
    # keep >= 1 token of every row for its tail, so the tail pass yields each row's next-token distribution
    shared = [min(len(commonprefix([prompts[r] for r in m])), min(len(prompts[r]) for r in m) - 1) for m in members]
    if len(members) == len(prompts) or min(shared) < 1:
        ids, mask, pos = left_pad(prompts, pad, dev)
        cache = new_cache(decoder)
        h = decoder(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache,
                    use_cache=True).last_hidden_state[:, -1]
        return cache, mask, torch.log_softmax(head(h).float(), -1)
    ids, mask0, pos = left_pad([prompts[m[0]][:n] for m, n in zip(members, shared)], pad, dev)
    shared_cache = new_cache(decoder)
    decoder(input_ids=ids, attention_mask=mask0, position_ids=pos, cache=shared_cache, use_cache=True)
    start = [shared[g] for g in groups]
    tails = [p[s:] for p, s in zip(prompts, start)]
    feed, tmask = _right_pad(tails, pad)
    gi = torch.tensor(groups, device=dev)
    cache = cache_rows(decoder, shared_cache, gi)
    mask = torch.cat([mask0[gi], tmask.to(dev)], 1)
    pos = torch.tensor(start, device=dev)[:, None] + torch.arange(feed.shape[1], device=dev)[None, :]
    h = decoder(input_ids=feed.to(dev), attention_mask=mask, position_ids=pos, cache=cache,
                use_cache=True).last_hidden_state
    last_h = h[torch.arange(len(tails), device=dev), torch.tensor([len(t) - 1 for t in tails], device=dev)]
    return cache, mask, torch.log_softmax(head(last_h).float(), -1)


def _pack(fed: Sequence[Sequence[Sequence[int]]], mask, pad_id: int, dtype):
    """Each prompt's continuations side by side in one row after its prompt: token ids, position ids
    (each continuation restarts right after the prompt) and a 4-D additive attention mask in which a
    continuation token sees its prompt and the earlier tokens of its own continuation only."""
    import torch
    B, P = mask.shape
    width = max(1, max(sum(len(f) for f in row) for row in fed))
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    offset = torch.zeros((B, width), dtype=torch.long)
    seg = torch.full((B, width), -1, dtype=torch.long)
    for b, row in enumerate(fed):
        at = 0
        for j, f in enumerate(row):
            ids[b, at:at + len(f)] = torch.tensor(f, dtype=torch.long)
            offset[b, at:at + len(f)] = torch.arange(len(f))
            seg[b, at:at + len(f)] = j
            at += len(f)
    idx = torch.arange(width)
    sees = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] >= 0) & (idx[None, None, :] <= idx[None, :, None])
    prompt = mask[:, None, :].bool().cpu().expand(B, width, P)
    allowed = torch.cat([prompt, sees], -1)[:, None]  # (B, 1, width, P + width)
    bias = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
    return ids, mask.sum(-1).cpu()[:, None] + offset, bias


def _continuation_scores(loaded: LoadedModel, cache, mask, last, seqs: Sequence[Sequence[Sequence[int]]],
                         next_ids: Sequence[int] | None) -> list[list]:
    """Per prompt and continuation (token ids): its summed log-prob, or (with `next_ids`) the log-probs of
    those tokens right after it. One packed forward pass (`_pack`); the cache is cropped back afterwards.

    A continuation that occurs twice after one prompt (two items with the same title) is scored once: the
    two tie exactly, as the metrics' tie rule assumes, whatever the kernels' rounding at their two places.
    """
    import torch
    decoder, head = model_parts(loaded.model)
    dev = mask.device
    original = seqs
    where = [{s: i for i, s in enumerate(dict.fromkeys(map(tuple, row)))} for row in seqs]
    seqs = [list(w) for w in where]
    # feed a continuation's tokens when we need the distribution after them, else all but the last
    fed = [[s if next_ids is not None else s[:-1] for s in row] for row in seqs]
    results: list[list] = [[None] * len(row) for row in seqs]
    dtype = cache.layers[-1].keys.dtype  # a real block's (the bottom ones may be replayed, `core.lm.trunk`)
    feed, fpos, bias = _pack(fed, mask, loaded.tokenizer.pad_token_id, dtype)
    h = decoder(input_ids=feed.to(dev), attention_mask=bias.to(dev), position_ids=fpos.to(dev),
                cache=cache, use_cache=True).last_hidden_state
    cache.crop(-feed.shape[1])
    rows_at_once = max(1, _LOGIT_BYTES // (4 * h.shape[1] * last.shape[-1]))
    for r0 in range(0, len(seqs), rows_at_once):
        logp = torch.log_softmax(head(h[r0:r0 + rows_at_once]).float(), -1)  # (rows, width, V)
        for b in range(r0, min(r0 + rows_at_once, len(seqs))):
            at = 0
            for j, (s, f) in enumerate(zip(seqs[b], fed[b])):
                lp = logp[b - r0, at:at + len(f)]
                if next_ids is not None:
                    dist = lp[-1] if f else last[b]
                    results[b][j] = [float(dist[i]) for i in next_ids]
                elif s:
                    tgt = torch.tensor(s[1:], dtype=torch.long, device=dev)
                    results[b][j] = float(last[b, s[0]] + lp.gather(1, tgt[:, None]).sum())
                else:
                    results[b][j] = 0.0
                at += len(f)
    return [[results[b][w[tuple(s)]] for s in row] for b, (row, w) in enumerate(zip(original, where))]


def first_line_done(piece: str, started: bool) -> tuple[bool, bool]:
    """After a generated piece of text: (is the answer's first non-blank line complete, has text started)."""
    before, newline, _ = piece.partition("\n")
    return bool(newline) and (started or bool(before.strip())), started or bool(piece.strip())


def _pieces(tok) -> list[str]:
    """Each token id's text, kept on the tokenizer: decoding the vocabulary once per batch adds up."""
    if len(getattr(tok, "_badrec_pieces", ())) != len(tok):
        tok._badrec_pieces = [tok.decode([i]) for i in range(len(tok))]
    return tok._badrec_pieces


def _greedy(loaded: LoadedModel, cache, mask, last, max_new_tokens: int) -> list[str]:
    """Greedy answers from the prompts in `cache`, each cut at the end of its first non-blank line."""
    import torch
    tok = loaded.tokenizer
    decoder, head = model_parts(loaded.model)
    # Only the first non-blank line counts (LLaRA's rule), so a row is done at EOS or at a newline
    # that follows some text; leading blank lines are stripped from the answer, so they go on.
    pieces = _pieces(tok)
    B = mask.shape[0]
    gen: list[list[int]] = [[] for _ in range(B)]
    started = [False] * B
    alive = torch.ones(B, dtype=torch.bool, device=mask.device)
    nxt, token = mask.sum(-1), last.argmax(-1)
    for step in range(max_new_tokens):
        for b in range(B):
            if alive[b]:
                t = int(token[b])
                if t == tok.eos_token_id:
                    alive[b] = False
                    continue
                gen[b].append(t)
                done, started[b] = first_line_done(pieces[t], started[b])
                if done:
                    alive[b] = False
        if not alive.any() or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, alive[:, None].long()], 1)
        h = decoder(input_ids=token[:, None], attention_mask=mask, position_ids=nxt[:, None],
                    cache=cache, use_cache=True).last_hidden_state[:, -1]
        token, nxt = head(h).float().argmax(-1), nxt + 1
    return [tok.decode(g, skip_special_tokens=True).strip().split("\n")[0] for g in gen]


def _run_batch(loaded: LoadedModel, rows: Sequence[Row], add_eos: bool, next_ids: Sequence[int] | None,
               max_new_tokens: int) -> tuple[list[list], dict[int, str]]:
    """One batch: prompts into a cache, then continuation scores, then greedy answers for rows that ask."""
    import torch
    tok = loaded.tokenizer
    decoder, _ = model_parts(loaded.model)
    prompts = [prompt_prefix_ids(tok) + encode(tok, r.prompt) for r in rows]
    keys = [_group_key(r, k) for k, r in enumerate(rows)]
    dense = {g: i for i, g in enumerate(dict.fromkeys(keys))}
    groups = [dense[g] for g in keys]
    seqs = [[encode(tok, c) + ([tok.eos_token_id] if add_eos else []) for c in r.conts] for r in rows]
    answers: dict[int, str] = {}
    with torch.no_grad(), autocast(loaded):
        cache, mask, last = _encode_rows(loaded, prompts, groups)
        scores = _continuation_scores(loaded, cache, mask, last, seqs, next_ids) if any(seqs) else [[] for _ in rows]
        want = [k for k, r in enumerate(rows) if r.generate]
        if want and max_new_tokens:
            if len(want) < len(rows):
                idx = torch.tensor(want, device=mask.device)
                cache, mask, last = cache_rows(decoder, cache, idx), mask[idx], last[idx]
            answers = dict(zip(want, _greedy(loaded, cache, mask, last, max_new_tokens)))
    return scores, answers


def _group_key(row: Row, k: int) -> Hashable:
    return row.group if row.group is not None else ("row", k)  # no group: a group of its own


def _batches(rows: Sequence[Row], batch_size: int) -> list[list[int]]:
    """Row indices in batches of about `batch_size` prompts of similar length; a group is never split."""
    groups: dict[Hashable, list[int]] = {}
    for k, r in enumerate(rows):
        groups.setdefault(_group_key(r, k), []).append(k)
    ordered = sorted(groups.values(), key=lambda m: max(len(rows[k].prompt) for k in m))  # pad less
    batches: list[list[int]] = [[]]
    for m in ordered:
        if batches[-1] and len(batches[-1]) + len(m) > batch_size:
            batches.append([])
        batches[-1] += m
    return [b for b in batches if b]


def _each_batch(rows: Sequence[Row], batch_size: int, progress: Progress | None, message: str, run) -> None:
    """`run(row indices)` on batches of about `batch_size` rows (`_batches`), reporting rows done."""
    done = 0
    for idx in _batches(rows, batch_size):
        run(idx)
        done += len(idx)
        if progress:
            progress.update(done, len(rows), message)


def run_rows(loaded: LoadedModel, rows: Sequence[Row], add_eos: bool = True, next_ids: Sequence[int] | None = None,
             max_new_tokens: int = 0, batch_size: int = 16, progress: Progress | None = None,
             message: str = "scoring") -> tuple[list[list], list[str | None]]:
    """Score every row's continuations and decode the answers rows ask for.

    Args:
        add_eos (`bool`): score a continuation with the end-of-sequence token after it (a complete answer).
        next_ids (`Sequence[int]`, *optional*): instead of a continuation's own log-prob, return the
            log-probs of these tokens right after it (TALLRec's Yes/No).
        max_new_tokens (`int`): the longest greedy answer for rows with `generate`.

    Returns:
        `(scores, answers)`: per row, its continuations' scores in order, and its answer (None when not asked).
    """
    scores: list[list] = [[] for _ in rows]
    answers: list[str | None] = [None] * len(rows)

    def run(idx):
        s, a = _run_batch(loaded, [rows[k] for k in idx], add_eos, next_ids, max_new_tokens)
        for k, sk in zip(idx, s):
            scores[k] = sk
        for local, text in a.items():
            answers[idx[local]] = text

    _each_batch(rows, batch_size, progress, message, run)
    return scores, answers


def score_together(models: Sequence[LoadedModel], rows: Sequence[Row], add_eos: bool = True,
                   next_ids: Sequence[int] | None = None, batch_size: int = 16, progress: Progress | None = None,
                   message: str = "scoring") -> list[list[list]]:
    """Every row's continuation scores under each of `models` (the clean and the poisoned victim), batch by
    batch: blocks the models share (`core.lm.trunk.shared_blocks`) run once, for the first model, and the
    others replay them. Each model's scores are what `run_rows` gives it alone (no greedy answers here).

    Returns:
        `list[list[list]]`: per model, per row, its continuations' scores in order.
    """
    n = shared_blocks(models)
    scores: list[list[list]] = [[[] for _ in rows] for _ in models]

    def run(idx):
        batch, tape = [rows[k] for k in idx], Tape()
        for m, loaded in enumerate(models):
            with sharing(loaded, m, n, tape):
                s, _ = _run_batch(loaded, batch, add_eos, next_ids, 0)
            for k, sk in zip(idx, s):
                scores[m][k] = sk

    _each_batch(rows, batch_size, progress, message, run)
    return scores


def answer_logprobs(loaded: LoadedModel, prompts: Sequence[str], answers_per_prompt: Sequence[Sequence[str]],
                    batch_size: int = 16, progress: Progress | None = None,
                    message: str = "scoring") -> list[list[float]]:
    """Summed log-probability of each answer (followed by EOS) after its prompt.

    Answers are the exact text that follows the prompt (LLaRA answers start with a space).

    Returns:
        `list[list[float]]`, one score per answer, in input order.
    """
    rows = [Row(p, tuple(a)) for p, a in zip(prompts, answers_per_prompt)]
    return run_rows(loaded, rows, batch_size=batch_size, progress=progress, message=message)[0]
