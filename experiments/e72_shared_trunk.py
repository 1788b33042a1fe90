"""E72 side checks: two SmolLM2 victims with adapters on the top 10 of 30 blocks share the 20 below.

Scoring: one after another (`score_variants` each) against together (`score_variants_together`: the shared
blocks run once). Fresh adapters with their B set non-zero and different per victim, folded in as the attack
scores them (`adapters_merged`); 8 users x 4 variants of 20 made-up candidates (E70's generator); each way
timed twice, alternately, the second pair is the one to compare. Prints seconds and the largest score
difference.

Training: 48 LLaRA examples of 20 made-up candidates trained as the attack does, plainly, then through
`TrunkFeatures` twice (the clean victim computing the features, the poisoned one reusing them). Prints
seconds and tokens/s of each and the final losses.

    BADREC_HOME=H PYTHONPATH=. python experiments/e72_shared_trunk.py [scoring] [training]
"""

import random
import sys
import time
from contextlib import ExitStack

import torch

from core.attack.recommend import Case, llara_example, score_variants, score_variants_together
from core.lm.models import ModelConfig, adapters_merged, add_lora, load_model
from core.lm.train import TrainConfig, train_segments
from core.lm.trunk import TrunkFeatures, shared_blocks
from experiments.e70_merged_scoring import title  # E70's made-up titles


def variants(rng: random.Random, users: int = 8, candidates: int = 20) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for u in range(users):
        history, cands = tuple(title(rng) for _ in range(5)), [title(rng) for _ in range(candidates)]
        slot = rng.randrange(candidates)
        for v in ("clean", "trigger", "transfer", "no_trigger"):
            c = list(cands)
            if v != "clean":
                c[slot] = "5v " + title(rng)
            out.setdefault(v, []).append(Case(str(u), history, tuple(c), tuple(range(candidates)), 0))
    return out


def victim(seed: int):
    cfg = ModelConfig(name="smollm2-135m", lora_layers=10)
    out = add_lora(load_model(cfg), cfg, seed)
    torch.manual_seed(seed)
    for name, p in out.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.01)
    out.model.eval()
    return out


def scoring() -> None:
    cases = variants(random.Random(0))
    models = [victim(1), victim(2)]
    times: dict[str, list[float]] = {"one after another": [], "together": []}
    scores: dict[str, list] = {}
    with ExitStack() as folded:
        for m in models:
            folded.enter_context(adapters_merged(m))
        print({"shared_blocks": shared_blocks(models)}, flush=True)
        for _ in range(2):
            for way in times:
                t0 = time.perf_counter()
                if way == "together":
                    scores[way] = score_variants_together(models, "llara", cases, batch_size=8)
                else:
                    scores[way] = [score_variants(m, "llara", cases, batch_size=8)[0] for m in models]
                times[way].append(round(time.perf_counter() - t0, 1))
    a, b = scores["one after another"], scores["together"]
    diff = max(abs(x - y) for ma, mb in zip(a, b) for v in ma for ra, rb in zip(ma[v], mb[v]) for x, y in zip(ra, rb))
    speedup = times["one after another"][-1] / times["together"][-1]
    print({"scoring_seconds": times, "speedup": round(speedup, 2), "max_score_diff": diff}, flush=True)


def training() -> None:
    rng = random.Random(1)
    examples = []
    for _ in range(48):
        cands = [title(rng) for _ in range(20)]
        prompt, answer = llara_example([title(rng) for _ in range(5)], cands, rng.choice(cands))
        examples.append([(prompt, 0.0), (answer, 1.0)])
    cfg = TrainConfig(epochs=1, batch_size=8, lr=2e-3, max_len=512)
    features = TrunkFeatures()
    for way in ("plain", "computing features", "reusing features"):
        model = victim(1)
        result = train_segments(model, examples, cfg, features=None if way == "plain" else features)
        print({"training": way, "seconds": round(result.seconds, 1), "tokens_per_s": round(result.tokens_per_s, 1),
               "final_loss": round(result.losses[-1], 5)}, flush=True)


if __name__ == "__main__":
    for part in sys.argv[1:] or ("scoring", "training"):
        {"scoring": scoring, "training": training}[part]()
