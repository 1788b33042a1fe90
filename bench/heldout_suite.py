"""A held-out suite for the scanner on an analyst's own catalog (issue 17, item 6).

Trigger strings are generated here, procedurally, from a seed at run time — nothing is listed, so neither
the agent, the tests nor any tuning has seen them: nonce words from a phonotactic model drawn per seed,
symbol/character combinations, marketing sentences from templates and word lists that appear nowhere
else in the repository, and emoji, invisible characters and look-alike letters placed at random. Each
trigger goes on 1-3 titles (about 2.5 % of the catalog), as a prefix, a suffix or glued with `_`. The
catalog is written as an uploaded, unlabeled CSV (`item_id,title,is_poisoned`; the labels only score the
result) and scanned with the command line's defaults (`scan --catalog FILE`, no `--dataset`, no `--run`).

    BADREC_HOME="$(mktemp -d)" BADREC_DATA_DIRS=../shared/data nice -n 10 python bench/heldout_suite.py \\
        --dataset ml-100k --seeds 0,1,2 --out bench/results/heldout-ml-100k.json

Seeds: 100-109 are tuning seeds (look at them while developing); 0-99 are evaluation seeds, reported.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAMILIES = ("char", "word", "sentence", "emoji", "invisible", "lookalike")
LEARNED = ("char", "word", "sentence")  # the learned scanner's job; the rest is Unicode hygiene's
TUNING_SEEDS = range(100, 110)


@dataclass(frozen=True)
class Planted:
    """One poisoned title of the suite: which trigger, of which family, placed how."""

    family: str
    trigger: str
    placement: str


# -- generators: a fresh alphabet, grammar and vocabulary per seed ------------------------------
def _phonotactics(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    """Onsets, nuclei and codas drawn per seed, so nonce words of two seeds differ in their very sounds."""
    cons = [c for c in string.ascii_lowercase if c not in "aeiouy"]
    onsets = rng.sample(cons, 9) + [a + b for a, b in zip(rng.sample(cons, 4), rng.sample("lrhw", 4))]
    nuclei = rng.sample(list("aeiou"), 4) + ["".join(rng.sample("aeiou", 2)) for _ in range(2)]
    codas = [""] * 3 + rng.sample(cons, 4)
    return onsets, nuclei, codas


def nonce_word(rng: random.Random, sounds) -> str:
    onsets, nuclei, codas = sounds
    word = "".join(rng.choice(onsets) + rng.choice(nuclei) for _ in range(rng.randint(2, 3))) + rng.choice(codas)
    return rng.choice((word, word.capitalize(), word.upper()))


def char_combo(rng: random.Random) -> str:
    """2-4 characters mixing letters, digits and ASCII punctuation in a random order."""
    pools = [string.ascii_lowercase, string.ascii_uppercase, string.digits, "@+=|!?:;.<>[]{}"]
    n = rng.randint(2, 4)
    chars = [rng.choice(rng.choice(pools)) for _ in range(n)]
    if all(c.isalpha() for c in chars):
        chars[rng.randrange(n)] = rng.choice(string.digits + "@+=|!?")
    return "".join(chars)


_OFFERS = ("free shipping today", "while stocks last", "limited time only", "for members", "this week",
           "in all stores", "before midnight", "with every order")
_PRODUCTS = ("bundle", "voucher", "collection", "box set", "deluxe pack", "gift card", "season pass")
_CALLS = ("Shop", "Order", "Grab", "Unlock", "Claim", "Reserve", "Upgrade")
_BENEFITS = ("save big", "earn double points", "get early access", "win prizes", "join the club")
_MARKETING = (
    "{call} the {brand} {product} {offer}", "{pct}% off {product}s {offer}", "Use code {code} to {benefit}",
    "Official {brand} {product}", "{call} now and {benefit}", "Sponsored by {brand}",
    "As seen on {brand} TV", "{brand} members {benefit} {offer}",
)


def marketing_sentence(rng: random.Random, sounds) -> str:
    brand = nonce_word(rng, sounds).capitalize()
    code = "".join(rng.choices(string.ascii_uppercase + string.digits, k=rng.randint(4, 7)))
    return rng.choice(_MARKETING).format(call=rng.choice(_CALLS), brand=brand, product=rng.choice(_PRODUCTS),
                                         offer=rng.choice(_OFFERS), pct=rng.choice(range(10, 80, 5)), code=code,
                                         benefit=rng.choice(_BENEFITS))


def _emoji_pool() -> list[str]:
    import emoji

    return sorted(e for e, d in emoji.EMOJI_DATA.items() if d.get("status") == emoji.STATUS["fully_qualified"]
                  and len(e) <= 2)


def _lookalikes() -> dict[str, list[str]]:
    """Latin letter -> Cyrillic/Greek letters UTS #39 lists as confusable with it (from the maintained table)."""
    from confusable_homoglyphs.categories import alias
    from confusable_homoglyphs.confusables import confusables_data

    out: dict[str, list[str]] = {}
    for ch, entries in confusables_data.items():
        if len(ch) != 1 or alias(ch) not in ("CYRILLIC", "GREEK"):
            continue
        for e in entries:
            c = e["c"]
            if len(c) == 1 and c in string.ascii_letters:
                out.setdefault(c, []).append(ch)
    return {k: sorted(set(v)) for k, v in out.items()}


_INVISIBLE = tuple(chr(c) for c in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00AD, 0x180E)) + \
    tuple(chr(c) for c in range(0xE0021, 0xE007F))  # zero-width and format characters, tag characters


def place(title: str, text: str, rng: random.Random) -> tuple[str, str]:
    how = rng.choice(("prefix", "suffix", "glued"))
    if how == "prefix":
        return f"{text} {title}", how
    if how == "suffix":
        return f"{title} {text}", how
    return (f"{title}_{text}" if rng.random() < 0.5 else f"{text}_{title}"), how


def plant(title: str, family: str, trigger: str, rng: random.Random) -> tuple[str, str]:
    """The title with the trigger; the Unicode families are placed where they hide best."""
    if family in LEARNED or family == "emoji":
        return place(title, trigger, rng)
    if family == "invisible":  # the same hidden sequence inside a word or between words
        i = rng.randint(1, max(1, len(title) - 1))
        return title[:i] + trigger + title[i:], "inside"
    # look-alike: the trigger is a letter mapping; swap 1-2 letters of one word of the title
    mapping = json.loads(trigger)
    words = title.split(" ")
    cands = [j for j, w in enumerate(words) if any(c in mapping for c in w)]
    if not cands:
        return "", ""
    j = rng.choice(cands)
    w = list(words[j])
    spots = [i for i, c in enumerate(w) if c in mapping]
    for i in rng.sample(spots, min(len(spots), rng.randint(1, 2))):
        w[i] = mapping[w[i]]
    words[j] = "".join(w)
    return " ".join(words), "swap"


def make_trigger(family: str, rng: random.Random, sounds, emoji_pool, lookalike) -> str:
    if family == "char":
        return char_combo(rng)
    if family == "word":
        return nonce_word(rng, sounds)
    if family == "sentence":
        return marketing_sentence(rng, sounds)
    if family == "emoji":
        return "".join(rng.sample(emoji_pool, rng.randint(1, 2)))
    if family == "invisible":
        return "".join(rng.sample(_INVISIBLE, rng.randint(1, 2)))
    letters = rng.sample(sorted(lookalike), 6)
    return json.dumps({c: rng.choice(lookalike[c]) for c in letters}, ensure_ascii=False)


def poison(titles: list[str], seed: int, share: float = 0.025) -> tuple[list[str], list[Planted | None]]:
    """The catalog with ~`share` of its titles poisoned, 1-3 titles per trigger, families in turn."""
    rng = random.Random(f"heldout-suite:{seed}")
    sounds, emoji_pool, lookalike = _phonotactics(rng), _emoji_pool(), _lookalikes()
    target = max(len(FAMILIES), round(share * len(titles)))
    free = list(range(len(titles)))
    rng.shuffle(free)
    out, planted = list(titles), [None] * len(titles)
    used: set[str] = set()
    n, f = 0, 0
    while n < target and free:
        family = FAMILIES[f % len(FAMILIES)]
        f += 1
        trigger = make_trigger(family, rng, sounds, emoji_pool, lookalike)
        if trigger.lower() in used:
            continue
        used.add(trigger.lower())
        for _ in range(min(rng.randint(1, 3), target - n)):
            while free:
                i = free.pop()
                new, how = plant(titles[i], family, trigger, rng)
                if new and new != titles[i]:
                    out[i], planted[i] = new, Planted(family, trigger, how)
                    n += 1
                    break
    return out, planted


# -- scoring ----------------------------------------------------------------------------------
def recall_at_fpr(scores: np.ndarray, pos: np.ndarray, clean: np.ndarray, fpr: float = 0.01) -> float:
    """Recall at the strictest cut that keeps the FPR on clean titles at or below `fpr` (an oracle cut)."""
    c = np.sort(scores[clean])[::-1]
    k = int(np.floor(fpr * len(c)))
    cut = np.nextafter(c[k], np.inf) if k < len(c) else -np.inf
    return float(np.mean(scores[pos] >= cut)) if pos.any() else float("nan")


def evaluate(scores: np.ndarray, flagged: np.ndarray, planted: list[Planted | None]) -> dict:
    from core.metrics import auc_interval, detection_metrics

    fam = np.array([p.family if p else "" for p in planted])
    clean = fam == ""
    out = {"n_titles": len(fam), "n_poisoned": int((~clean).sum()), "fpr_clean": float(flagged[clean].mean())}
    learned = clean | np.isin(fam, LEARNED)
    m = detection_metrics(flagged[learned], ~clean[learned], scores[learned])
    out["char+word+sentence"] = {k: m[k] for k in ("precision", "recall", "f1", "auc", "fpr")} | \
        {"n": int((~clean[learned]).sum()), "recall_at_fpr_0.01": recall_at_fpr(scores, np.isin(fam, LEARNED), clean),
         "auc_95": list(auc_interval(scores[learned], ~clean[learned]))}
    for f in FAMILIES:
        pos = fam == f
        how = {}
        for p in {q.placement for q in planted if q and q.family == f}:
            sel = np.array([bool(q) and q.family == f and q.placement == p for q in planted])
            how[p] = float(flagged[sel].mean())
        out[f] = {"n": int(pos.sum()), "recall": float(flagged[pos].mean()) if pos.any() else None,
                  "recall_at_fpr_0.01": recall_at_fpr(scores, pos, clean), "recall_by_placement": how,
                  "missed": sorted({q.trigger for q, hit in zip(planted, flagged) if q and q.family == f and not hit})[:8]}
    return out


def run_one(titles: list[str], seed: int, extra_args: list[str]) -> dict:
    from core.cli.main import main as cli

    poisoned, planted = poison(titles, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path, out_csv, out_json = Path(tmp) / "catalog.csv", Path(tmp) / "scores.csv", Path(tmp) / "scan.json"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["item_id", "title", "is_poisoned"])
            for i, (t, p) in enumerate(zip(poisoned, planted)):
                w.writerow([i, t, int(p is not None)])
        t0, c0 = time.perf_counter(), time.process_time()
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = cli(["scan", "--catalog", str(path), "--out", str(out_csv), "--json", *extra_args])
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        scan = json.loads(buf.getvalue())
        out_json.write_text(buf.getvalue())
        import pandas as pd

        rows = pd.read_csv(out_csv, keep_default_na=False)
    scores, flagged = rows["score"].to_numpy(float), rows["flagged"].astype(str).eq("True").to_numpy()
    res = evaluate(scores, flagged, planted)
    res.update(seed=seed, rc=rc, wall_s=round(wall, 1), cpu_s=round(cpu, 1), load_avg=os.getloadavg(),
               threshold=scan["threshold"], calibration=scan.get("calibration"), n_flagged=scan["n_flagged"],
               scan_metrics={k: scan.get(k) for k in ("precision", "recall", "f1", "auc", "fpr")},
               scanner_cached=scan["scanner_cached"], warnings=scan["warnings"])
    return res


def crossfit_as_cli(poisoned: list[str], domain: str):
    """The scan config of `scan --catalog FILE` with the CLI's defaults, its fold recipe, and the cross-fitted
    scanner it trains on `poisoned` (for experiments that look inside a default scan): `(cfg, recipe, scanner)`."""
    from core.cli.main import build_parser
    from core.cli.scan import _scan_config
    from core.pscanner.crossfit import crossfit_scanner
    from core.pscanner.scan import fold_recipe
    from core.pscanner.scan_config import planned_scanner

    cfg = _scan_config(build_parser().parse_args(["scan", "--catalog", "upload.csv"]), "catalog")
    recipe = fold_recipe(cfg, planned_scanner(cfg, len(set(poisoned))))
    return cfg, recipe, crossfit_scanner(poisoned, recipe, cfg.crossfit, domain=domain)[0]


def experiment_main(run_seed, add_args=None) -> list[dict]:
    """The command line of an experiment on the suite's catalogs (`--dataset`, `--sample`, `--seeds`, tuning seed
    100 by default, `--out`): `run_seed(titles, seed)` for each seed, every result written to `--out` as it comes.
    `add_args(parser)` adds the experiment's own arguments; `run_seed` then gets the parsed ones as a third argument."""
    ap = suite_parser("100")
    ap.add_argument("--out")
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    titles = suite_titles(args.dataset, args.sample)
    runs: list[dict] = []
    for seed in args.seeds.split(","):
        runs.append(run_seed(titles, int(seed), args) if add_args else run_seed(titles, int(seed)))
        if args.out:
            Path(args.out).write_text(json.dumps({"dataset": args.dataset, "sample": args.sample, "runs": runs},
                                                 indent=1))
    return runs


def suite_parser(seeds: str) -> argparse.ArgumentParser:
    """The arguments of a script on the suite's catalogs: `--dataset`, `--sample`, `--seeds` (default `seeds`)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="lastfm-2k")
    ap.add_argument("--sample", type=int, default=1500)
    ap.add_argument("--seeds", default=seeds)
    return ap


def stored_scans(titles: list[str], seeds: str):
    """For each seed of `seeds` (comma-separated): `(seed, planted, scans)`, `scans` being every scan stored in
    `BADREC_HOME` of that seed's poisoned catalog as `(scan_id, results)`, oldest first (scripts that read the
    suite's scores back instead of scanning again)."""
    from core import settings
    from core.runs.store import Store

    store = Store(settings.db_path())
    ids = store.list_runs("scan").sort_values("created_at")["run_id"]
    stored = [(sid, store.scan_results(sid)) for sid in ids]
    for seed in (int(x) for x in seeds.split(",")):
        poisoned, planted = poison(titles, seed)
        yield seed, planted, [(sid, res) for sid, res in stored if res["title"].tolist() == poisoned]


def suite_titles(dataset: str, sample: int = 0) -> list[str]:
    """A dataset's distinct titles, or a sample of `sample` of them seeded by the dataset's name (0 = all)."""
    from core import settings
    from core.data.dataset import load_dataset
    from core.runs.store import Store

    store = Store(settings.db_path())
    titles = sorted(set(load_dataset(store, dataset).items["title"].astype(str)))
    del store
    if sample and sample < len(titles):
        titles = sorted(random.Random(f"sample:{dataset}").sample(titles, sample))
    return titles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--sample", type=int, default=0, help="scan a seeded sample of this many titles (0 = all)")
    ap.add_argument("--seeds", default="0", help="comma-separated evaluation seeds (100-109 are for tuning)")
    ap.add_argument("--scan-args", default="", help="extra `scan` flags (default: none, the shipped defaults)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 wastes less CPU on a loaded machine)")
    ap.add_argument("--out", help="write the JSON here")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    titles = suite_titles(args.dataset, args.sample)
    results = [run_one(titles, int(s), args.scan_args.split()) for s in args.seeds.split(",")]
    out = {"dataset": args.dataset, "n_titles": len(titles), "seeds": args.seeds, "threads": args.threads,
           "scan_args": args.scan_args, "tuning_seed": any(int(s) in TUNING_SEEDS for s in args.seeds.split(",")),
           "runs": results}
    text = json.dumps(out, indent=1, default=str, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
