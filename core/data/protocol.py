"""The evaluation protocol (DESIGN.md §2), mirroring LLaRA so numbers compare.

Per user, interactions are ordered by time; users with fewer than
`min_interactions` are dropped; the last item is the test target, the
second-last the validation target, the rest make sliding training windows.
Each test case gets `n_candidates` = target + negatives the user never
interacted with, drawn with a generator seeded by (seed, user), so the same
seed gives the same candidate sets for every model compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.config import ConfigMixin
from core.errors import InputError
from core.metrics import ranking_metrics

from .dataset import Dataset


@dataclass(frozen=True)
class ProtocolConfig(ConfigMixin):
    """How a dataset becomes training samples and test cases.

    Args:
        min_interactions (`int`): users with fewer interactions are dropped (LLaRA: 5).
        history_len (`int`): at most this many previous items form a history.
        n_candidates (`int`): candidates per test case, the target included.
        seed (`int`): seeds the negative sampling and the candidate order.
    """

    min_interactions: int = 5
    history_len: int = 10
    n_candidates: int = 20
    seed: int = 0

    def __post_init__(self):
        if self.min_interactions < 3:
            raise InputError("min_interactions must be >= 3 (one train, one validation, one test item)")
        if not 1 <= self.history_len <= 50:
            raise InputError("history_len must be in 1..50")
        if not 2 <= self.n_candidates <= 100:
            raise InputError("n_candidates must be in 2..100")


@dataclass(frozen=True)
class Sample:
    """One training window: up to `history_len` items, then the next item (indices into `Split.titles`)."""

    user: str
    history: tuple[int, ...]
    target: int


@dataclass(frozen=True)
class TestCase:
    """A held-out next-item choice: history, target, and the shuffled candidate list (target included once)."""

    user: str
    history: tuple[int, ...]
    target: int
    candidates: tuple[int, ...]

    @property
    def target_pos(self) -> int:
        """Where the target sits in the shuffled candidate list (the position the metrics score)."""
        return self.candidates.index(self.target)


@dataclass
class Split:
    """A dataset cut by the protocol. Items are dense indices into `item_ids` / `titles`."""

    config: ProtocolConfig
    item_ids: list[str]
    titles: list[str]
    train: list[Sample]
    valid: list[TestCase]
    test: list[TestCase]
    sequences: dict[str, list[int]] = field(repr=False)
    train_counts: np.ndarray = field(repr=False)

    def user_items(self, user: str) -> set[int]:
        """Every item a user interacted with: negatives are drawn from outside this set."""
        return set(self.sequences[user])

    def train_sequences(self) -> dict[str, list[int]]:
        """Each user's items before validation and test: what models may learn from."""
        return {u: s[:-2] for u, s in self.sequences.items()}


def user_sequences(ds: Dataset, cfg: ProtocolConfig) -> tuple[list[str], list[str], dict[str, list[int]], np.ndarray]:
    """Time-ordered item-index sequences per kept user, and the candidate universe.

    The universe is every catalog item with at least one interaction: items nobody
    ever chose have no signal any model could learn from.
    """
    if ds.interactions.empty:
        raise InputError(f"{ds.name} has no interactions (a catalog only); it can be scanned, not trained on")
    item_ids = ds.items["item_id"].astype(str).tolist()
    index = {iid: i for i, iid in enumerate(item_ids)}
    inter = ds.interactions.assign(order=np.arange(len(ds.interactions)))
    inter = inter[inter["item_id"].isin(index)]
    inter = inter.sort_values(["user_id", "ts", "order"], kind="mergesort")
    seqs: dict[str, list[int]] = {}
    for user, group in inter.groupby("user_id", sort=True):
        if len(group) >= cfg.min_interactions:
            seqs[str(user)] = [index[i] for i in group["item_id"]]
    if not seqs:
        raise InputError(f"{ds.name}: no user has >= {cfg.min_interactions} interactions")
    universe = np.array(sorted({index[i] for i in inter["item_id"].unique()}))
    return item_ids, ds.items["title"].tolist(), seqs, universe


def sample_candidates(target: int, seen: set[int], universe: np.ndarray, n: int,
                      rng: np.random.Generator) -> tuple[int, ...]:
    """The target plus n-1 distinct items outside `seen`, shuffled."""
    pool = universe[~np.isin(universe, list(seen))]
    if len(pool) < n - 1:
        raise InputError(f"only {len(pool)} unseen items for a user; need {n - 1} negatives")
    negatives = rng.choice(pool, size=n - 1, replace=False).tolist()
    cands = [target, *negatives]
    rng.shuffle(cands)
    return tuple(int(c) for c in cands)


def build_split(ds: Dataset, cfg: ProtocolConfig = ProtocolConfig()) -> Split:
    """Cut a dataset into training windows, validation and test cases (pure, deterministic under `cfg.seed`)."""
    item_ids, titles, seqs, universe = user_sequences(ds, cfg)
    train, valid, test = [], [], []
    counts = np.zeros(len(item_ids), dtype=np.int64)
    L = cfg.history_len
    for u_idx, (user, seq) in enumerate(seqs.items()):
        body = seq[:-2]
        np.add.at(counts, body, 1)
        for t in range(1, len(body)):
            train.append(Sample(user, tuple(body[max(0, t - L):t]), body[t]))
        seen = set(seq)
        rng = np.random.default_rng([cfg.seed, u_idx])
        valid.append(TestCase(user, tuple(body[-L:]), seq[-2],
                              sample_candidates(seq[-2], seen, universe, cfg.n_candidates, rng)))
        test.append(TestCase(user, tuple(seq[:-1][-L:]), seq[-1],
                             sample_candidates(seq[-1], seen, universe, cfg.n_candidates, rng)))
    return Split(cfg, item_ids, titles, train, valid, test, seqs, counts)


def popularity_scores(split: Split, case: TestCase) -> list[float]:
    """Each candidate's training interaction count: the popularity baseline's scores."""
    return [float(split.train_counts[c]) for c in case.candidates]


def baselines(split: Split, cases: list[TestCase] | None = None) -> dict[str, dict[str, float]]:
    """Random and popularity rankings on the same candidate sets (expected tie-breaking)."""
    cases = split.test if cases is None else cases
    targets = [c.target_pos for c in cases]
    return {
        "random": ranking_metrics([[0.0] * len(c.candidates) for c in cases], targets),
        "popularity": ranking_metrics([popularity_scores(split, c) for c in cases], targets),
    }


def split_summary(split: Split) -> dict:
    """The split's sizes and protocol settings, recorded with the baselines."""
    return {"n_users": len(split.sequences), "n_items": len(split.item_ids), "n_train_samples": len(split.train),
            "n_test_cases": len(split.test), "protocol": split.config.to_dict()}
