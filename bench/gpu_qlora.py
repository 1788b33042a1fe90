"""QLoRA cost of a real-size Llama on a GPU, through the same `core` code the CLI uses.

A 1.1B-parameter Llama (TinyLlama's shape: hidden 2048, 22 layers, 32 heads, 4 KV heads, FFN 5632) with
random weights is saved with `save_pretrained` and loaded back by `core.lm.models.load_model` as any local
model folder would be; then, per quantization, LoRA training steps on LLaRA-length prompts and rank-mode
scoring of 20 candidates per user are timed. Random weights cost the same FLOPs and memory as trained ones.
Needs CUDA (and bitsandbytes for 4bit/8bit). Prints one JSON object.

Usage: python bench/gpu_qlora.py [--layers 22] [--quants 4bit,none] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from core.attack.recommend import Case, llara_example, llara_scores
from core.lm.models import ModelConfig, add_lora, load_model
from core.lm.tinylm import train_tokenizer
from core.lm.train import TrainConfig, train_lm

WORDS = ("the night of love war star dark man city lost river story king queen return last game house "
         "blue red summer winter ghost island secret road").split()


def fake_title(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS).capitalize() for _ in range(rng.randint(2, 5))) + f" ({rng.randint(1930, 1999)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=22)
    ap.add_argument("--quants", default="4bit,8bit,none")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--users", type=int, default=256)
    args = ap.parse_args()
    rng = random.Random(0)
    titles = [fake_title(rng) for _ in range(2000)]
    tok = train_tokenizer(titles, 4096)
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=5632, num_hidden_layers=args.layers,
                       num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048,
                       tie_word_embeddings=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        with torch.device("cuda"):
            model = LlamaForCausalLM(conf).to(torch.bfloat16)
        out["n_params"] = model.num_parameters()
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        del model
        torch.cuda.empty_cache()
        out["save_s"] = round(time.perf_counter() - t, 1)
        examples = []
        for _ in range(args.steps * 8):
            hist = rng.sample(titles, 10)
            cands = rng.sample(titles, 20)
            examples.append(llara_example(hist, cands, cands[0]))
        cases = [Case(str(u), tuple(rng.sample(titles, 10)), tuple(rng.sample(titles, 20)), tuple(range(20)), 0)
                 for u in range(args.users)]
        for quant in args.quants.split(","):
            torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            cfg = ModelConfig(name=str(Path(tmp)), quant=quant, dtype="bf16")
            loaded = add_lora(load_model(cfg), cfg, seed=0)
            load_s = time.perf_counter() - t
            res = train_lm(loaded, examples, TrainConfig(epochs=1, batch_size=8, lr=1e-4, max_len=512))
            torch.cuda.synchronize()
            t = time.perf_counter()
            llara_scores(loaded, cases, batch_size=32)
            torch.cuda.synchronize()
            score_s = time.perf_counter() - t
            out[quant] = {"load_s": round(load_s, 1), "train_tokens_per_s": round(res.tokens_per_s),
                          "train_steps": res.steps, "final_loss": round(res.losses[-1], 3),
                          "scoring_users_per_s": round(args.users / score_s, 1),
                          "peak_gpu_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
            print(json.dumps({quant: out[quant]}), flush=True)
            del loaded
            torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
