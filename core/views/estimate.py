"""Time before launch: how long a job will take here, stage by stage, from measured throughput.

A form shows this before its button, so a user does not start a 40-minute job expecting a demo. The
estimate is arithmetic over three things the caller passes: the job's config and data size, which parts
are already cached (skipped), and a throughput table. That table comes from this machine's own finished
runs when there are any (`rates_from_runs`: the newest recorded timings in DuckDB), otherwise from
`assets/throughput.json`, measured on this project's 2-core machines, per machine kind where it differs
(`load_rates`). Everything here is pure except those two readers and the cache probes at the end, which only
look at the disk.

Units: training is counted in tokens (tokens/s is what a CPU's speed is quoted in); a sample's tokens are
its title slots (history + candidates + answer) times the model's tokens per title slot. Scoring reuses a
prompt's KV cache, so it is counted in scored title slots per second.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import get_args

import pandas as pd

from core.attack.badrec import AttackConfig, Variant, n_poison_for
from core.progress import human_eta

THROUGHPUT_FILE = Path(__file__).resolve().parents[2] / "assets" / "throughput.json"  # core/views/ -> repo
LOAD_S = 5.0  # loading a cached base or adapter: seconds, whatever the model


@dataclass(frozen=True)
class ModelRates:
    """Measured speed of one victim model on this machine kind.

    Args:
        train_tokens_per_s (`float`): LoRA fine-tuning throughput.
        tokens_per_slot (`float`): tokens per title slot of a prompt (tokenizer and prompt text).
        score_slots_per_s (`float`): title slots scored per second in evaluation (all variants).
        base_build_s (`float`): building the base on a 100k-interaction dataset (0 for a downloaded model).
    """

    train_tokens_per_s: float
    tokens_per_slot: float
    score_slots_per_s: float
    base_build_s: float = 0.0


@dataclass(frozen=True)
class Rates:
    """A throughput table: victim models by key (`model_key`), scanners by base, and where it comes from."""

    models: dict[str, ModelRates]
    scanner_examples_per_s: dict[str, float]  # scanner training: examples x epochs per second
    scan_titles_per_s: dict[str, float]  # scoring a catalog
    source: str
    measured: dict = field(default_factory=dict)  # machine, load average, date of the reference table
    scanner_fixed_s: dict[str, float] = field(default_factory=dict)  # per scan, whatever its size (loading an LLM)


@dataclass(frozen=True)
class Stage:
    """One stage of a job and its expected seconds; a cached stage is skipped (0 s)."""

    name: str
    seconds: float
    cached: bool = False


@dataclass(frozen=True)
class Estimate:
    """The stages a job will run, each with its expected seconds (0 and `cached` when skipped)."""

    stages: tuple[Stage, ...]
    source: str

    @property
    def seconds(self) -> float:
        """The whole job's expected seconds: the sum of its stages (cached ones count 0)."""
        return sum(s.seconds for s in self.stages)

    def text(self) -> str:
        """One line for a form: "about 6 min: base model cached · clean model 2 min · ..."."""
        parts = [f"{s.name} cached (skipped)" if s.cached else f"{s.name} {human_eta(s.seconds)}"
                 for s in self.stages]
        return f"about {human_eta(self.seconds)} here: " + " · ".join(parts) + f" ({self.source})"


# -- the table --------------------------------------------------------------------------------
def load_rates(path: Path = THROUGHPUT_FILE, kind: str | None = None) -> Rates:
    """The reference table measured on this project's machines (`assets/throughput.json`), for a machine `kind`
    (`core.hardware.machine_kind`, this machine's by default): the speeds measured on that kind where the file
    has them (`kinds`: an AVX2-only CPU computes in fp32, 3-5x slower than an AVX512-BF16 one in bf16), the
    reference machine's otherwise, and a source that says which."""
    from core.hardware import machine_kind

    raw = json.loads(Path(path).read_text())
    kind = kind or machine_kind()
    ref, own = raw["measured"], raw.get("kinds", {}).get(kind, {})

    def table(key: str) -> dict:
        return {**raw.get(key, {}), **own.get(key, {})}

    source = f"measured on {ref['machine']} at load {ref['load_average']}, {ref['date']}"
    if own:
        mine = ", ".join(sorted({*own.get("models", {}), *own.get("scan_titles_per_s", {})}))
        source = (f"{mine} measured on {own['measured']['machine']} at load {own['measured']['load_average']}, "
                  f"{own['measured']['date']}; the rest {source}")
    elif kind != ref.get("kind"):
        source += f" (this machine is {kind}: expect other times)"
    return Rates({k: ModelRates(**v) for k, v in table("models").items()}, table("scanner_examples_per_s"),
                 table("scan_titles_per_s"), source, ref, table("scanner_fixed_s"))


def model_key(cfg: AttackConfig, blocks: bool = True) -> str:
    """`tiny:<size>` for the embedded model (sizes of `core.lm.tinylm.SIZES`), else the model's name; with
    adapters on the top N blocks only, `@topN` after it (such runs train faster and share the blocks below,
    E72), unless `blocks` is False."""
    from core.lm.tinylm import SIZES

    key = cfg.model.name
    if cfg.model.is_tiny:
        key = f"tiny:{next((name for name, t in SIZES.items() if t == cfg.tiny), 'custom')}"
    return f"{key}@top{cfg.model.lora_layers}" if blocks and cfg.model.lora_layers else key


def _slots(protocol: dict) -> tuple[int, int]:
    return int(protocol.get("history_len", 10)), int(protocol.get("n_candidates", 20))


EVAL_LISTS = 2 * len(get_args(Variant))  # lists scored per test user: both models score every variant


def _score_slots(history: int, candidates: int, generate: bool, lists: int = EVAL_LISTS) -> float:
    """Scored title slots per test user: `lists` lists, each a prompt of history + candidates read once plus
    every candidate as an answer; generate mode decodes one more per model."""
    return (lists + 2 * generate) * (history + 2 * candidates)


def rates_from_runs(runs: pd.DataFrame, fallback: Rates, newest: int = 5) -> Rates:
    """The table with this machine's own recorded speeds in place of the reference where runs exist.

    Args:
        runs (`pd.DataFrame`): `Store.list_runs("attack")` rows (config and result JSON; newest first).
        fallback (`Rates`): used for models without a finished run here, and for the base build time
            (runs do not record whether they built their base).
        newest (`int`): how many of a model's newest finished runs are averaged.

    Returns:
        `Rates` whose `source` says which models come from recorded runs.
    """
    found: dict[str, list[ModelRates]] = {}
    for row in runs.itertuples():
        if row.status != "done" or not isinstance(row.result, str):
            continue
        cfg, res = json.loads(row.config), json.loads(row.result)
        poisoning = res.get("poisoning", {})
        n_clean = poisoning.get("n_clean_samples", 0)
        # the clean model's training when this run trained it: the poisoned one may have reused its features
        train, n_samples = res.get("train", {}).get("clean", {}), n_clean
        if train.get("cached", True) or not train.get("seconds"):
            train, n_samples = res.get("train", {}).get("poisoned", {}), n_clean + poisoning.get("n_poison_samples", 0)
        seconds, tokens = train.get("seconds"), train.get("tokens")
        eval_s = res.get("timings", {}).get("evaluation_s")
        if not (seconds and tokens and eval_s and n_samples and res.get("n_test_users")):
            continue
        history, candidates = _slots(cfg.get("protocol", {}))
        epochs = float(cfg.get("train", {}).get("epochs", 1.0))
        key = model_key(AttackConfig.from_dict(cfg))
        if len(found.setdefault(key, [])) >= newest:
            continue
        base = fallback.models.get(key)
        found[key].append(ModelRates(
            train_tokens_per_s=tokens / seconds,
            tokens_per_slot=tokens / (n_samples * epochs * (history + candidates + 1)),
            # runs before `n_eval_lists` was recorded scored 6 lists (the clean model only clean and trigger)
            score_slots_per_s=res["n_test_users"] * _score_slots(history, candidates, bool(cfg.get("generate")),
                                                                 res.get("n_eval_lists", 6)) / eval_s,
            base_build_s=base.base_build_s if base else 0.0))
    models = dict(fallback.models)
    for key, rs in found.items():
        models[key] = ModelRates(*(sum(getattr(r, f) for r in rs) / len(rs) for f in
                                   ("train_tokens_per_s", "tokens_per_slot", "score_slots_per_s", "base_build_s")))
    source = fallback.source if not found else \
        f"from the newest runs here for {', '.join(sorted(found))}; otherwise {fallback.source}"
    return replace(fallback, models=models, source=source)


# -- estimates ---------------------------------------------------------------------------------
def attack_estimate(cfg: AttackConfig, n_users: int, n_interactions: int, cached: set[str], rates: Rates
                    ) -> Estimate | None:
    """The stages of `core.attack.experiment.run_attack` and their expected time.

    Args:
        cfg (`AttackConfig`): the attack as the form would launch it.
        n_users (`int`): the dataset's users (each gives `windows_per_user` fine-tuning samples).
        n_interactions (`int`): the dataset's interactions (the tiny base pre-trains on them).
        cached (`set[str]`): stages already cached here: "base model", "clean model"
            (`core.attack.experiment.cached_stages`).
        rates (`Rates`): the throughput table.

    Returns:
        `Estimate`, or None when no speed was ever measured for this model.
    """
    r = rates.models.get(model_key(cfg)) or rates.models.get(model_key(cfg, blocks=False))
    if r is None:
        return None
    history, candidates = cfg.protocol.history_len, cfg.protocol.n_candidates
    clean = n_users * cfg.windows_per_user
    samples = clean + n_poison_for(clean, cfg.poison_ratio)
    per_sample = (history + candidates + 1) * r.tokens_per_slot / r.train_tokens_per_s
    users = min(n_users, cfg.eval_users or n_users)
    score = users * _score_slots(history, candidates, cfg.generate) / r.score_slots_per_s
    base = r.base_build_s * n_interactions / 100_000 if r.base_build_s else LOAD_S
    stages = (Stage("base model", 0.0 if "base model" in cached else base, "base model" in cached),
              Stage("clean model", LOAD_S if "clean model" in cached else clean * cfg.train.epochs * per_sample,
                    "clean model" in cached),
              Stage("poisoned model", samples * cfg.train.epochs * per_sample),
              Stage("evaluation", score))
    return Estimate(stages, rates.source)


VARIANTS_PER_TITLE = 10.0  # texts a re-ranked title costs (itself and each removable span: E36, docs/SCANNER.md)
# texts a frozen-LLM scanner's round costs per probe counted here: the probe and the copies of a missed one on other
# titles (E60 counted 1,613 round texts in the 50-title scan, whose 2 x 300 probes this count gives: E62)
ROUND_TEXTS_PER_PROBE = 2.7


def _scanner_passes(scanner, n_domain_titles: int) -> float:
    """Training examples x passes of `core.pscanner.scanner_train.train_scanner` for these settings (texts
    featurized once for a frozen-LLM scanner): round 0 takes at least `min_steps` steps; consolidation on the
    held-out titles with a replay is ~3/4 of a pass; each adversarial round retrains on its misses plus a replay
    (~1/3). Hard-negative mining is absorbed in the measured rate."""
    titles = min(scanner.max_titles, n_domain_titles)
    if scanner.mode == "frozen":  # core.pscanner.scanner_frozen: a forward pass per distinct text, for all heads
        recipe = scanner.frozen
        return titles + recipe.with_examples(titles) * (recipe.pos_per_title + recipe.hard_per_title) + \
            scanner.rounds * recipe.round_probes(scanner.agent_per_round, titles) * ROUND_TEXTS_PER_PROBE
    examples = titles * (1 - scanner.holdout_frac) * (scanner.pos_per_title + 1 + scanner.hard_per_title)
    batches = max(1, math.ceil(examples / scanner.train.batch_size))
    epochs = max(int(scanner.train.epochs), math.ceil(scanner.min_steps / batches))
    return examples * (epochs + 0.75 * scanner.consolidate + scanner.rounds / 3)


def scan_estimate(scanner, n_domain_titles: int, n_items: int, cached: bool, rates: Rates,
                  trains_on_catalog: bool = False, reranked: int = 0) -> Estimate | None:
    """The stages of a scan: training the scanner (skipped when cached), scoring the catalog and re-ranking its top.

    Args:
        scanner (`ScannerConfig`): the scanner to train (base, epochs, rounds, titles, examples per title).
        n_domain_titles (`int`): titles it would train on before `max_titles` and the held-out share.
        n_items (`int`): titles scanned.
        cached (`bool`): a scanner for these titles and settings is in the cache (`scanner_cached`).
        trains_on_catalog (`bool`): no trusted reference, so the scanner trains on the catalog itself (cross-fitted):
            a frozen-LLM scanner then featurized every title while training, and scoring them costs no pass.
        reranked (`int`): texts whose span deletions are scored for the re-ranking
            (`core.pscanner.scan_config.contrasted_titles`): `VARIANTS_PER_TITLE` texts each at the scanner's
            training rate (texts/s).

    Returns:
        `Estimate`, or None when no speed was measured for this scanner base.
    """
    name = scanner.model.name
    train_rate, score_rate = rates.scanner_examples_per_s.get(name), rates.scan_titles_per_s.get(name)
    if not train_rate or not score_rate:
        return None
    fixed = LOAD_S + rates.scanner_fixed_s.get(name, 0.0)
    train = _scanner_passes(scanner, n_domain_titles) / train_rate + fixed
    scoring = 0.0 if scanner.mode == "frozen" and trains_on_catalog and not cached else n_items / score_rate
    stages = (Stage("scanner", 0.0 if cached else train, cached), Stage("scoring", scoring + LOAD_S))
    if reranked:
        stages += (Stage("re-ranking the top titles", reranked * VARIANTS_PER_TITLE / train_rate),)
    return Estimate(stages, rates.source)


def scan_rates_from_runs(scans: pd.DataFrame, fallback: Rates, newest: int = 5) -> Rates:
    """The table with this machine's recorded scan speeds (the dashboard's scan jobs) where there are any.

    Args:
        scans (`pd.DataFrame`): `Store.list_runs("scan")` rows (config and result JSON; newest first).
        fallback (`Rates`): kept for scanner bases without a finished scan here.
    """
    from core.pscanner.scanner import ScannerConfig

    train: dict[str, list[float]] = {}
    score: dict[str, list[float]] = {}
    for row in scans.itertuples():
        if row.status != "done" or not isinstance(row.result, str):
            continue
        res = json.loads(row.result)
        scanner = ScannerConfig.from_dict(json.loads(row.config).get("scanner", {}))
        # the model `auto` resolved to, as the scan recorded it (its speed is that model's)
        name = res.get("scanner", {}).get("model") or scanner.model.name
        scanner = replace(scanner, model=replace(scanner.model, name=name))
        info, n_items = res.get("scanner", {}).get("info", {}), res.get("n_items")
        if res.get("scanner_cached") and n_items and res.get("seconds"):
            score.setdefault(name, []).append(n_items / max(res["seconds"] - LOAD_S, 0.1))
        elif info.get("seconds") and info.get("n_titles"):
            fixed = LOAD_S + fallback.scanner_fixed_s.get(name, 0.0)
            train.setdefault(name, []).append(
                _scanner_passes(scanner, info["n_titles"]) / max(info["seconds"] - fixed, 0.1))
    mean = {name: sum(v[:newest]) / len(v[:newest]) for name, v in train.items()}
    scoring = {name: sum(v[:newest]) / len(v[:newest]) for name, v in score.items()}
    if not mean and not scoring:
        return fallback
    return replace(fallback, scanner_examples_per_s={**fallback.scanner_examples_per_s, **mean},
                   scan_titles_per_s={**fallback.scan_titles_per_s, **scoring},
                   source=f"scans recorded here for {', '.join(sorted(set(mean) | set(scoring)))}; {fallback.source}")


def defend_estimate(scan: Estimate, attack: Estimate) -> Estimate:
    """`core.pscanner.defend.run_defend`: the scan, then the poisoned victim retrained without the flagged items and
    evaluated again (`core.attack.experiment.retrain_without`: 3 lists, clean, trigger and transfer, of an
    attack's `EVAL_LISTS`)."""
    by_name = {s.name: s for s in attack.stages}
    return Estimate(scan.stages + (Stage("victim retrained", by_name["poisoned model"].seconds),
                                   Stage("evaluation", by_name["evaluation"].seconds * 3 / EVAL_LISTS)), scan.source)


# -- cache probe (reads the disk, nothing else; the attack's is core.attack.experiment.cached_stages) -----------
def scanner_cached(store, cfg) -> bool:
    """Whether the scanner a `ScanConfig` would train on its domain dataset's titles is in the cache."""
    import random

    from core.data.dataset import load_dataset
    from core.pscanner.catalog import run_catalog
    from core.pscanner.crossfit import fold_plan
    from core.pscanner.scan import fold_recipe
    from core.pscanner.scan_config import has_reference
    from core.pscanner.scanner_train import scanner_folder

    if not cfg.use_cache or cfg.train_on == "catalog" or (cfg.source == "catalog" and not cfg.dataset):
        return False  # it trains on the catalog itself: its titles are known only once the file is read
    domain = run_catalog(store, cfg.run_id).domain if cfg.source == "run" else cfg.dataset
    trusted = has_reference(cfg)
    scanner = replace(cfg.scanner, self_clean=cfg.scanner.self_clean and not trusted)
    titles = load_dataset(store, domain).items["title"].tolist()
    if trusted or not cfg.crossfit:
        return (scanner_folder(titles, scanner) / "meta.json").exists()
    folds = fold_recipe(cfg, scanner)  # as core.pscanner.scan.score: one scanner per fold; all cached or it trains
    _, _, trains, base = fold_plan(titles, folds, cfg.crossfit, random.Random(f"crossfit:{folds.seed}"))
    return all((scanner_folder(train, folds, base) / "meta.json").exists() for train in trains)
