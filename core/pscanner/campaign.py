"""Recurring triggers: one inserted text lifting several titles at once (a BadRec campaign).

BadRec writes the same trigger into several items' titles. A title-level score judges each title
alone, so a trigger that lifts five titles into the catalog's top tenth but not one of them over the
calibrated threshold goes unflagged (docs/SCANNER.md, E13 and E17). A word n-gram is taken for a
campaign's trigger when

1. it occurs in at least `min_titles` of the catalog's top-scored titles (the top `top` share);
2. at least `min_share` of all titles carrying it are top-scored, which rules out common words and
   years: they occur everywhere, high and low;
3. removing it brings the median score of its top titles below the top cut: the scanner reacts to
   the n-gram itself, not to something else those titles share;
4. its carriers do not read as one series: a trigger is written into unrelated titles, so once it is
   removed each carrier keeps a name of its own, while a franchise or series name (`Friday the`,
   `NOBUNAGA'S AMBITION:`) leaves fragments (`13th Part 2`, `II`) or words its carriers share (E51).

A trigger on two or three titles that the title-level scores leave in the catalog's top third but not
its top tenth passes a second test instead (`CampaignConfig.spread`, E58): every title carrying the
n-gram is among the top third, removing it lowers each of them by a margin, and they are no series.

Every title that carries a campaign's trigger is flagged. A trigger on one item is left to the
title-level threshold; an attacker who writes a different trigger into each item evades this step.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

from core.config import ConfigMixin
from core.errors import InputError

from .scanner import logit

_SPLIT = re.compile(r"[\s_]+")  # glued triggers (`title_xy`) split like spaced ones
_EDGE = re.compile(r"^\W+|\W+$")
_NUMERAL = re.compile(r"^[ivxlcdm]+$")  # Roman numerals mark sequels, as digits do
# A word in at least this share of the catalog's titles (and this many) names nothing in particular.
COMMON_SHARE, COMMON_MIN_TITLES = 0.01, 10
COMMON_SAMPLE = 100_000  # titles read for the common words: a word in 1 % of them is in ~1,000 (±3 %)


@dataclass(frozen=True)
class CampaignConfig(ConfigMixin):
    """When recurring n-grams among the top-scored titles count as a trigger.

    Args:
        top (`float`): share of the catalog, by score, in which a trigger must recur.
        min_titles (`int`): top titles that must carry it.
        min_share (`float`): share of all titles carrying it that must be top titles.
        max_words (`int`): longest n-gram considered, in words.
        max_checked (`int`): n-grams put through the removal check, most frequent first.
        probe_titles (`int`): titles per n-gram scored without it in the removal check.
        pair_rest (`float | None`): an n-gram on fewer than 3 top titles must also leave them, once removed,
            below this quantile of the catalog's scores: a trigger leaves a plain title behind, a franchise or
            series name a fragment that still scores odd (E45). None: no stricter check for pairs.
        series (`bool`): pass over an n-gram whose carriers read as one series (`series_like`).
        spare_one (`bool`): an n-gram on 3 or more titles may also have all but one of them in the top (at
            least 2), whatever `min_titles` and `min_share`, when removing it takes every top carrier below the
            top's cut and lowers the others by half as much, and it holds a letter: a trigger on three titles with
            one scored lower, not a word odd titles share (`on`), a franchise's or a year (E56, E57).
        spread (`float | None`): also take an n-gram carried by 2 or more titles, every one of them in this top
            share of the catalog, when removing it lowers each carrier's logit by at least `spread_drop` and
            leaves each a title of its own, and they do not read as one series: a trigger on two or three titles
            ranked in the top third, not the top tenth (E58). None: off.
        spread_drop (`float`): the logit drop the spread check asks of every carrier (the frozen-LLM scanner's
            scale, where it was chosen: the scan turns the check off for other scanners, `campaign_rules`).
        spread_floor (`float`): a drop counts down to this quantile of the catalog's logits at most: a trigger lifts
            a title from where catalog titles score, while two plain titles sharing words (`My Favorite`) score
            plainer still once the words go, which is no evidence.
    """

    top: float = 0.1
    min_titles: int = 3
    min_share: float = 0.8
    max_words: int = 6
    max_checked: int = 200
    probe_titles: int = 32
    pair_rest: float | None = None
    series: bool = True
    spare_one: bool = False
    spread: float | None = 0.3
    spread_drop: float = 2.0
    spread_floor: float = 0.25

    def __post_init__(self):
        if not 0.0 < self.top <= 0.5:
            raise InputError(f"campaign top share {self.top} must be in (0, 0.5]")
        if self.min_titles < 2:
            raise InputError("a recurring trigger needs min_titles >= 2")
        if not 0.5 <= self.min_share <= 1.0:
            raise InputError(f"campaign min_share {self.min_share} must be in [0.5, 1]")
        if self.max_words < 1 or self.max_checked < 1 or self.probe_titles < 1:
            raise InputError("campaign max_words, max_checked and probe_titles must be >= 1")
        if self.pair_rest is not None and not 0.0 < self.pair_rest < 1.0:
            raise InputError(f"campaign pair_rest {self.pair_rest} must be in (0, 1)")
        if self.spread is not None and not 0.0 < self.spread <= 0.5:
            raise InputError(f"campaign spread {self.spread} must be in (0, 0.5]")
        if not 0.0 <= self.spread_floor <= 0.5:
            raise InputError(f"campaign spread_floor {self.spread_floor} must be in [0, 0.5]")


@dataclass(frozen=True)
class Campaign:
    """A recurring trigger: its text, how many catalog titles carry it, and the removal check's medians.

    `series`: it passed every test but its titles read as one series; reported for review, never flagged (an
    attacker who triggers a franchise's titles would show here).
    """

    text: str
    n_titles: int
    median_score: float
    median_without: float
    series: bool = False


def words(title: str) -> list[str]:
    """A title's words, split on spaces and underscores alike so glued triggers (`title_xy`) count too."""
    return [w for w in _SPLIT.split(title) if w]


def ngrams(ws: Sequence[str], max_words: int, first: set[str] | None = None) -> set[str]:
    """Contiguous word n-grams of up to `max_words` words (only those starting with a word in `first`)."""
    return {" ".join(ws[i:j]) for i in range(len(ws)) if first is None or ws[i] in first
            for j in range(i + 1, min(len(ws), i + max_words) + 1)}


def _at(ws: Sequence[str], gw: Sequence[str]) -> int | None:
    """Where the word n-gram `gw` first starts in the word list `ws`, or None."""
    return next((i for i in range(len(ws) - len(gw) + 1) if ws[i:i + len(gw)] == gw), None)


def without(title: str, gram: str) -> str:
    """The title with the first occurrence of the word n-gram removed (words re-joined by spaces)."""
    ws, gw = words(title), gram.split(" ")
    i = _at(ws, gw)
    return title if i is None else " ".join(ws[:i] + ws[i + len(gw):])


def extended(carriers: Sequence[str], gram: str) -> str:
    """The n-gram grown by the words next to it in every carrier alike: a trigger longer than `max_words`
    (a sentence) is checked whole, else its own leftover words would be what its carriers share (a series)."""
    gw = gram.split(" ")
    spans = []
    for t in carriers:
        ws = words(t)
        if (i := _at(ws, gw)) is None:
            return gram
        spans.append((ws, i, i + len(gw)))

    def same(pos):  # the word at offset `pos` from each carrier's match, if they all have one and it is one word
        got = {ws[p] if 0 <= (p := (i if pos < 0 else j) + pos) < len(ws) else None for ws, i, j in spans}
        return got.pop() if len(got) == 1 and None not in got else None

    left, right = [], []
    while (w := same(-1 - len(left))) is not None:
        left.insert(0, w)
    while (w := same(len(right))) is not None:
        right.append(w)
    return " ".join(left + gw + right)


def carrying(titles: Sequence[str], gram: str) -> list[int]:
    """The indices of the titles that carry the word n-gram."""
    gw = gram.split(" ")
    return [i for i, t in enumerate(titles) if _at(words(t), gw) is not None]


def carriers_per_gram(titles: Sequence[str], grams: Collection[str], max_words: int) -> Counter:
    """How many of the catalog's titles carry each of `grams` (only n-grams starting with one of their first words
    are formed: one pass over the catalog)."""
    first = {g.split(" ")[0] for g in grams}
    return Counter(g for t in titles for g in ngrams(words(t), max_words, first) if g in grams)


def name_words(text: str) -> set[str]:
    """The words of a text that can name something: lower-cased, edge punctuation stripped, holding a letter,
    not a Roman numeral."""
    out = set()
    for w in words(text):
        w = _EDGE.sub("", w).lower()
        if any(c.isalpha() for c in w) and not _NUMERAL.match(w):
            out.add(w)
    return out


def common_words(titles: Sequence[str]) -> set[str]:
    """The catalog's own function words (`the`, `of`, `edition`): in `COMMON_SHARE` of its titles and at least
    `COMMON_MIN_TITLES` (in a small catalog a campaign's own words would pass the share). A bulk catalog is
    read at an even stride of `COMMON_SAMPLE` titles: a share needs no more, and all of 1M titles took 12 s."""
    seen = titles[::max(1, len(titles) // COMMON_SAMPLE)]
    df = Counter(w for t in seen for w in name_words(t))
    return {w for w, c in df.items() if c >= max(COMMON_SHARE * len(seen), COMMON_MIN_TITLES)}


def series_like(carriers: Sequence[str], gram: str, common: set[str]) -> bool:
    """Whether the titles carrying `gram` read as one series rather than as unrelated titles given a trigger.

    Once the n-gram is removed, a carrier is related when what is left names nothing (a fragment: `II (1988)`,
    `2`) or shares an uncommon word with another carrier's rest (`13th`, `Revolution`); a majority of related
    carriers makes a series. Unrelated titles rarely share an uncommon word: of the held-out suite's triggers on
    2-3 titles (tuning seeds), 5 of 458 pass for series on five catalogs (E51). Common words never relate titles,
    so a catalog written in a small vocabulary (`Blue Cotton Shirt`) does not read as one series.
    """
    own = name_words(gram)
    left = [name_words(without(t, gram)) - own for t in carriers]
    rests = [w - common for w in left]
    related = sum(not w or any(r & o for j, o in enumerate(rests) if j != i)
                  for i, (w, r) in enumerate(zip(left, rests)))
    return 2 * related > len(rests)


def find_campaigns(titles: Sequence[str], scores: np.ndarray, score_fn: Callable[[list[str]], np.ndarray],
                   cfg: CampaignConfig = CampaignConfig(),
                   hosted_fn: Callable[[list[str], list[str]], np.ndarray] | None = None) -> list[Campaign]:
    """Recurring triggers among the top-scored titles (module docstring); most carriers first, then the n-grams
    that passed every test but the series check (`series=True`: for review, `campaign_of` ignores them).

    Args:
        titles (`Sequence[str]`): the catalog's titles.
        scores (`np.ndarray`): their scanner scores.
        score_fn (`Callable`): the same scanner's scoring, for the removal check.
        cfg (`CampaignConfig`): the rule's parameters.
        hosted_fn (`Callable | None`): `hosted_fn(texts, hosts)` scores each text made from a catalog title by
            the scanner that scored that title (a cross-fitted scan's fold scanner), for the spread check;
            `score_fn` when None.
    """
    n = len(titles)
    k = max(cfg.min_titles, math.ceil(cfg.top * n))
    if n <= k:
        return []
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    top_idx, cut = order[:k], float(scores[order[k - 1]])
    top_grams = [ngrams(words(titles[i]), cfg.max_words) for i in top_idx]
    support = Counter(g for gs in top_grams for g in gs)
    kept = {g for g, c in support.items() if c >= (min(2, cfg.min_titles) if cfg.spare_one else cfg.min_titles)}
    df = carriers_per_gram(titles, kept, cfg.max_words)

    def usual(g: str) -> bool:
        return support[g] >= cfg.min_titles and support[g] >= cfg.min_share * df[g]

    def spared(g: str) -> bool:  # one carrier outside the top (`spare_one`); a year or number recurs by chance
        return cfg.spare_one and df[g] >= 3 and support[g] >= df[g] - 1 and bool(name_words(g))

    shared = sorted((g for g in kept if usual(g) or spared(g)), key=lambda g: (-support[g], g))
    pair_cut = None if cfg.pair_rest is None else float(np.quantile(scores, cfg.pair_rest))
    common = common_words(titles) if shared or cfg.spread else set()
    found: list[Campaign] = []
    seen: set[str] = set()
    for g in shared[:cfg.max_checked]:
        mine = [int(i) for i, gs in zip(top_idx, top_grams) if g in gs][:cfg.probe_titles]
        whole = extended([titles[i] for i in mine], g)  # what the checks remove: the trigger, not part of it
        if whole != g and len(carrying(titles, whole)) != df[g]:
            whole = g  # grown only where the top carriers have it: not what every carrier shares
        if whole in seen:
            continue
        seen.add(whole)
        med_with = float(np.median(scores[mine]))
        rest = score_fn([without(titles[i], whole) for i in mine])
        med_without = float(np.median(rest))
        pair_ok = pair_cut is None or len(mine) >= 3 or float(np.max(rest)) < pair_cut
        # a spared n-gram must be what makes each top carrier odd, not a word that odd titles happen to share
        if med_without < cut and pair_ok and (usual(g) or (float(np.max(rest)) < cut and _lifts_the_spared(
                titles, scores, score_fn, mine, whole, rest))):
            is_series = cfg.series and series_like([titles[i] for i in mine], whole, common)
            found.append(Campaign(whole, int(df[g]), med_with, med_without, is_series))
    if cfg.spread:
        found += _spread(titles, scores, order, hosted_fn or (lambda texts, hosts: score_fn(texts)), cfg, common,
                         {c.text for c in found})
    triggers = _longest([c for c in found if not c.series])
    # a trigger's fragments read as a series (its other words are left in every carrier): not a series name
    series = [c for c in _longest([c for c in found if c.series])
              if not any(_inside(c, t) or _inside(t, c) for t in triggers)]
    return sorted(triggers + series, key=lambda c: (c.series, -c.n_titles, c.text))


def _spread(titles, scores, order, hosted_fn, cfg: CampaignConfig, common: set[str], found: set[str]
            ) -> list[Campaign]:
    """The spread check (`CampaignConfig.spread`): n-grams whose every carrier, two or more, is in the top
    `spread` share, each grown to what its carriers share and checked once per set of carriers (most carriers,
    then the best-ranked, first; at most `max_checked`)."""
    rank = np.empty(len(titles), dtype=int)
    rank[order] = np.arange(len(titles))
    top = order[:math.ceil(cfg.spread * len(titles))]
    by_gram: dict[str, list[int]] = {}
    for i in top:
        for g in ngrams(words(titles[i]), cfg.max_words):
            by_gram.setdefault(g, []).append(int(i))
    # an n-gram of the catalog's own common words names nothing; a shared year or sign may still be a trigger
    by_gram = {g: ix for g, ix in by_gram.items() if len(ix) >= 2 and not (name_words(g) and name_words(g) <= common)}
    df = carriers_per_gram(titles, by_gram, cfg.max_words)
    sets: dict[tuple[int, ...], str] = {}
    for g, ix in by_gram.items():
        if df[g] == len(ix):  # every carrier in the top share
            whole, key = extended([titles[i] for i in ix], g), tuple(sorted(ix))
            if len(whole) > len(sets.get(key, "")):
                sets[key] = whole
    cands = sorted(((ix, g) for ix, g in sets.items() if g not in found and all(without(titles[i], g) for i in ix)),
                   key=lambda c: (-len(c[0]), max(rank[i] for i in c[0]), c[1]))[:cfg.max_checked]
    if not cands:
        return []
    texts = [without(titles[i], g) for ix, g in cands for i in ix]
    rest = hosted_fn(texts, [titles[i] for ix, _ in cands for i in ix])
    floor = float(np.quantile(logit(scores), cfg.spread_floor))
    out, start = [], 0
    for ix, g in cands:
        own, left = scores[list(ix)], rest[start:start + len(ix)]
        start += len(ix)
        if float(np.min(logit(own) - np.maximum(logit(left), floor))) >= cfg.spread_drop:
            out.append(Campaign(g, len(ix), float(np.median(own)), float(np.median(left)),
                                cfg.series and series_like([titles[i] for i in ix], g, common)))
    return out


def _lifts_the_spared(titles, scores, score_fn, mine, gram, rest) -> bool:
    """Whether removing `gram` lowers the carriers outside the top too, by at least half the top carriers' median
    drop (logits): a trigger makes every title it is written into odder, a word a franchise shares need not."""
    out = sorted(set(carrying(titles, gram)) - set(mine))
    if not out:
        return True
    drop_top = float(np.median(logit(scores[mine]) - logit(rest)))
    drop_out = logit(scores[out]) - logit(score_fn([without(titles[i], gram) for i in out]))
    return bool(np.min(drop_out) >= 0.5 * drop_top)


def _inside(a: Campaign, b: Campaign) -> bool:
    return a is not b and f" {a.text} " in f" {b.text} "


def _longest(found: list[Campaign]) -> list[Campaign]:
    """One trigger passes as several n-grams: its fragments (carried by the same titles) and the trigger with
    a neighbouring word (`(1995) mn`, carried by fewer). Keep the longest n-gram whose titles none of its
    fragments exceeds."""
    out = [c for c in found if not any(_inside(o, c) and o.n_titles > c.n_titles for o in found)]
    return [c for c in out if not any(_inside(c, o) and o.n_titles == c.n_titles for o in out)]


def campaign_of(titles: Sequence[str], campaigns: Sequence[Campaign]) -> list[str | None]:
    """For each title, the (longest) campaign trigger it carries, or None (series names are no triggers)."""
    texts = {c.text for c in campaigns if not c.series}
    if not texts:
        return [None] * len(titles)
    first = {t.split(" ")[0] for t in texts}
    max_words = max(len(t.split(" ")) for t in texts)
    out: list[str | None] = []
    for t in titles:
        hit = ngrams(words(t), max_words, first) & texts
        out.append(max(hit, key=lambda g: (len(g.split(" ")), g)) if hit else None)
    return out


def carried(shared: Sequence[str | None]) -> np.ndarray:
    """Which titles carry a recurring trigger, from `campaign_of`'s answer."""
    return np.array([c is not None for c in shared], dtype=bool)


def flagged_at(scores: np.ndarray, threshold: float, carries: np.ndarray) -> np.ndarray:
    """The scan's rule: a title is flagged at or above the threshold, or when it carries a recurring trigger."""
    return (np.asarray(scores) >= threshold) | carries


def flag(titles: Sequence[str], scores: np.ndarray, threshold: float,
         score_fn: Callable[[list[str]], np.ndarray], cfg: CampaignConfig | None = CampaignConfig(),
         hosted_fn: Callable[[list[str], list[str]], np.ndarray] | None = None
         ) -> tuple[np.ndarray, list[str | None], list[Campaign]]:
    """Flags (`flagged_at`), each title's recurring trigger (or None), and the campaigns found (with the series
    passed over, `Campaign.series`).

    `cfg=None` judges each title alone.
    """
    campaigns = [] if cfg is None else find_campaigns(titles, scores, score_fn, cfg, hosted_fn)
    shared = campaign_of(titles, campaigns)
    return flagged_at(scores, threshold, carried(shared)), shared, campaigns
