"""`scan` and `defend` subcommands (DESIGN.md §7): thin shells over `core.pscanner.scan` and `core.pscanner.defend`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from core.errors import InputError
from core.lm.models import ModelConfig
from core.progress import ConsoleProgress
from core.pscanner.agent import AGENT_SYMBOLS
from core.pscanner.campaign import CampaignConfig
from core.pscanner.defend import run_defend
from core.pscanner.scan import run_scan
from core.pscanner.scan_config import METHODS, ScanConfig
from core.pscanner.scanner import SCANNER_TRAIN, FrozenHeadConfig, ScannerConfig
from core.runs.jobs import run_command, scan_job
from core.runs.ray_engine import RayConfig

from .output import emit


def _scanner_config(args) -> ScannerConfig:
    exclude = tuple(t.strip() for t in (args.exclude_triggers or "").split(",") if t.strip())
    return ScannerConfig(model=ModelConfig(name=args.scanner_model, quant=args.quant),
                         train=replace(SCANNER_TRAIN, epochs=args.epochs), rounds=args.rounds,
                         target_fpr=args.target_fpr, use_llm_agent=args.llm_agent, seed=args.seed, exclude=exclude,
                         agent_symbols=args.agent_symbols,
                         frozen=FrozenHeadConfig(probes_per_title=args.probes_per_title,
                                                 example_titles=args.example_titles))


def _scan_config(args, source: str) -> ScanConfig:
    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    if "scanner" not in methods:
        methods = ("scanner", *methods)
    if args.engine != "ray" and (args.address or args.workers or args.shard_dir):
        raise InputError("--address, --workers and --shard-dir need --engine ray")
    return ScanConfig(source=source, catalog_path=getattr(args, "catalog", None), label_col=args.label_col,
                      dataset=args.dataset, run_id=getattr(args, "run", None), methods=methods,
                      scanner=_scanner_config(args), threshold=args.threshold, train_on=args.train_on,
                      use_cache=not args.no_cache, spans=not getattr(args, "no_spans", False),
                      campaigns=args.campaigns, campaign=CampaignConfig(top=args.campaign_top,
                                                        min_titles=args.campaign_min_titles,
                                                        pair_rest=args.campaign_pair_rest,
                                                        spare_one=args.campaign_spare_one,
                                                        spread=args.campaign_spread or None,
                                                        spread_drop=args.campaign_spread_drop,
                                                        series=not args.no_campaign_series),
                      unicode_check=not args.no_unicode_check, engine=args.engine,
                      ray=RayConfig(address=args.address, workers=args.workers, shard_dir=args.shard_dir),
                      crossfit=args.crossfit, fold_epochs=args.fold_epochs, fold_rounds=args.fold_rounds,
                      rerank=args.rerank, rerank_probes=args.rerank_probes, set_aside=args.set_aside)


def _summary(r: dict) -> str:
    lines = [f"{r['scan_id']}: {r['n_flagged']} of {r['n_items']} items flagged at threshold "
             f"{r['threshold']:.4f} ({r['seconds']:.1f} s)"]
    if "f1" in r:
        lines.append(f"  scanner     precision={r['precision']:.3f} recall={r['recall']:.3f} f1={r['f1']:.3f} "
                     f"auc={r['auc']:.3f} fpr={r['fpr']:.4f}")
    for c in r.get("campaigns", []):
        lines.append(f"  recurring trigger {c['text']!r} on {c['n_titles']} items (median score "
                     f"{c['median_score']:.3f}, {c['median_without']:.3f} without it)")
    for c in r.get("series_passed", []):
        lines.append(f"  series name {c['text']!r} on {c['n_titles']} items recurs like a trigger; not flagged "
                     "(its titles read as one series: review them)")
    if r.get("unicode"):
        kinds = ", ".join(f"{k} {n}" for k, n in r["unicode"]["findings"].items() if n)
        lines.append(f"  unicode hygiene flagged {r['unicode']['n_flagged']} items" + (f" ({kinds})" if kinds else ""))
    for name, m in r.get("baselines", {}).items():
        if "f1" in m:
            lines.append(f"  {name:<11} precision={m['precision']:.3f} recall={m['recall']:.3f} f1={m['f1']:.3f} "
                         f"auc={m['auc']:.3f}")
    if r.get("csv"):
        lines.append(f"  wrote {r['csv']}")
    return "\n".join(lines)


def cmd_scan(args, store):
    """`scan`: one source (a catalog file or an attack run), the scan's JSON or a summary printed."""
    sources = [s for s in ("catalog", "run") if getattr(args, s)]
    if len(sources) > 1:
        raise InputError("give one of --catalog FILE, --run RUN_ID or --dataset NAME")
    source = sources[0] if sources else "dataset" if args.dataset else None
    if source is None:
        raise InputError("nothing to scan: give --catalog FILE, --dataset NAME or --run RUN_ID")
    if args.out and Path(args.out).suffix.lower() != ".csv":
        raise InputError(f"--out {args.out!r} must end in .csv")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise InputError(f"--out folder {str(Path(args.out).resolve().parent)!r} does not exist")
    cfg = _scan_config(args, source)
    progress = None if args.json else ConsoleProgress()
    result = run_command(store, "scan", cfg.dataset or "", cfg.to_dict(), cfg.scanner.seed,
                         scan_job(run_scan, store, cfg, args.out), progress)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    emit(args, result, _summary)


def cmd_defend(args, store):
    """`defend`: scan an attack run's catalog, retrain its victim without the flagged items, print before/after."""
    if store.get_run(args.run) is None:
        raise InputError(f"unknown run id {args.run!r}")
    args.catalog = None
    cfg = _scan_config(args, "run")
    progress = None if args.json else ConsoleProgress()
    result = run_command(store, "defend", cfg.dataset or "", {"attack_run": args.run, **cfg.to_dict()},
                         cfg.scanner.seed, lambda p, _: run_defend(store, args.run, cfg, p), progress)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)

    def text(r):
        found, before, after = r["detection"], r["before"], r["after"]
        return (f"dropped {len(r['dropped'])} flagged items; detection f1={found.get('f1')} auc={found.get('auc')}\n"
                f"  before: asr={before.get('asr')} hr@1={before.get('hr@1')}\n"
                f"  after:  asr={after.get('asr')} hr@1={after.get('hr@1')}")
    emit(args, result, text)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset to scan, or the domain whose titles train the scanner")
    p.add_argument("--label-col", help="column with the ground-truth poison flag (default: is_poisoned)")
    p.add_argument("--method", default="scanner,tokenstats",
                   help=f"comma-separated methods from {', '.join(METHODS)} (scanner always runs)")
    p.add_argument("--threshold", type=float, help="flag at score >= this (default: calibrated for --target-fpr)")
    p.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate the threshold aims at")
    p.add_argument("--scanner-model", default="auto",
                   help="auto (default: smollm2-135m up to 5,000 titles with no trusted reference; mini above, with "
                        "--run or --dataset as reference, and on Ray), mini (fast, built here: bulk "
                        "catalogs), smollm2-135m (a real pretrained LLM, frozen, with a linear head: knows language, "
                        "~20 titles/s on 2 CPU cores), tiny, an HF id/folder or a .gguf file")
    p.add_argument("--quant", default="none", choices=("none", "8bit", "4bit"), help="quantize the scanner's base")
    p.add_argument("--rounds", type=int, default=2, help="adversarial rounds of the augmentation agent")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the first round")
    p.add_argument("--probes-per-title", type=int, default=FrozenHeadConfig.probes_per_title,
                   help="frozen-LLM scanner: a round probes at most this many fresh triggers per title (default "
                        "%(default)s; 0 = the agent's 300 whatever the catalog's size; only catalogs under ~125 "
                        "titles feel it: docs/SCANNER.md E61-E62)")
    p.add_argument("--example-titles", type=int, default=FrozenHeadConfig.example_titles,
                   help="frozen-LLM scanner: at most this many titles get triggered copies and variants to train on, "
                        "the others train as themselves (default %(default)s; 0 = all)")
    p.add_argument("--train-on", default="auto", choices=("auto", "domain", "catalog"),
                   help="train on the domain dataset's titles or on the scanned catalog's own")
    p.add_argument("--exclude-triggers", help="comma-separated trigger strings the agent must never use")
    p.add_argument("--agent-symbols", default=AGENT_SYMBOLS,
                   help="punctuation the agent's character triggers mix in (narrow it to hold symbols out)")
    p.add_argument("--llm-agent", action="store_true", help="also ask the configured LLM endpoint for triggers")
    p.add_argument("--campaigns", default="auto", choices=("auto", "on", "off"),
                   help="also flag every title carrying a trigger that recurs among the top-scored titles "
                        "(core.pscanner.campaign); auto = on with a trusted reference (--dataset for a run or a file) "
                        "or a cross-fitted scan, off when one scanner trains on the catalog itself (--crossfit 0)")
    p.add_argument("--campaign-top", type=float, default=CampaignConfig.top,
                   help="share of the catalog, by score, in which a recurring trigger is looked for")
    p.add_argument("--campaign-min-titles", type=int, default=CampaignConfig.min_titles,
                   help="top-scored titles a recurring trigger must be on (at least 2)")
    p.add_argument("--campaign-pair-rest", type=float, default=CampaignConfig.pair_rest,
                   help="a trigger on two top titles must leave both, once removed, below this quantile of the "
                        "catalog's scores")
    p.add_argument("--campaign-spare-one", action="store_true",
                   help="a recurring trigger on 3 or more titles may have one of them outside the top-scored share, "
                        "when removing it lowers that one too (helps artist names and games, costs film titles: E57)")
    p.add_argument("--campaign-spread", type=float, default=CampaignConfig.spread,
                   help="also take a trigger on 2 or more titles that all rank in this top share of the catalog, when "
                        "removing it lowers each by --campaign-spread-drop logits (0 = off; a local cross-fitted scan "
                        "with the frozen-LLM scanner only, E58)")
    p.add_argument("--campaign-spread-drop", type=float, default=CampaignConfig.spread_drop,
                   help="the logit drop the spread check asks of every carrier")
    p.add_argument("--no-campaign-series", action="store_true",
                   help="take a recurring n-gram for a trigger even when its titles read as one series (a franchise "
                        "name that leaves fragments or shared words once removed)")
    p.add_argument("--no-unicode-check", action="store_true",
                   help="do not flag invisible/bidi characters, mixed-script or look-alike words and rare emoji or "
                        "symbols (core.pscanner.unicode_hygiene); on by default, whatever the threshold")
    p.add_argument("--crossfit", type=int, default=ScanConfig.crossfit,
                   help="without a trusted reference (no --dataset/--run), score each of K folds of the catalog "
                        "with a scanner that never saw it as clean and calibrate on those scores; 0 = off")
    p.add_argument("--fold-epochs", type=int, default=ScanConfig.fold_epochs,
                   help="at most this many first-round epochs for each cross-fitted fold's scanner")
    p.add_argument("--fold-rounds", type=int, default=ScanConfig.fold_rounds,
                   help="at most this many adversarial rounds for each cross-fitted fold's scanner")
    p.add_argument("--rerank", type=float, default=ScanConfig.rerank,
                   help="share of the top-scored titles re-ordered by how much removing one span lowers their score "
                        "(a local scan whose frozen-LLM scanner trains on the catalog itself; 0 = off)")
    p.add_argument("--rerank-probes", type=int, default=ScanConfig.rerank_probes,
                   help="apply the re-ranking only where fresh synthetic triggers on this many of the catalog's own "
                        "titles rank better with it; 0 (default) = re-rank unchecked (the check did not pay on "
                        "held-out triggers: E41 in docs/SCANNER.md)")
    p.add_argument("--set-aside", type=float, default=ScanConfig.set_aside, metavar="SHARE",
                   help="calibrate a catalog scanned without reference with up to this share of its top titles set "
                        "aside as not clean (for a small catalog of which a tenth or more may be poisoned; 0 = off, "
                        "E64 in docs/SCANNER.md)")
    p.add_argument("--no-cache", action="store_true", help="train a fresh scanner and do not cache it")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="score in this process, or on a Ray cluster (Ray Data reads the catalog, an actor pool "
                        "scores it; same scores and flags; README: 'Past one machine')")
    p.add_argument("--address", help="Ray cluster: auto (joined with `ray start`), ray://HOST:PORT or HOST:PORT; "
                                     "default: a cluster started here for this scan, on 127.0.0.1 only")
    p.add_argument("--workers", type=int, help="Ray actors scoring at once (default: one per CPU, or per GPU)")
    p.add_argument("--shard-dir", help="where Ray workers write score shards; a folder or s3:// URI every node and "
                                       "this process reach (default: under BADREC_HOME, one machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def register(sub) -> None:
    """Add the `scan` and `defend` subcommands and their flags to the CLI."""
    p = sub.add_parser("scan", help="score a catalog's titles for backdoor triggers (P-Scanner + baselines)")
    p.add_argument("--catalog", help="CSV/TSV/Parquet/JSON Lines file with item id and title columns (with "
                                     "--engine ray also a folder of such files)")
    p.add_argument("--run", help="scan an attack run's poisoned catalog")
    p.add_argument("--out", help="write per-item results to this .csv")
    p.add_argument("--no-spans", action="store_true",
                   help="skip the suspicious-span search of flagged titles (~30%% of a large scan's time)")
    _common(p)
    p.set_defaults(fn=cmd_scan)
    p = sub.add_parser("defend", help="scan an attack run, drop flagged items, retrain, report ASR before/after")
    p.add_argument("--run", required=True, help="the attack run to defend")
    _common(p)
    p.set_defaults(fn=cmd_defend)
