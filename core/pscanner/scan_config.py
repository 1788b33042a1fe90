"""What a scan is asked (`ScanConfig`) and what it returns (`ScanResult`, the command line's JSON), with the
pure questions asked of a config before anything runs: does it have a trusted reference, which scanner will it use."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from core.config import ConfigMixin
from core.errors import InputError
from core.lm.models import ModelConfig
from core.runs.ray_engine import RayConfig

from .campaign import CampaignConfig
from .rerank import rerank_size
from .scanner import ScannerConfig, resolve_model

METHODS = ("scanner", "onion", "tokenstats", "judge", "ensemble")
BASELINES = ("onion", "tokenstats", "judge")


@dataclass(frozen=True)
class ScanConfig(ConfigMixin):
    """What to scan and how.

    Args:
        source (`Literal["catalog", "dataset", "run"]`): a file, a dataset in the store, or an attack run's
            poisoned catalog.
        catalog_path (`str`, optional): the file for `source="catalog"` (CSV/TSV/Parquet/JSON Lines).
        label_col (`str`, optional): column with the ground-truth poison flag (guessed: is_poisoned, label).
        dataset (`str`, optional): the dataset to scan, or the domain whose titles train the scanner.
        run_id (`str`, optional): the attack run for `source="run"`.
        methods (`tuple[str, ...]`): `scanner` plus any of onion, tokenstats, judge, ensemble.
        scanner (`ScannerConfig`): the scanner to get or train; its model is `auto` here, as in the CLI and on
            the Scanner page, so that a scan from the API scores as they do (`planned_scanner`).
        threshold (`float`, optional): flag at score >= threshold; default: the scanner's calibrated one.
        train_on (`Literal["auto", "domain", "catalog"]`): titles the scanner trains on: the domain dataset's
            (clean reference) titles, or the scanned catalog's own; `auto` = domain when one is known.
        chunk_size (`int`): titles scored and written per chunk (bounds memory; larger chunks sort
            into batches of closer lengths: 16,384 scored ~15 % faster than 4,096).
        spans (`bool`): find the suspicious span of flagged titles.
        campaigns (`Literal["auto", "on", "off"]`): also flag every title carrying a trigger that recurs among
            the top-scored titles (`core.pscanner.campaign`). `auto` = on when no title is scored by a scanner
            that trained on it as clean: a trusted reference (a domain dataset for a run or an upload) or a
            cross-fitted scan of the catalog itself (E44); off when a catalog trains one scanner on itself
            (`crossfit=0`): there series and franchise names recur among the top titles (steam: 27 false
            campaigns, E18).
        campaign (`CampaignConfig`): the rule's parameters.
        judge_max_items (`int`): the LLM judge is skipped (with a warning) above this many titles.
        use_cache (`bool`): reuse / store trained scanners.
        unicode_check (`bool`): also flag titles with Unicode-hygiene findings (`core.pscanner.unicode_hygiene`:
            invisible or bidi characters, mixed-script or look-alike words, emoji and symbols rare in the
            catalog), whatever the threshold; the score is the larger of the two and `reason` says why.
        engine (`Literal["local", "ray"]`): score in this process, or on a Ray cluster (`core.runs.ray_engine`:
            Ray Data reads a catalog file or folder of shards, an actor pool scores it chunk by chunk); the
            same scores and flags either way.
        ray (`RayConfig`): the cluster's address, workers and shard folder for `engine="ray"`.
        crossfit (`int`): when the scanner trains on the catalog it scans (no trusted reference), split the
            catalog into this many folds and score each with a scanner that never saw it as clean, threshold
            calibrated on those scores (`core.pscanner.crossfit`); 0 = one scanner on the whole catalog (before
            issue 17).
        fold_epochs (`int`): at most this many first-round epochs for each fold's scanner; fold_rounds (`int`): at
            most this many adversarial rounds (K scanners instead of one: a lighter recipe keeps a 1,682-title
            scan within minutes; a scanner config asking for less keeps its own).
        warn_factor (`float`): warn when the share of titles flagged exceeds this many times the target FPR.
        rerank (`float`): share of the top-scored titles re-ordered by deletion contrast (how far removing one
            span lowers a title's score: `core.pscanner.rerank`) in a local scan whose frozen-LLM scanner
            trains on the catalog itself; the scores keep their values, so the threshold flags as many titles
            (0 = off; 0.1 until E63, whose tuning seeds kept their quality at 0.05 with half the re-ranking's
            time). rerank_min (`int`): re-rank at least this many (a small catalog entirely).
        rerank_probes (`int`): when > 0, fresh agent triggers placed on this many of the catalog's titles decide
            whether the re-ranking is applied: only where they rank better with it
            (`core.pscanner.rerank.check_rerank`).
            0 (default) = re-rank unchecked: on the evaluation seeds the check kept the re-ranking where it hurt
            (steam) and dropped it where it helped (ml-100k), E41 in docs/SCANNER.md.
        set_aside (`float`): a cross-fitted scan's calibration sets up to this share of its top titles aside before
            fitting the clean tail (`core.pscanner.crossfit.calibrate_catalog`), for a small catalog of which a
            tenth or more may be poisoned. 0 (default) = off: on 50-title evaluation catalogs 0.1 found 57 rather
            than 54 of 90 poisoned titles but flagged 12 rather than 7 of 704 clean ones; 100-title catalogs
            (tuning) 9 rather than 2 of 752; clean 50-title uploads 11 rather than 7 of 600 (E64, docs/SCANNER.md).
    """

    source: Literal["catalog", "dataset", "run"] = "catalog"
    catalog_path: str | None = None
    label_col: str | None = None
    dataset: str | None = None
    run_id: str | None = None
    methods: tuple[str, ...] = ("scanner", "tokenstats")
    scanner: ScannerConfig = field(default_factory=lambda: ScannerConfig(model=ModelConfig(name="auto")))
    threshold: float | None = None
    train_on: Literal["auto", "domain", "catalog"] = "auto"
    chunk_size: int = 16384
    spans: bool = True
    campaigns: Literal["auto", "on", "off"] = "auto"
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    judge_max_items: int = 2000
    use_cache: bool = True
    unicode_check: bool = True
    engine: Literal["local", "ray"] = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    crossfit: int = 5
    fold_epochs: int = 2
    fold_rounds: int = 1
    warn_factor: float = 5.0
    rerank: float = 0.05
    rerank_min: int = 50
    rerank_probes: int = 0
    set_aside: float = 0.0

    def __post_init__(self):
        if self.source not in ("catalog", "dataset", "run"):
            raise InputError("scan source must be catalog, dataset or run")
        if self.source == "catalog" and not self.catalog_path:
            raise InputError("scan source 'catalog' needs a file (--catalog FILE)")
        if self.source == "dataset" and not self.dataset:
            raise InputError("scan source 'dataset' needs a dataset name (--dataset NAME)")
        if self.source == "run" and not self.run_id:
            raise InputError("scan source 'run' needs a run id (--run RUN_ID)")
        bad = [m for m in self.methods if m not in METHODS]
        if bad or "scanner" not in self.methods:
            raise InputError(f"scan methods must include scanner and come from {', '.join(METHODS)}; got {bad}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"threshold {self.threshold} must be between 0 and 1")
        if self.campaigns not in ("auto", "on", "off"):
            raise InputError("campaigns must be auto, on or off")
        if self.train_on not in ("auto", "domain", "catalog"):
            raise InputError("train_on must be auto, domain or catalog")
        if self.train_on == "domain" and not (self.dataset or self.run_id):
            raise InputError("train_on=domain needs --dataset NAME (the domain's reference titles)")
        if not 64 <= self.chunk_size <= 1_000_000:
            raise InputError("chunk_size must be between 64 and 1000000")
        if self.crossfit == 1 or not 0 <= self.crossfit <= 20:
            raise InputError("crossfit must be 0 (off) or between 2 and 20 folds")
        if self.fold_epochs < 1 or self.fold_rounds < 0:
            raise InputError("fold_epochs must be >= 1 and fold_rounds >= 0")
        if not 0.0 <= self.rerank <= 1.0 or self.rerank_min < 0:
            raise InputError("rerank must be a share between 0 and 1 and rerank_min >= 0")
        if not 0 <= self.rerank_probes <= 10_000:
            raise InputError(f"rerank_probes must be between 0 (re-rank without checking) and 10000; got "
                             f"{self.rerank_probes}")
        if not 0.0 <= self.set_aside <= 0.5:
            raise InputError(f"set_aside must be a share between 0 and 0.5; got {self.set_aside}")
        if self.engine not in ("local", "ray"):
            raise InputError("engine must be local or ray")
        if self.engine == "ray" and self.scanner.mode == "frozen":
            raise InputError("the ray engine is for bulk catalogs and ships a fine-tuned scanner; the frozen-LLM "
                             "scanner scores in this process: use --scanner-model mini with --engine ray")
        if self.engine == "ray" and self.scanner.model.quant != "none":
            raise InputError("the ray engine ships the scanner as saved safetensors; a quantized scanner is not "
                             "saved: use --quant none")


def has_reference(cfg: ScanConfig) -> bool:
    """Whether the scanner of `cfg` trains on a trusted clean reference (known before the catalog is read): a
    run's dataset for its poisoned catalog, or the domain dataset named for an upload; a dataset scanned by
    itself is not its own reference."""
    if cfg.source == "dataset" or cfg.train_on == "catalog":
        return False
    return cfg.source == "run" or bool(cfg.dataset)


def frozen_on_itself(cfg: ScanConfig) -> bool:
    """Whether `cfg` is a local scan whose frozen-LLM scanner trains on the catalog itself: where the re-ranking
    and the campaign step's spread check were measured (E36, E58 in docs/SCANNER.md); `cfg.scanner` as the scan
    resolved it (`planned_scanner`)."""
    return not has_reference(cfg) and cfg.engine == "local" and cfg.scanner.mode == "frozen"


def reranked_titles(cfg: ScanConfig, n_titles: int) -> int:
    """How many top titles a scan of `n_titles` re-orders by deletion contrast (`core.pscanner.rerank`): only where
    it was measured (`frozen_on_itself`)."""
    return rerank_size(n_titles, cfg.rerank, cfg.rerank_min) if frozen_on_itself(cfg) else 0


def campaign_rules(cfg: ScanConfig) -> CampaignConfig:
    """The recurring-trigger rule as the scan applies it: the spread check (`CampaignConfig.spread`, its logit
    margin on the frozen LLM's scale) only where it was measured (`frozen_on_itself`)."""
    return cfg.campaign if frozen_on_itself(cfg) else replace(cfg.campaign, spread=None)


def contrasted_titles(cfg: ScanConfig, n_titles: int) -> int:
    """Texts whose span deletions a scan of `n_titles` scores: the re-ranked top and, when the re-ranking is
    checked, its probes (what the time estimate charges for re-ranking)."""
    k = reranked_titles(cfg, n_titles)
    return k + cfg.rerank_probes if k else 0


def planned_scanner(cfg: ScanConfig, n_titles: int) -> ScannerConfig:
    """The scanner a scan of `n_titles` will use: `auto` resolved (`core.pscanner.scanner.resolve_model`; `mini` on Ray,
    the bulk engine, and with a trusted reference). Pure: the time estimate before launch uses it too."""
    if cfg.engine == "ray" and cfg.scanner.model.name == "auto":
        return replace(cfg.scanner, model=replace(cfg.scanner.model, name="mini"))
    return resolve_model(cfg.scanner, n_titles, has_reference(cfg))


@dataclass
class ScanResult:
    """What a scan returns; `to_dict()` is the command line's JSON."""

    scan_id: str
    source: str
    engine: str
    domain: str
    n_items: int
    n_flagged: int
    threshold: float
    seconds: float
    scanner_cached: bool
    scanner: dict
    baselines: dict
    campaign_step: bool
    campaigns: list[dict]
    campaign_seconds: float
    unicode: dict | None
    crossfit_folds: int | None
    calibration: dict
    flagged_share: float
    warnings: list[str]
    metrics: dict = field(default_factory=dict)  # precision/recall/f1/auc/fpr/best_f1 when labels are known
    by_rule: dict = field(default_factory=dict)  # title_only, campaigns_only, unicode_only
    series_passed: list[dict] = field(default_factory=list)  # recurring n-grams passed over as series names
    csv: str | None = None

    def to_dict(self) -> dict:
        """The CLI's `--json` output: the result's fields with the metrics and per-rule metrics at the top level."""
        out = {k: v for k, v in asdict(self).items() if k not in ("metrics", "by_rule", "csv")}
        out.update(self.metrics)
        out.update(self.by_rule)
        if self.csv is not None:
            out["csv"] = self.csv
        return out
