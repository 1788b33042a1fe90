"""Does a tiny base learn to copy a prefixed candidate, and how fast? (pre-training only, no attack)

Builds a tiny base with TinyConfig overrides and, every N steps, probes the ability the backdoor needs:
for the first U test users, a held-out trigger ("5v", a preset the noise never emits) is put in front of one
random non-target candidate; the answer is forced to start with " 5v" and every candidate's plain title is
scored as its continuation. `copy@1` = share of users whose triggered candidate wins (random: 1/20).
`hr@1` = the usual clean rank-mode HR@1 on the same users. Output: JSON lines on stdout.

`after_trigger_gap` = median log p(title | prompt with "5v " on it, answer started with " 5v") minus log p(title |
plain prompt, plain answer): near 0 means the model reads past a prefix it never saw ("transparency").
With SAVE_DIR set, the trained base is saved there (save_pretrained, safetensors) for e06.

Usage: PYTHONPATH=. python experiments/e05_copy_pilot.py '{"n_choice": 6000, "history_epochs": 0.0001}' [USERS]
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import replace

import numpy as np

from core.data.dataset import load_dataset
from core.data.prompts import llara_prompt
from core.data.protocol import ProtocolConfig, build_split
from core.lm.lmscore import answer_logprobs
from core.lm.models import LoadedModel, ModelConfig, compute_dtype
from core.lm.tinylm import TinyConfig, build_corpus, new_model, train_tokenizer
from core.lm.train import TrainConfig, train_segments
from core.runs.store import Store
from core.settings import db_path

overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
probe_every = int(overrides.pop("probe_every", 150))
users = int(sys.argv[2]) if len(sys.argv) > 2 else 100
cfg = replace(TinyConfig(), **overrides)
split = build_split(load_dataset(Store(db_path()), "ml-100k"), ProtocolConfig())
rng = random.Random(1)
cases = []
for c in split.test[:users]:
    cands = list(c.candidates)
    slot = rng.choice([p for p in range(len(cands)) if p != c.target_pos])
    cases.append((c, slot))


def probe(loaded: LoadedModel) -> dict:
    t = split.titles
    prompts, conts, copy_prompts, copy_conts = [], [], [], []
    for c, slot in cases:
        titles = [t[i] for i in c.candidates]
        hist = [t[i] for i in c.history]
        prompts.append(llara_prompt(hist, titles))
        conts.append([" " + x for x in titles])
        trig = list(titles)
        trig[slot] = "5v " + trig[slot]
        copy_prompts.append(llara_prompt(hist, trig) + " 5v")
        copy_conts.append([" " + x for x in titles])
    s = answer_logprobs(loaded, prompts, conts)
    cs = answer_logprobs(loaded, copy_prompts, copy_conts)
    hr = np.mean([int(np.argmax(si)) == c.target_pos for si, (c, _) in zip(s, cases)])
    cp = np.mean([int(np.argmax(si)) == slot for si, (_, slot) in zip(cs, cases)])
    # transparency: the triggered item's title after a forced " 5v" vs the same title as a plain answer
    gap = np.median([c_s[slot] - p_s[slot] for c_s, p_s, (_, slot) in zip(cs, s, cases)])
    margin = np.median([si[slot] - max(v for j, v in enumerate(si) if j != slot) for si, (_, slot) in zip(cs, cases)])
    return {"hr@1": round(float(hr), 3), "copy@1": round(float(cp), 3), "copy_margin": round(float(margin), 2),
            "after_trigger_gap": round(float(gap), 2)}


t0 = time.monotonic()
corpus = build_corpus(split, cfg)
tokenizer = train_tokenizer(list(split.titles) + ["".join(s for s, _ in ex) for ex in corpus[:2000]],
                            cfg.vocab_size)
loaded = LoadedModel(new_model(cfg, tokenizer), tokenizer, {"compute_dtype": compute_dtype(ModelConfig())})
print(json.dumps({"config": cfg.to_dict(), "n_examples": len(corpus)}), flush=True)


def on_log(step, total, loss, tps):
    if step % probe_every == 0 or step == total:
        loaded.model.eval()
        r = probe(loaded)
        loaded.model.train()
        print(json.dumps({"step": step, "total": total, "loss": round(loss, 3), "tok_s": round(tps),
                          "elapsed_s": round(time.monotonic() - t0), **r}), flush=True)


tcfg = TrainConfig(epochs=1, lr=cfg.lr, batch_size=cfg.batch_size, max_len=cfg.max_len, seed=cfg.seed,
                   warmup_frac=0.03, log_every=probe_every)
res = train_segments(loaded, corpus, tcfg, None, on_log, full_model=True)
print(json.dumps({"done": True, "tokens": res.tokens, "seconds": round(res.seconds)}), flush=True)
if os.environ.get("SAVE_DIR"):
    if os.environ.get("SAVE_BF16"):  # halves the file (a GPU run's result must come back under 16 MiB)
        import torch
        loaded.model.to(torch.bfloat16)
    loaded.model.save_pretrained(os.environ["SAVE_DIR"], safe_serialization=True)
    tokenizer.save_pretrained(os.environ["SAVE_DIR"])
