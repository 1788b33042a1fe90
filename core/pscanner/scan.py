"""Scan a catalog with P-Scanner and the baselines (DESIGN.md §4, §7).

`run_scan` goes in four steps: `resolve` the catalog (a file, a dataset, or an attack run's poisoned
catalog) with its Unicode-hygiene findings; `score` it — a scanner for its domain (from the cache or
trained; cross-fitted when the catalog is its own reference), every title's score, the recurring
triggers and the flags; run the `baselines`; `write` the rows into DuckDB inside one transaction (spans
searched chunk by chunk) and the CSV, so a failure leaves nothing behind. It returns a `ScanResult`.
Its config and result are `core.pscanner.scan_config`, the catalog sources `core.pscanner.catalog`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import BadRecError, InputError
from core.lm.gguf_model import ensure_converted
from core.metrics import detection_metrics
from core.progress import Progress
from core.runs.ray_engine import scorer_pool
from core.runs.store import Store
from core.sanitize import csv_safe

from . import campaign, unicode_hygiene
from .agent import offline_triggers
from .catalog import Catalog, resolve_catalog, training_titles
from .crossfit import CrossFitScanner, crossfit_scanner, n_folds
from .rerank import PROBE_SEED, check_rerank, probe_texts, reorder_top, top_titles
from .scan_config import ScanConfig, ScanResult, campaign_rules, has_reference, planned_scanner, reranked_titles
from .scanner import LLM_SCANNER, ScannerConfig, calibrate_threshold
from .scanner_model import load_base
from .scanner_train import get_scanner


# -- scoring ------------------------------------------------------------------------------
def _metrics(scores: np.ndarray, flagged: np.ndarray, labels: np.ndarray | None) -> dict:
    if labels is None:
        return {}
    m = detection_metrics(flagged, labels, scores)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    k = np.arange(1, len(order) + 1)
    f1s = 2 * tp / (k + labels.sum()) if labels.sum() else np.zeros(len(k))
    m["best_f1"] = float(f1s.max()) if len(f1s) else 0.0  # F1 at the best possible threshold (an oracle)
    return m


def _frame(scan_id: str, method: str, ids, titles, scores, flagged, spans, labels, carried=None,
           reasons=None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame({"scan_id": scan_id, "item_id": list(ids), "title": list(titles),
                         "score": np.asarray(scores, dtype=float), "flagged": np.asarray(flagged, dtype=bool),
                         "method": method, "span": spans if spans is not None else [None] * n,
                         "campaign": carried if carried is not None else [None] * n,
                         "reason": [r or None for r in reasons] if reasons is not None else [None] * n,
                         "label": pd.array(labels, dtype="boolean") if labels is not None
                         else pd.array([None] * n, dtype="boolean")})


def score_catalog(scanner, titles: list[str], threshold: float, cfg: ScanConfig, progress: Progress | None = None
                  ) -> tuple[np.ndarray, Callable[[list[int]], list[str | None]]]:
    """Every title's score, chunk by chunk, and a function giving the spans of titles by index.

    Locally the spans are searched when asked for; on Ray each actor already searched those of its chunk's
    titles at or above the threshold. Same chunks, so the same scores either way.
    """
    if cfg.engine == "ray":
        from core.runs.ray_engine import score_titles

        # a cross-fitted scanner ships one model per fold, each with the titles of its fold (every scanned title
        # is in a fold: uploads and datasets have no blank titles, the only ones folds leave out)
        groups = scanner.groups(titles).items() if isinstance(scanner, CrossFitScanner) else \
            [(None, range(len(titles)))]
        scores, spans = np.empty(len(titles)), [None] * len(titles)
        for k, idx in groups:
            one = scanner if k is None else scanner.scanners[max(k, 0)]
            s, sp = score_titles(one, [titles[i] for i in idx], threshold, cfg.spans, cfg.ray, cfg.chunk_size,
                                 progress)
            scores[list(idx)] = s
            for i, x in zip(idx, sp):
                spans[i] = x
        return scores, lambda idx: [spans[i] for i in idx]
    n = len(titles)
    scores = np.empty(n)
    for start in range(0, n, cfg.chunk_size):
        scores[start:start + cfg.chunk_size] = scanner.score(titles[start:start + cfg.chunk_size])
        if progress:
            progress.update(min(n, start + cfg.chunk_size), n, "scoring titles")
    return scores, lambda idx: scanner.spans([titles[i] for i in idx])


def series_passed(campaigns) -> list[dict]:
    """The recurring n-grams passed over because their titles read as one series, for the analyst to review."""
    return [{"text": c.text, "n_titles": c.n_titles, "median_score": c.median_score,
             "median_without": c.median_without} for c in campaigns if c.series]


def calibration_info(scanner, cfg: ScanConfig) -> dict:
    """How the scan's threshold was set, for the JSON, the store and the Scanner page."""
    if cfg.threshold is not None:
        return {"method": "set by hand", "threshold": float(cfg.threshold), "target_fpr": None}
    cal = getattr(scanner, "calibration", None)
    if cal is not None:
        return asdict(cal)
    return {"method": "quantile of the scanner's held-out training titles", "threshold": scanner.threshold,
            "target_fpr": cfg.scanner.target_fpr}


def calibration_caption(cal: dict) -> str:
    """One line saying how the threshold was set and what FPR it implies."""
    text = f"Threshold {cal['threshold']:.4f}: {cal['method']}"
    if cal.get("target_fpr") is not None:
        text += f", for a target FPR of {cal['target_fpr']:.1%}"
    if cal.get("expected_fpr") is not None:
        text += (f"; expected FPR on clean titles {cal['expected_fpr']:.2%} (never below P(Yes) = "
                 f"{cal['floor']:.2f}; {cal['share_above']:.2%} of this catalog's cross-fitted scores lie above it)")
    rr = cal.get("rerank")
    if rr:
        chk = rr.get("check")
        found = (f"fresh triggers on {chk['n_probes']} of its titles ranked in the top {chk['cut']:,}: "
                 f"{chk['recall_without']:.0%} without, {chk['recall_with']:.0%} with it") if chk else ""
        if rr.get("applied", True):
            text += (f"; the top {rr['n_titles']:,} titles re-ordered by how much removing one span lowers their "
                     "score (the same scores, so as many flags)" + (f", as this catalog's check said ({found})"
                                                                   if chk else ""))
        else:
            text += f"; re-ranking by deletion contrast checked and not applied ({found})"
    return text + "."


def flagged_warning(share: float, target_fpr: float | None, factor: float = 5.0) -> str | None:
    """A warning when far more titles are flagged than the target FPR lets clean titles be."""
    if target_fpr is None or share <= factor * target_fpr:
        return None
    return (f"{share:.1%} of titles flagged, far above the target FPR of {target_fpr:.1%}: either the catalog holds "
            "many poisoned titles or its clean titles score unlike the scanner's training titles; review the "
            "flagged titles and their reasons")


def _squash(method: str, raw: np.ndarray) -> np.ndarray:
    """Baseline scores mapped monotonically into [0, 1] (ranks, AUC unchanged) for one threshold scale."""
    if method == "onion":
        return 1.0 / (1.0 + np.exp(-np.clip(raw, -50, 50)))
    if method == "tokenstats":
        return raw / (raw + 4.0)
    return np.clip(raw, 0.0, 1.0)


# -- the four steps ------------------------------------------------------------------------
@dataclass
class Resolved:
    """Step 1: the catalog, its Unicode-hygiene findings, the endpoint and the judge's scores (fetched first, so
    a broken endpoint fails before any training)."""

    catalog: Catalog
    ids: list[str]
    titles: list[str]
    found: list | None
    unicode_scores: np.ndarray
    reasons: list[str]
    unicode_seconds: float
    client: object
    judge_raw: np.ndarray | None
    warnings: list[str]


@dataclass
class Scored:
    """Step 2: the scanner, its threshold and how it was set, every title's score and flag, the campaigns."""

    scanner: object
    cached: bool
    domain: str
    train_titles: list[str]
    threshold: float
    calibration: dict
    use_campaigns: bool
    scores: np.ndarray  # the scanner's own score of each title
    final: np.ndarray  # the scanner's score, raised into [threshold, 1] by a hygiene finding or campaign
    by_score: np.ndarray  # at or above the threshold
    flagged: np.ndarray  # by score, campaign or hygiene finding
    shared: list[str | None]  # the recurring trigger a title carries
    campaigns: list
    campaign_seconds: float
    spans_of: Callable[[list[int]], list[str | None]]


@dataclass
class Baseline:
    """Step 3: one baseline's scores in [0, 1], threshold and flags (spans where it gives them)."""

    scores: np.ndarray
    threshold: float
    flagged: np.ndarray
    spans: list[str | None] | None = None


def resolve(store: Store, cfg: ScanConfig, progress: Progress | None = None, client=None) -> Resolved:
    """The catalog and everything known about it before a model is involved."""
    from . import detect_baselines as bl
    from .llm_client import client_from_env

    catalog = resolve_catalog(store, cfg)
    warnings = list(catalog.warnings)
    if client is None and ("judge" in cfg.methods or cfg.scanner.use_llm_agent):
        client = client_from_env()
    if "judge" in cfg.methods and client is None:
        raise InputError("the LLM judge needs an endpoint: set BADREC_LLM_BASE_URL and BADREC_LLM_MODEL")
    ids = catalog.items["item_id"].astype(str).tolist()
    titles = catalog.items["title"].astype(str).tolist()
    n = len(titles)
    if cfg.crossfit and not has_reference(cfg):  # too few titles to cross-fit: say so before a model is fetched
        n_folds(len(set(titles)), cfg.crossfit, cfg.scanner.max_titles)
    t_unicode = time.monotonic()
    # Unicode hygiene needs no model: findings are fixed before the scanner is trained or scores anything.
    found = unicode_hygiene.suspicious_findings(titles) if cfg.unicode_check else None
    unicode_scores, reasons = unicode_hygiene.summarize(found) if found is not None else (np.zeros(n), [""] * n)
    unicode_seconds = round(time.monotonic() - t_unicode, 2)
    judge_raw = None
    if "judge" in cfg.methods:  # before any training: a broken endpoint fails fast, nothing written
        if n > cfg.judge_max_items:
            warnings.append(f"LLM judge skipped: {n} titles exceed judge_max_items={cfg.judge_max_items}")
        else:
            judge_raw = bl.judge_scores(client, titles, progress=progress)
    return Resolved(catalog, ids, titles, found, unicode_scores, reasons, unicode_seconds, client, judge_raw, warnings)


def concrete_scanner(cfg: ScanConfig, n_titles: int, warnings: list[str], progress: Progress | None = None
                     ) -> ScanConfig:
    """The scan with its `planned_scanner`; an `auto` that chose the LLM fetches it now, and when it cannot be
    had (no network on a first run) the scan goes on with `mini` and says so."""
    if cfg.scanner.model.name != "auto":
        return cfg
    scanner = planned_scanner(cfg, n_titles)
    if scanner.model.name == LLM_SCANNER:
        try:
            ensure_converted(LLM_SCANNER, progress)
        except BadRecError as exc:
            warnings.append(f"the {LLM_SCANNER} scanner is not available here ({exc}); scanned with mini")
            scanner = replace(scanner, model=replace(scanner.model, name="mini"))
    return replace(cfg, scanner=scanner)


def fold_recipe(cfg: ScanConfig, scanner_cfg: ScannerConfig) -> ScannerConfig:
    """Each cross-fitting fold's scanner: the scan's, capped at `fold_epochs` and `fold_rounds` (K scanners)."""
    train = replace(scanner_cfg.train, epochs=min(scanner_cfg.train.epochs, cfg.fold_epochs))
    return replace(scanner_cfg, train=train,
                   rounds=min(scanner_cfg.rounds, cfg.fold_rounds))


def score(store: Store, cfg: ScanConfig, res: Resolved, progress: Progress | None = None) -> Scored:
    """A scanner for the catalog's domain, every title's score, the recurring triggers and the flags."""
    train_titles, domain, trusted = training_titles(store, cfg, res.catalog)
    if progress:
        progress.phase(f"getting a scanner for {domain}")
    scanner_cfg = replace(cfg.scanner, self_clean=cfg.scanner.self_clean and not trusted)
    crossfitted = not trusted and bool(cfg.crossfit)
    if crossfitted:  # no trusted reference: no title is scored by a scanner that saw it as clean
        scanner, cached = crossfit_scanner(train_titles, fold_recipe(cfg, scanner_cfg), cfg.crossfit, progress,
                                           res.client, domain, cfg.use_cache, cfg.set_aside)
    else:
        scanner, cached = get_scanner(train_titles, scanner_cfg, progress, res.client, domain, cfg.use_cache)
    if not cached:
        res.warnings += scanner.info.get("warnings", [])
    threshold = scanner.threshold if cfg.threshold is None else float(cfg.threshold)
    # A scanner that never saw a title as clean (a trusted reference, or cross-fitting) backs the step (E44)
    use_campaigns = cfg.campaigns == "on" or (cfg.campaigns == "auto" and (trusted or crossfitted))
    if progress:
        progress.phase("scoring titles")
    s_all, spans_of = score_catalog(scanner, res.titles, threshold, cfg, progress)
    calibration = calibration_info(scanner, cfg)
    k = reranked_titles(cfg, len(s_all))
    if k:
        s_all, calibration["rerank"] = rerank(scanner, res.titles, s_all, k, cfg, progress)
    if progress and use_campaigns:
        progress.phase("looking for recurring triggers")
    t_campaigns = time.monotonic()
    # Campaigns are looked for on the scanner's own scores: a Unicode finding must not seed one.
    flagged, shared, campaigns = campaign.flag(res.titles, s_all, threshold, scanner.score,
                                               campaign_rules(cfg) if use_campaigns else None, hosted(scanner))
    campaign_seconds = round(time.monotonic() - t_campaigns, 2)
    flagged = flagged | (res.unicode_scores > 0)  # a hygiene finding is flagged whatever the threshold
    return Scored(scanner, cached, domain, train_titles, threshold, calibration, use_campaigns,
                  s_all, final_scores(s_all, threshold, res.unicode_scores, campaign.carried(shared)),
                  s_all >= threshold, flagged, shared, campaigns,
                  campaign_seconds, spans_of)


def final_scores(scores: np.ndarray, threshold: float, hygiene: np.ndarray, carries: np.ndarray) -> np.ndarray:
    """The scanner's scores, those of titles flagged by a hygiene finding or a recurring trigger raised into
    [threshold, 1] (`unicode_hygiene.in_flagged_range`): every flagged title ranks above every unflagged one.

    A carrier keeps its order among carriers (its own score mapped), as a hygiene finding keeps its strength.
    """
    by_rule = np.maximum(hygiene, np.where(carries, scores, 0.0))  # the mapping is monotone: max before or after
    return np.maximum(scores, unicode_hygiene.in_flagged_range(by_rule, threshold))


def hosted(scanner) -> Callable[[list[str], list[str]], np.ndarray]:
    """Scores of texts made from catalog titles (`hosts`), each by the scanner that scored its host: a
    cross-fitted scan's fold scanner never saw the host as clean; one scanner scores every text alike."""
    if isinstance(scanner, CrossFitScanner):
        return scanner.score
    return lambda texts, hosts: scanner.score(texts)


def rerank(scanner, titles: list[str], scores: np.ndarray, k: int, cfg: ScanConfig,
           progress: Progress | None = None) -> tuple[np.ndarray, dict]:
    """The scores with the top `k` titles re-ordered by deletion contrast (`core.pscanner.rerank`), where fresh
    agent triggers on `cfg.rerank_probes` of the catalog's own titles rank better with it (`check_rerank`);
    the scores unchanged where they do not. Also returns what was done, for the calibration record."""
    t0 = time.monotonic()
    if progress:
        progress.phase(f"re-ranking the top {k:,} titles by how much removing one span lowers their score")
    top = top_titles(scores, k)
    top_contrast = scanner.contrast([titles[i] for i in top])
    info: dict = {"n_titles": k, "share": cfg.rerank, "applied": True}
    if cfg.rerank_probes:
        if progress:
            progress.phase(f"checking the re-ranking on {cfg.rerank_probes} fresh triggers in this catalog's titles")
        own = scanner.cfg
        pool = {t.text for t in offline_triggers(own.agent(own.n_triggers, own.seed))}
        texts, hosts = probe_texts(titles, own.agent(cfg.rerank_probes, PROBE_SEED + own.seed), pool)
        crossfit = isinstance(scanner, CrossFitScanner)  # each probe scored by its host's fold scanner

        def probe_contrast(idx: np.ndarray) -> np.ndarray:
            sub = [texts[i] for i in idx]
            return scanner.contrast(sub, [hosts[i] for i in idx]) if crossfit else scanner.contrast(sub)

        check = check_rerank(scores, top, top_contrast, hosted(scanner)(texts, hosts), probe_contrast,
                             cfg.scanner.target_fpr)
        info |= {"applied": check.keep, "check": asdict(check)}
    info["seconds"] = round(time.monotonic() - t0, 2)
    return (reorder_top(scores, top, top_contrast) if info["applied"] else scores), info


def baselines(cfg: ScanConfig, res: Resolved, sc: Scored, progress: Progress | None = None) -> dict[str, Baseline]:
    """The chosen baselines on the same titles; none has a held-out clean set, so each flags its top
    target-FPR share (the judge: P >= 0.5). The ensemble ranks the scanner's and the baselines' scores."""
    from . import detect_baselines as bl

    out: dict[str, Baseline] = {}
    for method in cfg.methods:
        if method in ("scanner", "ensemble"):
            continue
        if progress:
            progress.phase(f"baseline: {method}")
        spans = None
        if method == "onion":
            base, tok = load_base(cfg.scanner, sc.train_titles)
            raw, spans = bl.onion_scores(base, tok, res.titles, progress)
        elif method == "tokenstats":
            raw, spans = bl.token_stats_scores(res.titles)
        elif res.judge_raw is not None:
            raw = res.judge_raw
        else:
            continue
        s = _squash(method, raw)
        t = calibrate_threshold(s, cfg.scanner.target_fpr) if method != "judge" else 0.5
        out[method] = Baseline(s, t, s >= t, spans)
    if "ensemble" in cfg.methods and out:
        s = bl.ensemble_scores({"scanner": sc.final, **{k: b.scores for k, b in out.items()}})
        t = calibrate_threshold(s, cfg.scanner.target_fpr)
        out["ensemble"] = Baseline(s, t, s >= t)
    return out


def write(store: Store, cfg: ScanConfig, res: Resolved, sc: Scored, base: dict[str, Baseline],
          out_csv: Path | str | None = None, progress: Progress | None = None, scan_id: str | None = None
          ) -> tuple[str, dict]:
    """Rows into `scan_results` and `scans` in one transaction (the flagged titles' spans searched chunk by
    chunk on the way), then the CSV; returns the scan id (`scan_id`, else a new one) and each method's summary."""
    scan_id = scan_id or f"scan-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    ids, titles, labels, n = res.ids, res.titles, res.catalog.labels, len(res.titles)
    span_of: dict[int, str | None] = {}
    tmp_csv = None if out_csv is None else Path(out_csv).with_name(Path(out_csv).name + f".{os.getpid()}.part")
    methods = {"scanner": (sc.final, sc.flagged, sc.threshold), **{k: (b.scores, b.flagged, b.threshold)
                                                                     for k, b in base.items()}}

    def chunks() -> Iterator[pd.DataFrame]:
        for start in range(0, n, cfg.chunk_size):
            stop = min(n, start + cfg.chunk_size)
            spans = sc.shared[start:stop]  # a campaign's trigger is the span of the titles carrying it
            idx = [i for i in range(start, stop) if sc.by_score[i] and sc.shared[i] is None] if cfg.spans else []
            for i, sp in zip(idx, sc.spans_of(idx)):
                spans[i - start] = sp
            if cfg.spans and res.found is not None:  # flagged by hygiene alone: its first finding is the span
                spans = [sp or (res.found[start + j][0].text if res.found[start + j] else None)
                         for j, sp in enumerate(spans)]
            span_of.update((start + i, sp) for i, sp in enumerate(spans) if sp)
            yield _frame(scan_id, "scanner", ids[start:stop], titles[start:stop], sc.final[start:stop],
                         sc.flagged[start:stop], spans, None if labels is None else labels[start:stop],
                         sc.shared[start:stop], res.reasons[start:stop])
            if progress and idx:
                progress.update(stop, n, "suspicious spans of flagged titles")
        for method, b in base.items():
            yield _frame(f"{scan_id}.{method}", method, ids, titles, b.scores, b.flagged, b.spans, labels)

    summary: dict = {}

    def finish() -> list[dict]:
        rows = []
        for method, (s, f, t) in methods.items():
            m = _metrics(s, f, labels)
            summary[method] = {"n_flagged": int(f.sum()), "threshold": t, **m}
            rows.append({"scan_id": scan_id if method == "scanner" else f"{scan_id}.{method}",
                         "run_id": res.catalog.run_id, "source": res.catalog.source, "method": method,
                         "threshold": t, "n_items": n, "n_flagged": int(f.sum()),
                         "metrics": {**m, "calibration": sc.calibration, "series_passed": series_passed(sc.campaigns)}
                         if method == "scanner" else m or None})
        if tmp_csv is not None:
            table = pd.DataFrame({"item_id": ids, "title": titles, "score": sc.final, "flagged": sc.flagged,
                                  "span": [span_of.get(i) for i in range(n)],
                                  "reason": [r or None for r in res.reasons]})
            if labels is not None:
                table["is_poisoned"] = labels
            for method, b in base.items():
                table[f"{method}_score"] = b.scores
            csv_safe(table).to_csv(tmp_csv, index=False)
        return rows

    try:
        store.write_scan(chunks(), finish)
        if tmp_csv is not None:
            tmp_csv.replace(out_csv)
    finally:
        if tmp_csv is not None and tmp_csv.exists():
            tmp_csv.unlink()
    return scan_id, summary


def run_scan(store: Store, cfg: ScanConfig, progress: Progress | None = None, client=None,
             out_csv: Path | str | None = None, scan_id: str | None = None) -> ScanResult:
    """Scan a catalog with P-Scanner (and the chosen baselines); write `scans`/`scan_results`.

    Args:
        store (`Store`): where results go (one transaction).
        cfg (`ScanConfig`): source, methods, scanner config, threshold.
        progress (`Progress`, optional): progress and cancellation.
        client (`LLMClient`, optional): endpoint for the judge / LLM agent; from the environment if omitted.
        out_csv (`Path`, optional): also write item_id,title,score,flagged,span,reason(,label, baseline scores)
            here, formula-safe; written only when the scan succeeds.
        scan_id (`str`, optional): the id to store the scan under (a dashboard job's own id); new by default.

    Returns:
        `ScanResult`: ids, counts, threshold and its calibration, seconds, the scanner's metrics when labels are
        known (and the same for each rule alone: `title_only`, `campaigns_only`, `unicode_only`), the recurring
        triggers found, the Unicode-hygiene counts (None when off), the baselines and warnings.
    """
    if cfg.engine == "ray":  # one connection for the whole scan: the catalog is read and scored there
        from core.runs.ray_engine import cluster

        with cluster(cfg.ray):
            return _scan(store, cfg, progress, client, out_csv, scan_id)
    return _scan(store, cfg, progress, client, out_csv, scan_id)


def _scan(store: Store, cfg: ScanConfig, progress: Progress | None, client, out_csv: Path | str | None,
          scan_id: str | None) -> ScanResult:
    """`run_scan` on the engine `cfg.engine` names (connected to Ray when it is Ray)."""
    t0 = time.monotonic()
    res = resolve(store, cfg, progress, client)
    # on Ray the scoring actors start now, once Ray Data (a folder of shards) has read the catalog, and import
    # torch while this process gets its scanner; they stop when the scores are in
    with scorer_pool(cfg.ray) if cfg.engine == "ray" else nullcontext():
        cfg = concrete_scanner(cfg, len(set(res.titles)), res.warnings, progress)
        sc = score(store, cfg, res, progress)
    base = baselines(cfg, res, sc, progress)
    scan_id, summary = write(store, cfg, res, sc, base, out_csv, progress, scan_id)
    labels, n = res.catalog.labels, len(res.titles)
    by_rule: dict[str, dict] = {}
    if labels is not None:
        by_rule["title_only"] = _metrics(sc.scores, sc.by_score, labels)
        by_rule["campaigns_only"] = _metrics(sc.scores, campaign.carried(sc.shared), labels)
        if res.found is not None:
            by_rule["unicode_only"] = _metrics(res.unicode_scores, res.unicode_scores > 0, labels)
    main = summary["scanner"]
    share = main["n_flagged"] / max(n, 1)
    too_many = flagged_warning(share, sc.calibration.get("target_fpr"), cfg.warn_factor)
    if too_many:
        res.warnings.append(too_many)
    unicode = None if res.found is None else {"n_flagged": int((res.unicode_scores > 0).sum()),
                                              "findings": unicode_hygiene.kind_counts(res.found),
                                              "seconds": res.unicode_seconds}
    return ScanResult(
        scan_id=scan_id, source=res.catalog.source, engine=cfg.engine, domain=sc.domain, n_items=n,
        n_flagged=main["n_flagged"], threshold=sc.threshold, seconds=round(time.monotonic() - t0, 2),
        scanner_cached=sc.cached, scanner={"model": cfg.scanner.model.name, "rounds": sc.scanner.history,
                                           "info": sc.scanner.info},
        baselines={k: v for k, v in summary.items() if k != "scanner"}, campaign_step=sc.use_campaigns,
        campaigns=[asdict(c) for c in sc.campaigns if not c.series], campaign_seconds=sc.campaign_seconds,
        unicode=unicode, series_passed=series_passed(sc.campaigns),
        crossfit_folds=sc.scanner.info.get("folds") if isinstance(sc.scanner, CrossFitScanner) else None,
        calibration=sc.calibration, flagged_share=share, warnings=res.warnings,
        metrics={k: main[k] for k in ("precision", "recall", "f1", "auc", "fpr", "best_f1") if k in main},
        by_rule=by_rule, csv=None if out_csv is None else str(out_csv))
