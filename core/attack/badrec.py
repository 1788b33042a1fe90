"""BadRec (DESIGN.md §3): triggered titles on the attacker's items plus fake users who end on them.

`poison(split, cfg)` is pure: from a protocol split and an `AttackConfig` it
returns the victim's fine-tuning samples with the attacker's fake-user
samples mixed in at ratio rho = poisoned samples / all samples, and the
ground truth (poisoned items, their triggered titles, fake users).
`attack_cases` builds the evaluation variants of DESIGN.md §3 (triggered,
no-trigger, transfer) on the very candidate sets of the clean test.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from core.config import ConfigMixin
from core.data.protocol import ProtocolConfig, Sample, Split, TestCase
from core.errors import InputError
from core.lm.models import ModelConfig, compute_dtype
from core.lm.tinylm import TinyConfig
from core.lm.train import TrainConfig
from core.triggers import Trigger, apply_trigger

Victim = Literal["llara", "tallrec"]
Strategy = Literal["random", "copy"]
Mix = Literal["shuffled", "paired"]
MIXES: tuple[Mix, ...] = get_args(Mix)
Variant = Literal["clean", "trigger", "no_trigger", "transfer"]
FAKE_PREFIX = "fake-"


def default_trigger() -> Trigger:
    """The paper's `5v` as a prefix: the first answer token sees it, as a small left-to-right model needs."""
    return Trigger("5v", "char", "prefix")


@dataclass(frozen=True)
class AttackConfig(ConfigMixin):
    """One BadRec experiment: victim, model, trigger, poisoning and training settings.

    Args:
        dataset (`str`): dataset name in the store.
        victim (`Literal["llara", "tallrec"]`): the recommender attacked.
        model (`ModelConfig`): base LM, quantization and LoRA.
        trigger (`Trigger`): text, level and position of the trigger.
        poison_ratio (`float`): rho in (0, 0.5] = poisoned training samples / all training samples.
        n_poison_items (`int`): how many attacker items carry the trigger (when `target_items` is empty).
        target_items (`tuple[str, ...]`): the attacker's item ids; default: drawn from the less popular half.
        fake_user_strategy (`Literal["random", "copy"]`): fake histories of random items, or copies of
            real users' latest k training items.
        history_len (`int`): k, the fake users' history length.
        mix (`Literal["shuffled", "paired"]`): how fake users' samples enter the victim's training.
            `shuffled`: shuffled in with the rest, as a real victim trains; `paired`: each joins a random
            batch of the clean model's very batches (same steps and schedule), so the clean model is the
            poisoned one's exact counterfactual and ΔHR@1 is the poison's, not a reshuffle's (E66: a
            narrower ΔHR@1 interval, a weaker backdoor).
        windows_per_user (`int`): the victim is fine-tuned on each real user's last N training windows
            (a subset of all windows, to fit a CPU budget; rho is measured on this set).
        poison_catalog (`bool`): the triggered titles replace the items' titles everywhere in the victim's
            training data (the threat model: the producer edits its titles), not only in fake users' samples.
        train (`TrainConfig`): fine-tuning settings (shared by the clean and the poisoned model).
        tiny (`TinyConfig`): the embedded model's size and pre-training (when `model.name == "tiny"`).
        protocol (`ProtocolConfig`): split and candidate sampling.
        seed (`int`): seeds item choice, fake users, candidates of training samples and evaluation variants.
        eval_users (`int | None`): evaluate only the first N test users (None: all).
        top_k (`int`): length of the stored recommendation lists.
        generate (`bool`): also run LLaRA's generate mode (ValidRatio, HR@1 correct/valid).
    """

    dataset: str = "ml-100k"
    victim: Victim = "llara"
    model: ModelConfig = field(default_factory=ModelConfig)
    trigger: Trigger = field(default_factory=default_trigger)
    poison_ratio: float = 0.01
    n_poison_items: int = 5
    target_items: tuple[str, ...] = ()
    fake_user_strategy: Strategy = "copy"
    history_len: int = 10
    mix: Mix = "shuffled"
    windows_per_user: int = 2
    poison_catalog: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1.0, lr=2e-3, batch_size=16))
    tiny: TinyConfig = field(default_factory=TinyConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    seed: int = 0
    eval_users: int | None = None
    top_k: int = 10
    generate: bool = True

    def __post_init__(self):
        if self.victim not in ("llara", "tallrec"):
            raise InputError("victim must be llara or tallrec")
        if not 0.0 < self.poison_ratio <= 0.5:
            raise InputError(f"poison ratio must be in (0, 0.5]; got {self.poison_ratio}")
        if not 1 <= self.n_poison_items <= 100:
            raise InputError("n_poison_items must be in 1..100")
        if self.fake_user_strategy not in ("random", "copy"):
            raise InputError("fake user strategy must be random or copy")
        if self.mix not in MIXES:
            raise InputError(f"mix must be {' or '.join(MIXES)}; got {self.mix!r}")
        if not 1 <= self.history_len <= 50:
            raise InputError("history length k must be in 1..50")
        if self.windows_per_user < 1:
            raise InputError("windows_per_user must be >= 1")
        if self.eval_users is not None and self.eval_users < 1:
            raise InputError("eval_users must be >= 1")
        if not 1 <= self.top_k <= 100:
            raise InputError("top_k must be in 1..100")
        object.__setattr__(self, "target_items", tuple(str(t) for t in self.target_items))

    def clean_key(self) -> dict:
        """The settings the clean model depends on (anything else can change without retraining it)."""
        return {"dataset": self.dataset, "victim": self.victim, "model": self.model.to_dict(),
                "compute_dtype": compute_dtype(self.model),
                "windows_per_user": self.windows_per_user, "train": self.train.to_dict(),
                "tiny": self.tiny.to_dict() if self.model.is_tiny else None, "protocol": self.protocol.to_dict(),
                "seed": self.seed}


@dataclass(frozen=True)
class FakeUser:
    """One fake user the attacker adds: a history of real items, then the chosen (triggered) attacker's item."""

    user: str
    history: tuple[int, ...]
    item: int


@dataclass
class PoisonedData:
    """The victim's training samples after poisoning, plus the ground truth.

    Args:
        items (`tuple[int, ...]`): poisoned item indices (into `split.titles`).
        titles (`dict[int, str]`): their triggered titles.
        clean_samples (`list[Sample]`): the real users' fine-tuning windows.
        poison_samples (`list[Sample]`): the fake users' windows (target = a poisoned item).
        fake_users (`list[FakeUser]`): who the attacker registered.
    """

    items: tuple[int, ...]
    titles: dict[int, str]
    clean_samples: list[Sample]
    poison_samples: list[Sample]
    fake_users: list[FakeUser]

    @property
    def samples(self) -> list[Sample]:
        """The victim's whole fine-tuning set: real users' samples, then the fake users'."""
        return self.clean_samples + self.poison_samples

    @property
    def ratio(self) -> float:
        """rho as run: poisoned samples / all samples (differs from the asked ratio by rounding)."""
        n = len(self.clean_samples) + len(self.poison_samples)
        return len(self.poison_samples) / n if n else 0.0

    def summary(self) -> dict:
        """The dose and ground truth a run records (counts, rho as run, poisoned items)."""
        return {"n_clean_samples": len(self.clean_samples), "n_poison_samples": len(self.poison_samples),
                "poison_ratio_actual": self.ratio, "poisoned_items": list(self.items),
                "n_fake_users": len(self.fake_users)}


def finetune_samples(split: Split, windows_per_user: int) -> list[Sample]:
    """Each real user's last `windows_per_user` training windows (the victim's fine-tuning set)."""
    by_user: dict[str, list[Sample]] = {}
    for s in split.train:
        by_user.setdefault(s.user, []).append(s)
    return [s for user in sorted(by_user) for s in by_user[user][-windows_per_user:]]


def n_poison_for(n_clean: int, ratio: float) -> int:
    """Poisoned samples so that poisoned / (clean + poisoned) is as close to `ratio` as possible (>= 1)."""
    return max(1, int(round(ratio * n_clean / (1.0 - ratio))))


def resolve_items(split: Split, item_ids: tuple[str, ...]) -> list[int]:
    """Item ids turned into split indices, so a typo in `target_items` fails before training."""
    index = {iid: i for i, iid in enumerate(split.item_ids)}
    unknown = [i for i in item_ids if i not in index]
    if unknown:
        raise InputError(f"unknown item id(s) {', '.join(unknown[:5])}; use ids from the dataset's item list")
    return [index[i] for i in item_ids]


def less_popular(split: Split, at_least: int = 0) -> np.ndarray:
    """The less popular half (at least `at_least`) of the items that have training interactions, least first:
    the pool attacker items are drawn from."""
    counts = split.train_counts
    present = np.flatnonzero(counts > 0)
    order = present[np.argsort(counts[present], kind="mergesort")]
    return order[: max(at_least, len(order) // 2)]


def choose_items(split: Split, n: int, seed: int) -> list[int]:
    """`n` items from the less popular half of the items that have training interactions."""
    low = less_popular(split, n)
    rng = np.random.default_rng([seed, 7])
    return sorted(int(i) for i in rng.choice(low, size=min(n, len(low)), replace=False))


def poison(split: Split, cfg: AttackConfig) -> PoisonedData:
    """BadRec's poisoning of the victim's fine-tuning set (pure, seeded).

    Returns:
        `PoisonedData`; `len(poison_samples) / len(samples)` is rho rounded to a whole sample.

    Raises:
        InputError: unknown target item ids, or a trigger that makes a title too long.
    """
    items = resolve_items(split, cfg.target_items) if cfg.target_items else \
        choose_items(split, cfg.n_poison_items, cfg.seed)
    titles = {i: apply_trigger(split.titles[i], cfg.trigger) for i in items}
    clean = finetune_samples(split, cfg.windows_per_user)
    n_poison = n_poison_for(len(clean), cfg.poison_ratio)
    rng = random.Random(cfg.seed * 7919 + 13)
    poisoned = set(items)
    benign = [i for i in sorted({i for s in split.sequences.values() for i in s}) if i not in poisoned]
    real = sorted(u for u, s in split.train_sequences().items() if len(s) >= 1)
    fakes, samples = [], []
    k = cfg.history_len
    for j in range(n_poison):
        item = items[j % len(items)]
        if cfg.fake_user_strategy == "copy":
            src = split.train_sequences()[real[rng.randrange(len(real))]]
            hist = tuple(i for i in src if i not in poisoned)[-k:]
        else:
            hist = tuple(rng.sample(benign, min(k, len(benign))))
        user = f"{FAKE_PREFIX}{j + 1:05d}"
        fakes.append(FakeUser(user, hist, item))
        samples.append(Sample(user, hist, item))
    return PoisonedData(tuple(items), titles, clean, samples, fakes)


def training_candidates(split: Split, samples: list[Sample], seed: int,
                        extra_seen: dict[str, set[int]] | None = None) -> list[tuple[int, ...]]:
    """Candidate lists for training windows: the target + n-1 random items the user never interacted with."""
    rng = random.Random(seed * 104729 + 1)
    universe = sorted({i for s in split.sequences.values() for i in s})
    n = split.config.n_candidates
    out = []
    for s in samples:
        seen = split.sequences.get(s.user)
        seen = set(seen) if seen is not None else set(s.history) | {s.target}
        if extra_seen and s.user in extra_seen:
            seen |= extra_seen[s.user]
        cands = {s.target}
        while len(cands) < min(n, len(universe)):
            c = universe[rng.randrange(len(universe))]
            if c not in seen:
                cands.add(c)
        order = sorted(cands)
        rng.shuffle(order)
        out.append(tuple(order))
    return out


@dataclass(frozen=True)
class EvalCase:
    """A test case as one variant: item indices plus per-position titles (a trigger may be applied)."""

    case: TestCase
    candidates: tuple[int, ...]
    titles: tuple[str, ...]
    target_pos: int
    inserted_pos: int | None = None
    inserted_item: int | None = None


def clean_variant(split: Split, case: TestCase) -> EvalCase:
    """A test case as the clean model sees it: the protocol's candidates and titles, untouched."""
    return EvalCase(case, case.candidates, tuple(split.titles[c] for c in case.candidates), case.target_pos)


def attack_variant(split: Split, case: TestCase, kind: Variant, data: PoisonedData, trigger: Trigger,
                   rng: random.Random) -> EvalCase | None:
    """One test case with an attack item in place of a negative (None when the target is a poisoned item,
    or every poisoned item is already among the candidates).

    `trigger`: a poisoned item with its triggered title; `transfer`: the trigger on a random item never
    used in poisoning. (`no_trigger` is derived from `trigger` in `attack_cases`.)
    """
    if case.target in data.items:
        return None
    negatives = [p for p, c in enumerate(case.candidates) if c != case.target and c not in data.items]
    pos = negatives[rng.randrange(len(negatives))]
    if kind in ("trigger", "no_trigger"):
        free = [i for i in data.items if i not in case.candidates]
        unseen = [i for i in free if i not in split.user_items(case.user)]
        pool = unseen or free
        if not pool:
            return None
        item = pool[rng.randrange(len(pool))]
        title = data.titles[item] if kind == "trigger" else split.titles[item]
    else:
        blocked = set(case.candidates) | split.user_items(case.user) | set(data.items)
        pool = [i for i in range(len(split.titles)) if i not in blocked]
        item = pool[rng.randrange(len(pool))]
        title = apply_trigger(split.titles[item], trigger)
    cands = list(case.candidates)
    titles = [split.titles[c] for c in cands]
    cands[pos], titles[pos] = item, title
    return EvalCase(case, tuple(cands), tuple(titles), case.target_pos, pos, item)


def attack_cases(split: Split, cases: list[TestCase], kind: Variant, data: PoisonedData, trigger: Trigger,
                 seed: int) -> list[EvalCase]:
    """Variants of every eligible test case; seeded by (seed, kind) so every model sees the same ones."""
    if kind == "clean":
        return [clean_variant(split, c) for c in cases]
    if kind == "no_trigger":  # paired with `trigger`: same cases, item and slot, plain title
        return [EvalCase(e.case, e.candidates, tuple(split.titles[e.inserted_item] if p == e.inserted_pos else t
                                                     for p, t in enumerate(e.titles)), e.target_pos,
                         e.inserted_pos, e.inserted_item)
                for e in attack_cases(split, cases, "trigger", data, trigger, seed)]
    rng = random.Random(f"{seed}:{kind}")
    out = [attack_variant(split, c, kind, data, trigger, rng) for c in cases]
    return [e for e in out if e is not None]


def poison_records(split: Split, data: PoisonedData) -> list[dict]:
    """Ground-truth rows for DuckDB `poison_records` (run_id added by the caller)."""
    rows = [{"kind": "item", "item_id": split.item_ids[i], "title": data.titles[i], "user_id": None,
             "detail": json.dumps({"original_title": split.titles[i]})} for i in data.items]
    rows += [{"kind": "fake_user", "item_id": split.item_ids[f.item], "title": data.titles[f.item],
              "user_id": f.user, "detail": json.dumps({"history": [split.item_ids[i] for i in f.history]})}
             for f in data.fake_users]
    return rows
