"""P-Scanner detection on ml-100k with held-out trigger strings, against ONION and token statistics.

A BadRec-style poisoned catalog: `--n-poison` items from the less popular half get a trigger
(core.triggers.apply_trigger) at each level; the trigger strings are the presets of
core.triggers, which the scanner's agent is told never to generate. Also leave-one-level-out:
a scanner trained without one family, tested on it. Prints JSON and markdown tables.

    BADREC_HOME="$(mktemp -d)" BADREC_DATA_DIRS=../shared/data nice -n 10 python bench/scanner_eval.py --out docs/scanner_eval.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import settings
from core.data.dataset import load_dataset  # noqa: E402
from core.pscanner import campaign  # noqa: E402
from core.pscanner.detect_baselines import ensemble_scores, onion_scores, token_stats_scores  # noqa: E402
from core.pscanner.scan import _metrics  # noqa: E402
from core.pscanner.scanner import SCANNER_TRAIN, ScannerConfig, calibrate_threshold  # noqa: E402
from core.pscanner.scanner_model import mini_lm  # noqa: E402
from core.pscanner.scanner_train import get_scanner  # noqa: E402
from core.runs.store import Store  # noqa: E402
from core.triggers import LEVELS, PRESETS, Trigger, apply_trigger  # noqa: E402

HELD_OUT = tuple(t for level in LEVELS for t in PRESETS[level])
DEFAULT = ScannerConfig()  # the flags default to the scanner `scan` trains


def poisoned_catalog(titles, ids_popular_order, n_poison, text, level, position, seed):
    rng = random.Random(f"{seed}:{text}")
    lower_half = ids_popular_order[len(ids_popular_order) // 2:]
    chosen = set(rng.sample(lower_half, n_poison))
    out = [apply_trigger(t, Trigger(text, level, position, seed=i)) if i in chosen else t
           for i, t in enumerate(titles)]
    labels = np.array([i in chosen for i in range(len(titles))])
    return out, labels


def unseen_titles(scanner, store, dataset: str, known: set[str], seed: int, n_triggered: int = 200) -> dict:
    """The scanner's threshold on clean titles from outside its training (same domain, another dataset)."""
    fresh = sorted({t for t in load_dataset(store, dataset).items["title"] if t not in known})
    s = scanner.score(fresh)
    rng = random.Random(seed)
    sample = rng.sample(fresh, min(n_triggered, len(fresh)))
    recall = {}
    for position in ("suffix", "prefix", "random"):
        for level in LEVELS:
            hits = [float(np.mean(scanner.score([apply_trigger(t, Trigger(text, level, position, seed=i))
                                                 for i, t in enumerate(sample)]) >= scanner.threshold))
                    for text in PRESETS[level]]
            recall[f"{position}|{level}"] = float(np.mean(hits))
    over = np.argsort(-s)[:int((s >= scanner.threshold).sum())]
    return {"dataset": dataset, "n_titles": len(fresh), "fpr": float(np.mean(s >= scanner.threshold)),
            "flagged_examples": [fresh[i] for i in over[:10]], "recall": recall,
            "mean_recall": float(np.mean(list(recall.values())))}


def summarise(rows):
    keys = ("precision", "recall", "f1", "auc", "fpr", "best_f1")
    return {k: float(np.mean([r[k] for r in rows])) for k in keys} | {"n_cases": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-poison", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=int(DEFAULT.train.epochs))
    ap.add_argument("--rounds", type=int, default=DEFAULT.rounds)
    ap.add_argument("--hidden", type=int, default=DEFAULT.mini_hidden, help="width of the mini scanner")
    ap.add_argument("--layers", type=int, default=DEFAULT.mini_layers, help="depth of the mini scanner")
    ap.add_argument("--agent-per-round", type=int, default=DEFAULT.agent_per_round,
                    help="agent proposals per adversarial round (E11-E17 ran with 200, before the bench used the default)")
    ap.add_argument("--min-steps", type=int, default=DEFAULT.min_steps, help="E11-E17 ran with 60")
    ap.add_argument("--mine-passes", type=int, default=DEFAULT.mine_passes,
                    help="hard-negative passes over the reference titles (0 before E18)")
    ap.add_argument("--n-triggers", type=int, default=DEFAULT.n_triggers, help="agent triggers in the first round")
    ap.add_argument("--fixed-positions", action="store_true",
                    help="each agent trigger only at its own position (the pre-E13 behaviour)")
    ap.add_argument("--pos-per-title", type=int, default=DEFAULT.pos_per_title,
                    help="triggered copies of each training title")
    ap.add_argument("--hard-per-title", type=int, default=DEFAULT.hard_per_title,
                    help="hard negatives per training title")
    ap.add_argument("--self-clean", action="store_true",
                    help="self-cleaning on (what `scan` does when a catalog trains its own scanner); off by "
                         "default: the clean ml-100k titles are the trusted reference, as in `scan --run`")
    ap.add_argument("--positions", default="suffix,prefix,random")
    ap.add_argument("--lolo", action="store_true", help="also leave-one-level-out scanners")
    ap.add_argument("--lolo-levels", default=",".join(LEVELS), help="levels to hold out, in this order")
    ap.add_argument("--onion", action="store_true", help="also the ONION baseline (slow)")
    ap.add_argument("--unseen", help="also score this dataset's titles that ml-100k lacks (e.g. ml-1m): the "
                                     "false-positive rate on clean titles the scanner never trained on, and its "
                                     "title-level recall on them with each held-out trigger")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vote-seeds", default="",
                    help="comma-separated extra scanner seeds: also report `vote`, the majority of the seed "
                         "scanners' own calibrated flags (score: their mean)")
    ap.add_argument("--out", help="write the JSON here")
    ap.add_argument("--markdown", help="print the tables of a results JSON and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return
    t0 = time.monotonic()
    store = Store(settings.db_path())
    ds = load_dataset(store, "ml-100k")
    titles = ds.items["title"].tolist()
    pop = ds.interactions["item_id"].value_counts()
    order = sorted(range(len(titles)), key=lambda i: -int(pop.get(ds.items["item_id"].iloc[i], 0)))
    base_cfg = dict(train=replace(SCANNER_TRAIN, epochs=args.epochs), min_steps=args.min_steps, rounds=args.rounds,
                    agent_per_round=args.agent_per_round, exclude=HELD_OUT,
                    seed=args.seed, mini_hidden=args.hidden, mini_layers=args.layers, n_triggers=args.n_triggers,
                    self_clean=args.self_clean, vary_positions=not args.fixed_positions,
                    pos_per_title=args.pos_per_title, hard_per_title=args.hard_per_title,
                    mine_passes=args.mine_passes)
    results: dict = {"setup": {"dataset": "ml-100k", "n_items": len(titles), "n_poison": args.n_poison,
                               "held_out_triggers": HELD_OUT,
                               "scanner": ScannerConfig(**base_cfg).to_dict()}}

    scanner, cached = get_scanner(titles, ScannerConfig(**base_cfg), domain="ml-100k")
    results["scanner"] = {"cached": cached, "threshold": scanner.threshold, "history": scanner.history,
                          "info": scanner.info}
    voters = [scanner] + [get_scanner(titles, ScannerConfig(**(base_cfg | {"seed": int(v)})), domain="ml-100k")[0]
                          for v in args.vote_seeds.split(",") if v.strip()]
    results["vote_thresholds"] = [v.threshold for v in voters]
    if args.unseen:
        results["unseen"] = unseen_titles(scanner, store, args.unseen, set(titles), args.seed)
        print("unseen", {k: v for k, v in results["unseen"].items() if k != "recall"}, file=sys.stderr)
    onion_model = mini_lm(titles) if args.onion else None
    rows: dict[str, list] = {}
    found_by: dict[str, list] = {}  # the recurring triggers found in each catalog
    for position in args.positions.split(","):
        for level in LEVELS:
            for k, text in enumerate(PRESETS[level]):
                cat, labels = poisoned_catalog(titles, order, args.n_poison, text, level, position, args.seed)
                s = scanner.score(cat)
                flags, _, found = campaign.flag(cat, s, scanner.threshold, scanner.score)
                case = {"scanner": _metrics(s, flags, labels),
                        "scanner_title_only": _metrics(s, s >= scanner.threshold, labels)}
                tok, _ = token_stats_scores(cat)
                case["tokenstats"] = _metrics(tok, tok >= calibrate_threshold(tok, 0.01), labels)
                if len(voters) > 1:
                    each = [s] + [v.score(cat) for v in voters[1:]]
                    votes = sum((x >= v.threshold).astype(int) for x, v in zip(each, voters))
                    case["vote"] = _metrics(np.mean(each, axis=0), votes * 2 > len(voters), labels)
                ens = ensemble_scores({"scanner": s, "tokenstats": tok})
                case["ensemble"] = _metrics(ens, ens >= calibrate_threshold(ens, 0.01), labels)
                if onion_model is not None and position == "suffix" and k == 0:
                    on, _ = onion_scores(*onion_model, cat)
                    case["onion"] = _metrics(on, on >= calibrate_threshold(on, 0.01), labels)
                for method, m in case.items():
                    rows.setdefault(f"{position}|{level}|{method}", []).append(m)
                found_by.setdefault(f"{position}|{level}", []).append(
                    {"trigger": text, "found": [vars(c) for c in found]})
                print(position, level, text, {m: round(v["f1"], 3) for m, v in case.items()},
                      f"auc={case['scanner']['auc']:.3f}", [c.text for c in found], file=sys.stderr)
    results["detection"] = {key: summarise(r) for key, r in rows.items()}
    results["campaigns"] = found_by
    save(results, args.out)

    if args.lolo:
        lolo = {}
        for held in args.lolo_levels.split(","):
            fams = tuple(level for level in LEVELS if level != held)
            sc, _ = get_scanner(titles, ScannerConfig(**base_cfg, families=fams), domain="ml-100k")
            per, alone = [], []
            for text in PRESETS[held]:
                cat, labels = poisoned_catalog(titles, order, args.n_poison, text, held, "suffix", args.seed)
                s = sc.score(cat)
                flags, _, found = campaign.flag(cat, s, sc.threshold, sc.score)
                per.append(_metrics(s, flags, labels) | {"trigger": text, "found": [vars(c) for c in found]})
                alone.append(_metrics(s, s >= sc.threshold, labels))
            lolo[held] = summarise(per) | {"threshold": sc.threshold, "title_only": summarise(alone), "cases": per}
            print("LOLO", held, lolo[held], file=sys.stderr)
            results["lolo"] = lolo
            save(results, args.out)
    results["seconds"] = round(time.monotonic() - t0, 1)
    print(save(results, args.out))


def markdown(results: dict) -> str:
    """The docs' tables from a results JSON (`python bench/scanner_eval.py --markdown FILE.json`)."""
    det = results.get("detection", {})
    lines = ["| position | level | method | F1 | precision | recall | ROC-AUC | FPR | best F1 (oracle threshold) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, m in det.items():
        position, level, method = key.split("|")
        lines.append(f"| {position} | {level} | {method} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} "
                     f"| {m['auc']:.3f} | {m['fpr']:.4f} | {m['best_f1']:.3f} |")
    if results.get("lolo"):
        lines += ["", "| held-out level (suffix) | F1 | precision | recall | ROC-AUC | FPR | F1 title only |",
                  "|---|---|---|---|---|---|---|"]
        for level, m in results["lolo"].items():
            alone = f"{m['title_only']['f1']:.3f}" if "title_only" in m else "–"
            lines.append(f"| {level} | {m['f1']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['auc']:.3f} "
                         f"| {m['fpr']:.4f} | {alone} |")
    return "\n".join(lines)


def save(results: dict, out: str | None) -> str:
    """Write what is measured so far (a long run keeps its finished parts)."""
    text = json.dumps(results, indent=2, default=float)
    if out:
        Path(out).write_text(text)
    return text


if __name__ == "__main__":
    main()
