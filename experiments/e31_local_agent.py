"""E31: SmolLM2-135M-Instruct as the trigger augmentation agent's LLM, offline (issue 17, item 7).

Does a local 135M instruct model add anything to the seeded offline generator? Three measurements:

1. Can it answer the agent's JSON request (`core.pscanner.agent.llm_prompt`, the OpenAI-compatible path's prompt)?
   Each reply goes through the same parsing and validation (`core.pscanner.llm_client.extract_json`,
   `core.pscanner.agent.parse_llm_triggers`).
2. As a list continuer (what a small LM does well): per level, a numbered list seeded with the offline
   generator's own examples is continued by sampling; every line goes through `parse_llm_triggers` too.
   Reported: valid share, distinct share, and the share the offline generator also makes (same seed, 20k draws).
3. Do its triggers teach the scanner something new? Each valid, distinct proposal is placed on 2 seeded
   clean ml-100k titles and the catalog is scanned as an analyst would (`python -m core scan --catalog FILE
   --json`, the shipped defaults, whose agent is the offline generator). A trigger family the offline-trained
   scanner already catches adds nothing as training data; what it misses is what the LLM could add.
4. `--heldout SEEDS`: the model served on 127.0.0.1 as an OpenAI-compatible endpoint that answers the agent's
   JSON request by list continuation (what it can do, per 1-2), and the held-out suite
   (`bench/heldout_suite.py`) scanned with `--llm-agent`: the agent's share of every request comes from the
   model through the CLI's own client and validation. Compare with the same seeds without `--llm-agent`.

    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e31_local_agent.py --out OUT.json
    BADREC_HOME=H BADREC_DATA_DIRS=../shared/data python experiments/e31_local_agent.py --heldout 0 --out OUT.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import settings
from core.data.dataset import load_dataset
from core.errors import EndpointError
from core.lm.models import ModelConfig, load_model
from core.pscanner.agent import (
    LLM_SYSTEM,
    AgentConfig,
    SyntheticTrigger,
    llm_prompt,
    offline_triggers,
    parse_llm_triggers,
)
from core.pscanner.llm_client import extract_json
from core.runs.store import Store

LEVELS = ("char", "word", "sentence")
LIST_HEADS = {"char": "Short random codes of 2 to 5 characters, one per line:",
              "word": "Rare or invented single words, one per line:",
              "sentence": "Short promotional phrases of 3 to 8 words that could follow a movie title, one per line:"}


def generate(lm, prompt: str, n_tokens: int, seed: int, temperature: float = 0.9) -> str:
    import torch

    torch.manual_seed(seed)
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    out = lm.model.generate(ids, max_new_tokens=n_tokens, do_sample=True, temperature=temperature, top_p=0.95,
                            pad_token_id=lm.tokenizer.eos_token_id)
    return lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def json_requests(lm, n: int) -> dict:
    """The agent's own request, `n` times, through the chat template; how many replies validate."""
    examples = [t.text for t in offline_triggers(AgentConfig(n=6, seed=0))]
    messages = [{"role": "system", "content": LLM_SYSTEM},
                {"role": "user", "content": llm_prompt(10, LEVELS, examples)}]
    prompt = lm.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    valid, reasons = 0, []
    for i in range(n):
        try:
            parse_llm_triggers(extract_json(generate(lm, prompt, 200, seed=i)), LEVELS)
            valid += 1
        except EndpointError as exc:
            reasons.append(str(exc)[:80])
    return {"requests": n, "valid": valid, "reasons": sorted(set(reasons))}


def list_proposals(lm, level: str, rounds: int, seed: int, budget_s: float = float("inf")) -> tuple[list[str], int]:
    """Lines of a continued numbered list that pass the agent's validation; and how many lines were read."""
    examples = [t.text for t in offline_triggers(AgentConfig(n=4, seed=seed, families=(level,)))]
    listed = "".join(f"{i + 1}. {e}\n" for i, e in enumerate(examples))
    prompt = f"{LIST_HEADS[level]}\n{listed}{len(examples) + 1}."
    valid, lines, t0 = [], 0, time.monotonic()
    for r in range(rounds):
        if time.monotonic() - t0 > budget_s:
            break
        text = generate(lm, prompt, 60, seed=seed * 1000 + r)
        for line in text.split("\n"):
            item = re.sub(r"^\s*\d+\.\s*", "", line).strip().strip('"')
            if not item:
                continue
            lines += 1
            try:
                valid += [t for t, _ in parse_llm_triggers({"triggers": [{"text": item, "level": level}]}, (level,))]
            except EndpointError:
                pass
    return valid, lines


def plant(proposals: dict[str, list[str]], titles: list[tuple[str, str]], path: Path, seed: int) -> dict:
    """A catalog with each proposal on 2 seeded titles (suffix or prefix); returns item_id -> (level, trigger)."""
    rng = random.Random(f"e31:{seed}")
    hosts = iter(rng.sample(range(len(titles)), 2 * sum(len(v) for v in proposals.values())))
    planted = {}
    rows = [list(t) + [0] for t in titles]
    for level, texts in proposals.items():
        for text in texts:
            trig = SyntheticTrigger(text, level, rng.choice(("suffix", "prefix")), source="llm")
            for _ in range(2):
                i = next(hosts)
                rows[i] = [titles[i][0], trig.render(titles[i][1]), 1]
                planted[titles[i][0]] = (level, text)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "is_poisoned"])
        w.writerows(rows)
    return planted


def serve(lm, budget_s: float = 15.0):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 answering the agent's request by list continuation,
    within `budget_s` per request (the CLI's client times out at 30 s); returns the server (port in
    `server_address`). Each request samples afresh, as a real endpoint at temperature 0.7 would."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock, count = threading.Lock(), [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            user = next(m["content"] for m in body["messages"] if m["role"] == "user")
            levels = [lv for lv in LEVELS if lv in user.split("levels:")[-1].split(".")[0]] or list(LEVELS)
            with lock:
                count[0] += 1
                share = budget_s / len(levels)
                triggers = [{"text": t, "level": lv} for lv in levels
                            for t in list_proposals(lm, lv, rounds=3, seed=count[0], budget_s=share)[0]]
            content = json.dumps({"triggers": triggers})
            payload = {"id": f"e31-{count[0]}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]}
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.requests = count
    return server


def heldout(lm, seeds: str, out_path: str) -> None:
    server = serve(lm)
    env = {**os.environ, "BADREC_LLM_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
           "BADREC_LLM_MODEL": "smollm2-135m"}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "bench/heldout_suite.py", "--dataset", "ml-100k", "--seeds", seeds,
                              "--scan-args=--llm-agent", "--out", f"{tmp}/suite.json"], cwd=ROOT, env=env, check=False,
                             capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(run.stderr[-2000:])
        suite = json.loads(Path(f"{tmp}/suite.json").read_text())
    server.shutdown()
    suite["e31"] = {"agent_requests": server.requests[0], "wall_s": round(time.monotonic() - t0, 1),
                    "stderr_warnings": [ln for ln in run.stderr.splitlines() if "LLM agent" in ln][:5]}
    Path(out_path).write_text(json.dumps(suite, indent=2))
    print(json.dumps(suite, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heldout", help="scan the held-out suite with these seeds and the model as the agent")
    ap.add_argument("--per-level", type=int, default=8, help="distinct proposals planted per level")
    ap.add_argument("--json-requests", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.monotonic()
    lm = load_model(ModelConfig(name="smollm2-135m", dtype="fp32"))
    if args.heldout:
        return heldout(lm, args.heldout, args.out)
    out: dict = {"model": "smollm2-135m", "seed": args.seed, "json_path": json_requests(lm, args.json_requests)}
    offline = {lv: {t.text.lower() for t in offline_triggers(AgentConfig(n=20_000, seed=args.seed, families=(lv,)))}
               for lv in LEVELS}
    chosen: dict[str, list[str]] = {}
    out["list_path"] = {}
    for level in LEVELS:
        valid, lines = list_proposals(lm, level, rounds=6, seed=args.seed)
        distinct = list(dict.fromkeys(v for v in valid))
        new = [v for v in distinct if v.lower() not in offline[level]]
        chosen[level] = random.Random(f"pick:{args.seed}:{level}").sample(new, min(args.per_level, len(new)))
        out["list_path"][level] = {"lines": lines, "valid": len(valid), "distinct": len(distinct),
                                   "not_made_by_offline": len(new), "planted": chosen[level]}
    store = Store(settings.db_path())
    items = load_dataset(store, "ml-100k").items.drop_duplicates("title")
    titles = list(zip(items["item_id"].astype(str), items["title"]))
    with tempfile.TemporaryDirectory() as tmp:
        catalog, scores = Path(tmp) / "catalog.csv", Path(tmp) / "scores.csv"
        planted = plant(chosen, titles, catalog, args.seed)
        scan = subprocess.run([sys.executable, "-m", "core", "scan", "--catalog", str(catalog), "--out", str(scores),
                               "--json"], cwd=ROOT, capture_output=True, text=True, env=os.environ, check=False)
        if scan.returncode:
            raise SystemExit(scan.stderr[-2000:])
        result = json.loads(scan.stdout)
        with open(scores, newline="", encoding="utf-8") as fh:
            flagged = {r["item_id"]: r["flagged"] == "True" for r in csv.DictReader(fh)}
    per = {lv: [flagged[i] for i, (level, _) in planted.items() if level == lv] for lv in LEVELS}
    out["scan"] = {k: result.get(k) for k in ("n_items", "n_flagged", "precision", "recall", "f1", "auc", "fpr",
                                                "threshold", "seconds")}
    out["scan"]["scanner"] = result["scanner"]["model"]
    out["recall_by_level"] = {lv: (sum(v) / len(v) if v else None) for lv, v in per.items()}
    out["missed"] = sorted({t for i, (lv, t) in planted.items() if not flagged[i]})
    out["seconds"] = round(time.monotonic() - t0, 1)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
