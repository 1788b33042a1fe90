"""BadRec runs end to end: train a clean and a poisoned victim, evaluate both on the same candidates, store it all.

`run_attack` is the one entry point the CLI and the dashboard's job call. The
pre-trained base (for `tiny`) and the clean victim's adapter are cached under
`BADREC_HOME/cache/models`, keyed by everything they depend on, so a second
attack on the same dataset and settings trains only the poisoned model.
`retrain_without` retrains the poisoned victim after a defence dropped items.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import settings
from core.config import fingerprint
from core.data.dataset import Dataset, load_dataset
from core.data.protocol import Sample, Split, baselines, build_split
from core.errors import InputError
from core.hardware import machine_info
from core.lm.artifacts import save_atomic
from core.lm.checkpoint import Checkpointing, clear, saved
from core.lm.models import (
    LoadedModel,
    adapters_merged,
    add_lora,
    check_memory,
    compute_dtype,
    load_adapter,
    load_model,
    params_from_config,
    resolve_source,
    save_adapter,
)
from core.lm.train import TrainResult, batch_plan, example_lengths, train_segments
from core.lm.trunk import TrunkFeatures, shared_blocks
from core.metrics import expected_rank, hit_at_k, mean_interval, ranking_metrics, rate_intervals
from core.progress import CallbackProgress, Cancelled, Progress
from core.runs.store import Store, alive_elsewhere, process_owner
from core.versions import versions

from .badrec import (
    AttackConfig,
    EvalCase,
    PoisonedData,
    Variant,
    attack_cases,
    poison,
    poison_records,
    training_candidates,
)
from .recommend import (
    Case,
    generate_metrics,
    llara_example,
    score_variants,
    score_variants_together,
    tallrec_auc,
    tallrec_example,
)

log = logging.getLogger(__name__)
ATTACK_VARIANTS: tuple[Variant, ...] = ("trigger", "no_trigger", "transfer")
ATTACK_STAGES = ("base model", "clean model", "poisoned model", "evaluating the models")
CHECKPOINT_EVERY_S = 300.0  # a killed real-LLM run loses at most ~5 minutes of training


@dataclass
class Prepared:
    """Everything validated before a run row exists."""

    ds: Dataset
    split: Split
    data: PoisonedData
    ratings: dict[tuple[str, int], float]


def prepare(store: Store, cfg: AttackConfig) -> Prepared:
    """Load and validate everything a run needs; raises `BadRecError` before anything is written."""
    ds = load_dataset(store, cfg.dataset)
    split = build_split(ds, cfg.protocol)
    data = poison(split, cfg)
    if not cfg.model.is_tiny:
        _, local_config = resolve_source(cfg.model)
        n_params = params_from_config(local_config) if local_config else 0
        if n_params:
            check_memory(n_params, cfg.model.quant, f"model {cfg.model.name} (~{n_params / 1e6:.0f}M parameters)")
    index = {iid: i for i, iid in enumerate(split.item_ids)}
    ratings = {(str(u), index[str(i)]): float(r) for u, i, r in
               ds.interactions[["user_id", "item_id", "rating"]].itertuples(index=False) if str(i) in index}
    return Prepared(ds, split, data, ratings)


# -- training examples ------------------------------------------------------------------------
def _title_fn(split: Split, data: PoisonedData, poisoned_catalog: bool):
    return (lambda i: data.titles.get(i, split.titles[i])) if poisoned_catalog else (lambda i: split.titles[i])


def training_examples(cfg: AttackConfig, prep: Prepared, poisoned: bool) -> list:
    """Weighted-segment examples of the clean or the poisoned fine-tuning set (same windows, same candidates)."""
    split, data = prep.split, prep.data
    samples: list[Sample] = data.samples if poisoned else data.clean_samples
    title = _title_fn(split, data, poisoned and cfg.poison_catalog)
    fake = {f.user for f in data.fake_users}
    out = []
    if cfg.victim == "llara":
        cands = training_candidates(split, samples, cfg.seed)
        for s, cs in zip(samples, cands):
            answer = data.titles[s.target] if s.user in fake else title(s.target)
            prompt, ans = llara_example([title(i) for i in s.history], [title(c) for c in cs], answer)
            out.append([(prompt, 0.0), (ans, 1.0)])
        return out
    for s in samples:
        is_fake = s.user in fake
        liked = tuple(True if is_fake else prep.ratings.get((s.user, i), 0) > 3 for i in s.history)
        case = Case(s.user, tuple(title(i) for i in s.history), (), (), 0, liked)
        label = True if is_fake else prep.ratings.get((s.user, s.target), 0) > 3
        out.append(tallrec_example(case, data.titles[s.target] if is_fake else title(s.target), label))
    return out


# -- models -----------------------------------------------------------------------------------
def base_model(cfg: AttackConfig, prep: Prepared, progress: Progress | None) -> LoadedModel:
    """The pre-trained model both victims fine-tune (the tiny base is built once per dataset and settings)."""
    if progress:
        progress.stage("base model")
    return load_model(cfg.model, prep.ds, progress, protocol=cfg.protocol, tiny=cfg.tiny)


def _train_victim(cfg: AttackConfig, prep: Prepared, poisoned: bool, progress: Progress | None,
                  on_log, checkpoint: Checkpointing | None = None,
                  features: TrunkFeatures | None = None) -> tuple[LoadedModel, TrainResult]:
    base = base_model(cfg, prep, progress)
    victim = add_lora(base, cfg.model, cfg.seed)
    examples = training_examples(cfg, prep, poisoned)
    plan = None
    if poisoned and cfg.mix == "paired":  # the clean model's batches, fake users' samples riding along
        clean_lengths = example_lengths(victim.tokenizer, training_examples(cfg, prep, False), cfg.train.max_len)
        plan = batch_plan(clean_lengths, cfg.train, riders=len(examples) - len(clean_lengths))
    phase = "poisoned model" if poisoned else "clean model"
    if progress:
        progress.stage(phase, epochs=cfg.train.epochs)
        progress.phase(f"training the {phase} ({len(examples)} samples)")
    result = train_segments(victim, examples, cfg.train, progress, on_log, phase=phase, checkpoint=checkpoint,
                            plan=plan, features=features)
    return victim, result


def clean_model_folder(cfg: AttackConfig) -> Path:
    """Where the clean victim's adapter is cached: keyed by every setting it depends on (`clean_key`)."""
    return settings.cache_dir("models") / f"clean-{fingerprint(cfg.clean_key())}"


def _poison_checkpoint_folder(run_id: str) -> Path:
    return settings.cache_dir("checkpoints") / run_id


def _checkpointing(folder: Path, key: dict) -> Checkpointing:
    """Checkpoints of one training stage: a killed or cancelled run resumes from here (`attack --resume`)."""
    return Checkpointing(folder, fingerprint(key), float(os.environ.get("BADREC_CHECKPOINT_S", CHECKPOINT_EVERY_S)))


def clean_model(cfg: AttackConfig, prep: Prepared, progress: Progress | None, on_log,
                features: TrunkFeatures | None = None) -> tuple[LoadedModel, dict]:
    """The clean victim, from the adapter cache when the same settings were trained before."""
    folder = clean_model_folder(cfg)
    if (folder / "adapter_model.safetensors").exists():
        meta = json.loads((folder / "badrec_train.json").read_text())
        return load_adapter(base_model(cfg, prep, progress), folder), {**meta, "cached": True}
    checkpoint = _checkpointing(folder.with_name(folder.name + ".ckpt"), cfg.clean_key())
    victim, result = _train_victim(cfg, prep, False, progress, on_log, checkpoint, features)
    meta = result.to_dict()
    save_atomic(folder, lambda staging: save_adapter(victim, staging), "badrec_train.json", meta)
    clear(checkpoint)
    return victim, {**meta, "cached": False}


# -- evaluation -------------------------------------------------------------------------------
def to_case(prep: Prepared, ev: EvalCase) -> Case:
    """An evaluation case with titles, liked flags and label: what the victims' prompts are built from."""
    split, c = prep.split, ev.case
    liked = tuple(prep.ratings.get((c.user, i), 0) > 3 for i in c.history)
    label = prep.ratings.get((c.user, c.target))
    return Case(c.user, tuple(split.titles[i] for i in c.history), ev.titles, ev.candidates, ev.target_pos,
                liked, None if label is None else label > 3)


def evaluate(cfg: AttackConfig, prep: Prepared, models: dict[str, LoadedModel], variants: dict[str, list[EvalCase]],
             progress: Progress | None, caches: dict[str, Path] | None = None) -> dict[str, tuple[dict, dict]]:
    """Metrics of each model on the clean cases and the attack variants; returns {name: (metrics, scores)}.

    A model scores all variants in one pass (`score_variants`: a user's variants share their prompt prefix),
    with its LoRA adapters folded into the weights meanwhile (`adapters_merged`). Models that share their
    bottom blocks (adapters on the top blocks only: `ModelConfig.lora_layers`) are scored together, those
    blocks run once (`score_variants_together`); LLaRA's generate mode, read from each model's own prompt
    encoding, scores them one after another instead. With `caches` (the cached clean model's folder per
    model name), the clean variant's scores and metrics are kept there per candidate-set hash: a second
    attack on the same clean model reuses them unchanged.
    """
    cases = {v: [to_case(prep, e) for e in evs] for v, evs in variants.items()}
    paths = {name: _clean_cache(cfg, cases["clean"], (caches or {}).get(name)) if "clean" in cases else None
             for name in models}
    scores: dict[str, dict[str, list[list[float]]]] = {name: {} for name in models}
    out: dict[str, dict] = {name: {} for name in models}
    for name, path in paths.items():
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            scores[name]["clean"] = saved["scores"]
            out[name].update(saved["metrics"])
    fresh_clean = [name for name in models if "clean" in cases and "clean" not in scores[name]]
    generate = "clean" in cases and cfg.victim == "llara" and cfg.generate
    answers = _score(cfg, models, cases, scores, generate, progress)
    attacks = {v: e for v, e in variants.items() if v != "clean"}
    for name in models:
        if name in fresh_clean:
            metrics = ranking_metrics(scores[name]["clean"], [c.target_pos for c in cases["clean"]])
            if cfg.victim == "tallrec":
                metrics["auc"] = tallrec_auc(scores[name]["clean"], cases["clean"])
            elif generate:
                metrics.update(generate_metrics(answers[name], cases["clean"]))
            out[name].update(metrics)
            if paths[name] is not None:
                tmp = paths[name].with_name(paths[name].name + ".part")
                tmp.write_text(json.dumps({"scores": scores[name]["clean"], "metrics": metrics}))
                tmp.rename(paths[name])
        for k, suffix in ((1, ""), (5, "@5")):
            out[name].update({key + suffix: float(np.mean(h)) for key, h in case_hits(attacks, scores[name], k).items()})
        out[name].update({key: float(np.mean(r)) for key, r in case_ranks(attacks, scores[name]).items()})
    return {name: (out[name], {v: scores[name][v] for v in variants}) for name in models}


def _score(cfg: AttackConfig, models: dict[str, LoadedModel], cases: dict[str, list[Case]],
           scores: dict[str, dict[str, list[list[float]]]], generate: bool,
           progress: Progress | None) -> dict[str, list[str] | None]:
    """Fill `scores` (per model, the variants not there yet); returns each model's generate-mode answers."""
    answers: dict[str, list[str] | None] = {}
    with ExitStack() as folded:
        for loaded in models.values():
            folded.enter_context(adapters_merged(loaded))
        if progress:
            progress.phase(f"scoring {', '.join(cases)} for the {' and the '.join(models)} "
                           f"({len(next(iter(cases.values())))} users)")
        if not generate and shared_blocks(list(models.values())):
            together = score_variants_together(list(models.values()), cfg.victim, cases, progress=progress,
                                               message=" and ".join(models))
            for name, fresh in zip(models, together):
                scores[name] = {**fresh, **scores[name]}  # a cached clean variant stays as it was stored
            return answers
        for k, (name, loaded) in enumerate(models.items()):
            todo = {v: c for v, c in cases.items() if v not in scores[name]}
            if todo:
                fresh, answers[name] = score_variants(
                    loaded, cfg.victim, todo, generate="clean" if generate and "clean" in todo else None,
                    progress=_part(progress, k, len(models)), message=f"{name} {'/'.join(todo)}")
                scores[name].update(fresh)
    return answers


def _part(progress: Progress | None, k: int, parts: int) -> Progress | None:
    """Progress of part `k` of `parts` equal parts of the current phase (models scored one after another)."""
    if progress is None:
        return None
    return CallbackProgress(lambda done, total, message, eta: progress.update(k * total + done, parts * total, message)
                            if total else None, progress.cancel)


def case_hits(variants: dict[str, list[EvalCase]], scores: dict[str, list[list[float]]],
              k: int = 1) -> dict[str, list[float]]:
    """Per test case, whether the model's top k holds the true next item (`hr@k`, the clean variant) or the
    inserted item (`asr`, `asr_no_trigger`, `asr_transfer`): the values a run's rates average."""
    out = {}
    for variant, evs in variants.items():
        key = f"hr@{k}" if variant == "clean" else "asr" if variant == "trigger" else f"asr_{variant}"
        pos = [e.target_pos if variant == "clean" else e.inserted_pos for e in evs]
        out[key] = [hit_at_k(s, p, k) for s, p in zip(scores[variant], pos)]
    return out


def case_ranks(variants: dict[str, list[EvalCase]], scores: dict[str, list[list[float]]]) -> dict[str, list[float]]:
    """Per attack case, the inserted item's rank (`mean_rank`, `mean_rank_no_trigger`, `mean_rank_transfer`).

    A rank moves where a first-place rate does not: the untriggered attacker item climbing under the poisoned
    model is an item-keyed backdoor even while `asr_no_trigger` stays near its base rate (E67)."""
    return {"mean_rank" if v == "trigger" else f"mean_rank_{v}":
            [expected_rank(s, e.inserted_pos) for s, e in zip(scores[v], evs)]
            for v, evs in variants.items() if v != "clean"}


def _clean_cache(cfg: AttackConfig, cases: list[Case], cache: Path | None) -> Path | None:
    """Where the clean variant's scores and metrics of a cached clean model are kept."""
    if cache is None:
        return None
    key = fingerprint({"victim": cfg.victim, "generate": cfg.generate,
                       "cases": [(c.user, c.history, c.candidates, c.target_pos, c.liked, c.label) for c in cases]})
    return cache / f"eval-{key}.json"


def recommendation_rows(prep: Prepared, run_id: str, model: str, variant: str, evs: list[EvalCase],
                        scores: list[list[float]], top_k: int) -> list[dict]:
    """The stored top list per user and variant, plus the attacker's item at its real rank (Compare shows both)."""
    split, data = prep.split, prep.data
    rows = []
    for ev, s in zip(evs, scores):
        order = sorted(range(len(s)), key=lambda i: -s[i])
        for rank, p in enumerate(order, start=1):
            item = ev.candidates[p]
            attack = p == ev.inserted_pos or item in data.items
            if rank > top_k and not attack:
                continue  # below the stored top list only the attacker's item keeps a row: its real rank
            rows.append({"run_id": run_id, "model": model, "variant": variant, "user_id": ev.case.user,
                         "rank": rank, "item_id": split.item_ids[item], "title": ev.titles[p],
                         "score": float(s[p]), "is_attack_item": attack, "is_target": p == ev.target_pos})
    return rows


def eval_variants(cfg: AttackConfig, prep: Prepared, which: tuple[str, ...]) -> dict[str, list[EvalCase]]:
    """The evaluated test cases (the first `eval_users`) as each variant (clean, trigger, ...), same candidates."""
    cases = prep.split.test[: cfg.eval_users] if cfg.eval_users else prep.split.test
    return {v: attack_cases(prep.split, cases, v, prep.data, cfg.trigger, cfg.seed) for v in which}


# -- runs -------------------------------------------------------------------------------------
def _start_run(store: Store, cfg: AttackConfig, run_id: str | None) -> str:
    from core.runs.jobs import new_run_id
    if run_id and store.get_run(run_id) is not None:
        store.update_run(run_id, status="running", message="starting", error=None, finished_at=None,
                         owner=process_owner())
        return run_id
    run_id = run_id or new_run_id("attack")
    store.create_run(run_id, "attack", cfg.dataset, cfg.to_dict(), cfg.seed, versions(), status="running")
    return run_id


def _intervals(variants: dict[str, list[EvalCase]], s_clean: dict, s_pois: dict) -> dict[str, dict]:
    """Each rate's 95 % interval (`rate_intervals`) and each attack item's mean rank's, per model and paired."""
    out = rate_intervals(case_hits(variants, s_clean), case_hits(variants, s_pois))
    ranks = rate_intervals(case_ranks(variants, s_clean), case_ranks(variants, s_pois), interval=mean_interval)
    return {part: {**out[part], **ranks[part]} for part in out}


def _rounded(metrics: dict) -> dict:
    """Metrics as a run's result shows them: floats to 4 decimals."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()}


def run_attack(store: Store, cfg: AttackConfig, progress: Progress | None = None, run_id: str | None = None) -> dict:
    """Train the clean and the BadRec-poisoned victim, evaluate both, record the run.

    Args:
        store (`Store`): where the run, metrics, loss curves, recommendations and ground truth go.
        cfg (`AttackConfig`): the experiment.
        progress (`Progress`, *optional*): phases, steps and ETA; cancellation.
        run_id (`str`, *optional*): an existing queued run to fill (the dashboard's job) or a new id.

    Returns:
        `dict` of DESIGN.md §7: run_id, seconds, clean{...}, poisoned{...}, baselines{random, popularity},
        plus poisoning and timing details.

    Raises:
        BadRecError: invalid input (nothing written). Any failure after the run started marks it
        failed (or cancelled) with its rows removed, then re-raises.
    """
    t0 = time.monotonic()
    prep = prepare(store, cfg)
    run_id = _start_run(store, cfg, run_id)
    timings: dict[str, float] = {}
    try:
        if progress:  # one bar over the whole job; stage weights: training samples and scored lists
            n_train, n_users = len(prep.data.samples) * cfg.train.epochs, len(prep.split.test[: cfg.eval_users])
            lists = len(("clean", *ATTACK_VARIANTS)) + cfg.generate
            progress.stages(ATTACK_STAGES, [n_train, n_train, n_train, 2 * n_users * lists])

        def logger(phase):
            return lambda step, total, loss, tps: store.log_train(run_id, phase, step, total, loss, tps)

        # with adapters on the top blocks, the blocks below run once per training sequence for both victims
        features = TrunkFeatures()
        t = time.monotonic()
        clean, clean_train = clean_model(cfg, prep, progress, logger("clean"), features)
        timings["clean_model_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        poison_ck = _checkpointing(_poison_checkpoint_folder(run_id), {"run": run_id, **cfg.to_dict()})
        poisoned, poison_train = _train_victim(cfg, prep, True, progress, logger("poisoned"), poison_ck, features)
        del features
        timings["poisoned_model_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        variants = eval_variants(cfg, prep, ("clean", *ATTACK_VARIANTS))
        if progress:
            progress.stage("evaluating the models")
        # every variant on the clean model too: each attack rate of the poisoned model beside its base rate
        evaluated = evaluate(cfg, prep, {"clean model": clean, "poisoned model": poisoned}, variants, progress,
                             caches={"clean model": clean_model_folder(cfg)})
        (m_clean, s_clean), (m_pois, s_pois) = evaluated["clean model"], evaluated["poisoned model"]
        timings["evaluation_s"] = round(time.monotonic() - t, 2)
        cases = [e.case for e in variants["clean"]]
        base = baselines(prep.split, cases)
        rows = []
        for model, scores in (("clean", s_clean), ("poisoned", s_pois)):
            for variant, s in scores.items():
                rows += recommendation_rows(prep, run_id, model, variant, variants[variant], s, cfg.top_k)
        records = pd.DataFrame([{"run_id": run_id, **r} for r in poison_records(prep.split, prep.data)])
        timings["seconds"] = round(time.monotonic() - t0, 2)
        result = {
            "run_id": run_id, "seconds": timings["seconds"], "dataset": cfg.dataset, "victim": cfg.victim,
            "model": cfg.model.name, "quant": cfg.model.quant, "trigger": cfg.trigger.to_dict(),
            "clean": _rounded(m_clean), "poisoned": _rounded(m_pois),
            "delta_hr@1": round(m_pois["hr@1"] - m_clean["hr@1"], 4),
            "intervals": _intervals(variants, s_clean, s_pois),
            "baselines": {k: _rounded(v) for k, v in base.items()},
            "poisoning": {**prep.data.summary(), "poisoned_item_ids": [prep.split.item_ids[i]
                                                                       for i in prep.data.items],
                          "triggered_titles": [prep.data.titles[i] for i in prep.data.items]},
            "n_test_users": len(cases), "n_attack_cases": len(variants["trigger"]),
            "n_eval_lists": 2 * len(variants),
            "train": {"clean": clean_train, "poisoned": poison_train.to_dict()}, "timings": timings,
            "machine": machine_info(poisoned.info["compute_dtype"], poisoned.info.get("bnb_kernel")),
        }
        metrics = {"clean": m_clean, "poisoned": m_pois, "random": base["random"], "popularity": base["popularity"]}
        store.finish_run(run_id, result, timings, metrics,
                         {"recommendations": pd.DataFrame(rows), "poison_records": records})
        clear(poison_ck)
        return result
    except Cancelled as exc:
        store.fail_run(run_id, str(exc) or "cancelled", status="cancelled")
        raise
    except BaseException as exc:
        store.fail_run(run_id, f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__)
        raise


def resumable_config(store: Store, run_id: str) -> AttackConfig:
    """The config of an attack run that stopped before the end (killed, failed or cancelled), to resume it.

    Raises:
        InputError: no such attack run, or it finished (nothing to resume).
    """
    row = store.get_run(run_id)
    if row is None or row["kind"] != "attack":
        raise InputError(f"no attack run {run_id}")
    if row["status"] == "done":
        raise InputError(f"run {run_id} already finished; nothing to resume")
    if row["status"] in ("running", "queued") and alive_elsewhere(row.get("owner")):
        raise InputError(f"run {run_id} is {row['status']} in another live process")
    config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])
    return AttackConfig.from_dict(config)


def cached_stages(store: Store, cfg: AttackConfig) -> set[str]:
    """Which stages of `run_attack` would load from the cache here: "base model" (the tiny base, or any named
    model: downloaded or converted once, then only loaded) and "clean model" (the clean victim's adapter)."""
    from core.lm.tinylm import base_folder, is_built

    out = {"clean model"} if (clean_model_folder(cfg) / "adapter_model.safetensors").exists() else set()
    if not cfg.model.is_tiny or is_built(base_folder(load_dataset(store, cfg.dataset), cfg.tiny, cfg.protocol,
                                                    compute_dtype(cfg.model))):
        out.add("base model")
    return out


def resumable_runs(store: Store) -> pd.DataFrame:
    """Attack runs that stopped before the end (killed, failed, cancelled) and left a training checkpoint,
    newest first: what the dashboard's Resume button offers.

    Returns:
        `pd.DataFrame`: run_id, status, error, progress, created_at.
    """
    runs = store.list_runs("attack")
    stopped = runs[runs["status"].isin(["failed", "cancelled"])] if len(runs) else runs
    keep = []
    for row in stopped.itertuples():
        try:
            cfg = AttackConfig.from_dict(json.loads(row.config))
        except (TypeError, ValueError, InputError):  # a run of an older config format: not resumable here
            continue
        clean = clean_model_folder(cfg)
        if saved(_poison_checkpoint_folder(row.run_id)) or saved(clean.with_name(clean.name + ".ckpt")):
            keep.append(row.Index)
    return stopped.loc[keep, ["run_id", "status", "error", "progress", "created_at"]].reset_index(drop=True)


def without_items(prep: Prepared, dropped: set[int]) -> Prepared:
    """The run's training data after a defence dropped some items: samples whose target is dropped go (a
    fake user's whole sample with its attacker item), and the items leave every history and sequence; the
    victim retrains from the base on it, so a dropped item's triggered title reaches no training example."""
    data = prep.data

    def keep(samples):
        return [Sample(s.user, tuple(i for i in s.history if i not in dropped), s.target)
                for s in samples if s.target not in dropped]

    pruned = PoisonedData(data.items, data.titles, keep(data.clean_samples), keep(data.poison_samples),
                          data.fake_users)
    split = Split(prep.split.config, prep.split.item_ids, prep.split.titles, prep.split.train, prep.split.valid,
                  prep.split.test, {u: [i for i in s if i not in dropped] or s for u, s in prep.split.sequences.items()},
                  prep.split.train_counts)
    return Prepared(prep.ds, split, pruned, prep.ratings)


def retrain_without(store: Store, run_id: str, drop_item_ids: list[str], progress: Progress | None = None) -> dict:
    """Retrain the poisoned victim of an attack run without some items (a defence's flagged items).

    The dropped items leave the victim's training data: samples whose target is dropped go, the items
    leave histories and candidate lists. Evaluation uses the run's test cases and attack variants.

    Returns:
        `dict` {"before": {"asr", "hr@1", ...}, "after": {...}, "n_dropped", "n_poisoned_dropped",
        "seconds"}; "before" is read from the stored run.

    Raises:
        InputError: unknown run or not an attack run.
    """
    t0 = time.monotonic()
    row = store.get_run(run_id)
    if row is None or row.get("kind") != "attack":
        raise InputError(f"{run_id!r} is not an attack run")
    if row.get("status") != "done":
        raise InputError(f"attack run {run_id} is {row.get('status')}; only finished runs can be defended")
    cfg = AttackConfig.from_dict(row["config"])
    prep = prepare(store, cfg)
    index = {iid: i for i, iid in enumerate(prep.split.item_ids)}
    dropped = {index[str(i)] for i in drop_item_ids if str(i) in index}
    data = prep.data
    victim, result = _train_victim(cfg, without_items(prep, dropped), True, progress, None)
    variants = eval_variants(cfg, prep, ("clean", "trigger", "transfer"))
    after, _ = evaluate(cfg, prep, {"retrained model": victim}, variants, progress)["retrained model"]
    before = (row.get("result") or {}).get("poisoned", {})
    keys = ("hr@1", "hr@5", "asr", "asr_transfer")
    return {"before": {k: before.get(k) for k in keys}, "after": {k: round(after.get(k, 0.0), 4) for k in keys},
            "n_dropped": len(dropped), "n_poisoned_dropped": len(dropped & set(data.items)),
            "train": result.to_dict(), "seconds": round(time.monotonic() - t0, 2)}
