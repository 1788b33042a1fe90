"""The scanner's training data (DESIGN.md §4): the domain's titles (No), the same titles with the augmentation
agent's synthetic triggers (Yes), and hard negatives — natural variants such as sequels, years, subtitles,
foreign articles and numbers (No) — so the scanner learns the trigger, not oddness in general."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import InputError

from .agent import SyntheticTrigger
from .scanner import MAX_SCAN_CHARS, ScannerConfig

_YEAR_END = re.compile(r"\s*\((\d{4})\)\s*$")
_ARTICLES_PREFIX = ("La ", "Le ", "Les ", "Die ", "Der ", "Das ", "El ", "Il ", "Lo ", "L'", "O ", "Os ")
_ARTICLES_SUFFIX = (", The", ", A", ", La", ", Le", ", Les", ", Il", ", Die", ", El")
_SEQUELS = (" 2", " II", " III", " 3", " Part II", " Part 2", ": Part One", " IV", " Returns", " 2: The Sequel")
_NUMBER_WORDS = ("2000", "101", "3", "1", "12", "1941", "007", "7", "9 1/2", "24")


def _insert_before_year(title: str, text: str) -> str:
    m = _YEAR_END.search(title)
    return f"{title[:m.start()]}{text}{title[m.start():]}" if m else f"{title}{text}"


def hard_negative(title: str, rng: random.Random, vocab: Sequence[str]) -> str:
    """A natural variant of a title that is not poisoned: a sequel, a year, a subtitle, an article,
    a number or an alternative title in parentheses, made of words from the domain's own titles."""
    kind = rng.choice(("sequel", "year", "subtitle", "article", "number", "aka"))
    words = [rng.choice(vocab) for _ in range(rng.randint(1, 4))] if vocab else ["Night"]
    if kind == "sequel":
        return _insert_before_year(title, rng.choice(_SEQUELS))
    if kind == "year":
        year = f"({rng.randint(1920, 2025)})"
        m = _YEAR_END.search(title)
        return f"{title[:m.start()]} {year}" if m else f"{title} {year}"
    if kind == "subtitle":
        return _insert_before_year(title, ": " + " ".join(w.capitalize() for w in words))
    if kind == "article":
        if rng.random() < 0.5:
            return rng.choice(_ARTICLES_PREFIX) + title
        return _insert_before_year(title, rng.choice(_ARTICLES_SUFFIX))
    if kind == "number":
        parts = title.split(" ")
        cut = rng.randint(0, len(parts))
        return " ".join([*parts[:cut], rng.choice(_NUMBER_WORDS), *parts[cut:]])
    return _insert_before_year(title, " (" + " ".join(words) + ")")


def holdout_split(titles: Sequence[str], cfg: ScannerConfig) -> tuple[list[str], list[str], list[str], random.Random]:
    """The distinct titles a scanner trains on (a seeded sample of `max_titles`), split into held-out titles
    (the threshold's) and training titles, and the seeded generator that goes on to drive the training.

    Raises:
        InputError: fewer than 20 distinct titles.
    """
    titles = sorted({t for t in titles if t and t.strip()})
    if len(titles) < 20:
        raise InputError(f"a scanner needs at least 20 distinct titles to train on; got {len(titles)}")
    rng = random.Random(f"scanner:{cfg.seed}")
    if len(titles) > cfg.max_titles:
        titles = rng.sample(titles, cfg.max_titles)
    shuffled = titles[:]
    rng.shuffle(shuffled)
    n_hold = max(10, int(len(shuffled) * cfg.holdout_frac))
    return titles, shuffled[:n_hold], shuffled[n_hold:], rng


def title_vocab(titles: Sequence[str]) -> list[str]:
    """Words of the domain's titles (letters only, 3+ chars) for hard negatives."""
    words = {w for t in titles for w in re.findall(r"[A-Za-z][a-z]{2,}", t)}
    return sorted(words)


# -- examples ----------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One training or probe example: the text scored and its label (True = poisoned)."""

    title: str
    label: bool
    kind: str  # clean, triggered, hard


def triggered_examples(titles: Sequence[str], triggers: Sequence[SyntheticTrigger], per_title: int,
                       rng: random.Random, positions: Sequence[str] = ()) -> list[Example]:
    """`per_title` triggered copies of each title; with `positions`, every use of a trigger string
    draws its own position, so each string is seen at the start, the end and inside titles."""
    out = []
    for t in titles:
        for _ in range(per_title):
            trig = triggers[rng.randrange(len(triggers))]
            if positions:
                trig = trig.placed(rng.choice(positions), rng)
            try:
                out.append(Example(trig.render(t, seed=rng.randrange(1 << 30))[:MAX_SCAN_CHARS], True, trig.family))
            except InputError:
                continue
    return out


def negative_examples(titles: Sequence[str], hard_per_title: int, vocab: Sequence[str],
                      rng: random.Random) -> list[Example]:
    """Clean titles plus natural variants of them (hard negatives), so an odd-but-clean word is not a trigger."""
    out = [Example(t, False, "clean") for t in titles]
    for t in titles:
        out += [Example(hard_negative(t, rng, vocab)[:MAX_SCAN_CHARS], False, "hard") for _ in range(hard_per_title)]
    return out


