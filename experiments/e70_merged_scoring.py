"""E70 side check: LLaRA scoring through the LoRA adapters against scoring with them folded in (`adapters_merged`).

SmolLM2-135M with fresh adapters (their B set non-zero, so the fold changes weights), 4 users x 4 variants of
20 made-up candidates, the attack's `score_variants`; each way timed twice, alternately; the first pass (through
the adapters) carries the warm-up, so the second pair is the one to compare. Prints seconds per pass and the
largest score difference, for every block and the top 10.

    BADREC_HOME=H python experiments/e70_merged_scoring.py
"""

import random
import time
from contextlib import nullcontext

import torch

from core.attack.recommend import Case, score_variants
from core.lm.models import ModelConfig, adapters_merged, add_lora, load_model

WORDS = "the of night love man day return city dark blue last story secret life war king star house".split()


def title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(2, 5))) + f" ({rng.randint(1950, 1998)})"


def variants(rng: random.Random, users: int = 4, candidates: int = 20) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for u in range(users):
        history, cands = tuple(title(rng) for _ in range(5)), [title(rng) for _ in range(candidates)]
        for v in ("clean", "trigger", "transfer", "no_trigger"):
            c = list(cands)
            c[rng.randrange(candidates)] = "5v " + title(rng)
            out.setdefault(v, []).append(Case(str(u), history, tuple(c), tuple(range(candidates)), 0))
    return out


def main() -> None:
    cases = variants(random.Random(0))
    for layers in (0, 10):
        cfg = ModelConfig(name="smollm2-135m", lora_layers=layers)
        victim = add_lora(load_model(cfg), cfg)
        victim.model.eval()
        for name, p in victim.model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.01)

        times: dict[str, list[float]] = {"adapters": [], "merged": []}
        scores: dict[str, dict] = {}
        for _ in range(2):
            for way in times:
                t0 = time.perf_counter()
                with adapters_merged(victim) if way == "merged" else nullcontext():
                    scores[way] = score_variants(victim, "llara", cases, batch_size=4)[0]
                times[way].append(round(time.perf_counter() - t0, 1))
        plain, merged = scores["adapters"], scores["merged"]
        diff = max(abs(a - b) for v in plain for ra, rb in zip(plain[v], merged[v]) for a, b in zip(ra, rb))
        print({"lora_layers": layers, "seconds": times, "max_score_diff": diff}, flush=True)


if __name__ == "__main__":
    main()
