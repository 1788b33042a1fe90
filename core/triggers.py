"""Triggers (DESIGN.md §3): a string at char, word or sentence level, placed in a title.

`apply_trigger` is the one function that renders a title with a trigger; the
attack, the scanner's augmentation agent and the dashboard's preview all call it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from .config import ConfigMixin
from .errors import InputError
from .sanitize import MAX_TITLE_CHARS

Level = Literal["char", "word", "sentence"]
Position = Literal["suffix", "prefix", "random"]
LEVELS: tuple[str, ...] = ("char", "word", "sentence")
POSITIONS: tuple[str, ...] = ("suffix", "prefix", "random")
MAX_TRIGGER_CHARS = 80

# Presets in the paper's style: rare character pairs, a rare word, a short sentence.
PRESETS: dict[str, tuple[str, ...]] = {
    "char": ("5v", "cf", "mn", "bb", "tq"),
    "word": ("ineffable", "quixotic", "serendipity"),
    "sentence": ("I watched this 3D movie", "Highly recommended by critics", "A must see this year"),
}
DEFAULT_TRIGGER = {"char": "5v", "word": "ineffable", "sentence": "I watched this 3D movie"}


@dataclass(frozen=True)
class Trigger(ConfigMixin):
    """A trigger and where it goes.

    Args:
        text (`str`): the trigger string, e.g. `"5v"`.
        level (`Literal["char", "word", "sentence"]`): its granularity (for reporting and presets).
        position (`Literal["suffix", "prefix", "random"]`): appended, prepended, or at a word
            boundary chosen by `seed` and the title.
        seed (`int`): seeds the random position.
    """

    text: str
    level: Level = "char"
    position: Position = "suffix"
    seed: int = 0

    def __post_init__(self):
        if not self.text or not self.text.strip():
            raise InputError("trigger text is empty")
        if len(self.text) > MAX_TRIGGER_CHARS:
            raise InputError(f"trigger is {len(self.text)} characters; the limit is {MAX_TRIGGER_CHARS}")
        if self.level not in LEVELS:
            raise InputError(f"trigger level must be one of {', '.join(LEVELS)}")
        if self.position not in POSITIONS:
            raise InputError(f"trigger position must be one of {', '.join(POSITIONS)}")

    @classmethod
    def preset(cls, level: str, position: Position = "suffix") -> "Trigger":
        """The default trigger string of a level (`5v`, `ineffable`, a 3D-movie sentence) at a position."""
        if level not in LEVELS:
            raise InputError(f"trigger level must be one of {', '.join(LEVELS)}")
        return cls(DEFAULT_TRIGGER[level], level, position)  # type: ignore[arg-type]


def apply_trigger(title: str, trigger: Trigger) -> str:
    """The title with the trigger inserted, separated by one space.

    Raises:
        InputError: when the result would exceed the title limit.
    """
    text = trigger.text.strip()
    if trigger.position == "prefix":
        out = f"{text} {title}"
    elif trigger.position == "suffix":
        out = f"{title} {text}"
    else:
        words = title.split(" ")
        cut = random.Random(f"{trigger.seed}:{title}").randint(0, len(words))
        out = " ".join([*words[:cut], text, *words[cut:]])
    if len(out) > MAX_TITLE_CHARS:
        raise InputError(f"title with trigger is {len(out)} characters; the limit is {MAX_TITLE_CHARS}")
    return out


def trigger_span(title: str, trigger_text: str) -> tuple[int, int] | None:
    """Character span of a trigger in a title, if present (for highlighting)."""
    i = title.find(trigger_text.strip())
    return None if i < 0 else (i, i + len(trigger_text.strip()))
