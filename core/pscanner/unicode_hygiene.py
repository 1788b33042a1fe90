"""Unicode hygiene: trigger disguises that a title shows without any learning (issue 17, docs/SCANNER.md).

An attacker can hide a trigger where a reader sees nothing or sees ordinary letters:

- `invisible`: default-ignorable code points (zero-width space and joiners, word joiner, BOM, soft hyphen,
  tag characters, variation selectors where no emoji or ideograph takes them) and control characters;
- `bidi`: bidirectional controls (embeddings, overrides, isolates and marks) that reorder what is shown;
- `mixed_script`: a word whose letters come from scripts that are not written together (UTS #39 "highly
  restrictive": one script, or Latin with Han and Japanese kana, with Han and Bopomofo, or with Han and
  Hangul);
- `confusable`: the same, where a letter looks like one of the word's main script ("Tоy" with Cyrillic о),
  a compatibility letter (mathematical bold, fullwidth) among plain ones, or a whole word of another
  script spelling Latin look-alikes inside a Latin title;
- `emoji` and `symbol`: pictographs and non-ASCII symbols, suspicious only where they are rare in the
  catalog (`catalog_profile`): steam titles carry ™ and ® everywhere, a movie catalog never.

Property data comes from maintained packages, not from lists typed here: `regex` (Unicode properties
Default_Ignorable_Code_Point and Bidi_Control), `confusable_homoglyphs` (UTS #39 confusables and scripts)
and `emoji` (Unicode emoji sequences). ASCII punctuation and symbols are never findings: a trigger written
in them is what the learned scanner is for.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import emoji
import numpy as np
import regex
from confusable_homoglyphs import categories
from confusable_homoglyphs.confusables import confusables_data

Kind = Literal["invisible", "bidi", "mixed_script", "confusable", "emoji", "symbol"]
KINDS: tuple[Kind, ...] = ("invisible", "bidi", "mixed_script", "confusable", "emoji", "symbol")
ALWAYS_SUSPICIOUS: frozenset[str] = frozenset({"invisible", "bidi", "mixed_script", "confusable"})
SUSPICIOUS_SCORE = 0.99  # hidden characters and spoofed words: no legitimate title needs them
UNUSUAL_SCORE = 0.9  # a rare emoji or symbol: odd for this catalog, but a person may have typed it
RARE_SHARE = 0.005  # an emoji or symbol in fewer than this share of the catalog's titles is unusual
# an emoji in at most this many titles is unusual whatever the catalog's size: an attacker's emoji on 2-3 titles of a
# 50-title upload is 4-6 % of it (E65 in docs/SCANNER.md); no clean 50- to 400-title sample of the catalogs here gains
# a flag from it, while a symbol (™, ★) on 2 titles of a small game catalog is a habit
RARE_EMOJI_TITLES = 3
MAX_REASONS = 3  # explanations shown per title; the rest are counted

_HIDDEN = regex.compile(r"[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\p{Cc}]")
_BIDI = regex.compile(r"\p{Bidi_Control}")
_VARIATION_SELECTOR = regex.compile(r"\p{Variation_Selector}")
_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_JOINERS = frozenset("\u200c\u200d")
# Scripts whose letters join cursively, where ZWNJ legitimately breaks a join (RFC 5892, Appendix A.1).
_JOINING_SCRIPTS = frozenset({"ARABIC", "SYRIAC", "NKO", "MONGOLIAN", "MANDAIC", "MANICHAEAN", "PHAGS_PA",
                              "PSALTER_PAHLAVI", "ADLAM", "HANIFI_ROHINGYA", "SOGDIAN", "OLD_UYGHUR"})
# Script combinations that UTS #39 allows inside one identifier (section 5.2, "highly restrictive").
_WRITTEN_TOGETHER = (frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}), frozenset({"LATIN", "HAN", "BOPOMOFO"}),
                     frozenset({"LATIN", "HAN", "HANGUL"}))
_NO_SCRIPT = frozenset({"COMMON", "INHERITED", "Unknown"})
_UNQUALIFIED = emoji.STATUS["unqualified"]
_STYLE_TAGS = frozenset({"<font>", "<wide>", "<narrow>"})  # decomposition tags of styled letters
_VIRAMA = 9  # canonical combining class of a virama, after which ZWJ/ZWNJ shape Indic conjuncts


@dataclass(frozen=True)
class Finding:
    """One suspicious stretch of a title.

    Args:
        kind (`Kind`): invisible, bidi, mixed_script, confusable, emoji or symbol.
        start (`int`): offset of the first character in the title.
        end (`int`): offset after the last character.
        text (`str`): `title[start:end]`.
        explanation (`str`): for a person, e.g. "contains U+200B ZERO WIDTH SPACE".
    """

    kind: Kind
    start: int
    end: int
    text: str
    explanation: str


@dataclass(frozen=True)
class Profile:
    """How many of a catalog's titles carry each emoji and non-ASCII symbol (read only).

    Args:
        n_titles (`int`): titles in the catalog.
        titles_with (`Mapping[str, int]`): emoji or symbol text -> number of titles carrying it.
    """

    n_titles: int
    titles_with: Mapping[str, int]

    def is_unusual(self, text: str, kind: Kind) -> bool:
        """Rare in this catalog: under `RARE_SHARE` of its titles, or in one title only (small catalogs), or an
        emoji in at most `RARE_EMOJI_TITLES`."""
        count = self.titles_with.get(text, 0)
        return count <= (RARE_EMOJI_TITLES if kind == "emoji" else 1) or count < RARE_SHARE * self.n_titles


# -- single characters ---------------------------------------------------------------------
def _code(ch: str) -> str:
    """`U+200B ZERO WIDTH SPACE`: the code point a person can look up, with its name when it has one."""
    name = unicodedata.name(ch, "") or ("<control>" if unicodedata.category(ch) == "Cc" else "")
    return f"U+{ord(ch):04X} {name}".rstrip()


def _script(ch: str) -> str | None:
    """The script of a letter; None for characters shared by all scripts (digits, marks, punctuation)."""
    alias = categories.alias(ch)
    return None if alias in _NO_SCRIPT else alias


def _script_name(script: str) -> str:
    return script.replace("_", " ").title()


def _lookalike(ch: str, script: str, ascii_only: bool = False) -> str | None:
    """A letter of `script` that `ch` is visually confusable with (UTS #39), ASCII preferred."""
    found = [h["c"] for h in confusables_data.get(ch, ()) if all(categories.alias(c) == script for c in h["c"])]
    plain = [c for c in found if c.isascii()]
    return (plain or ([] if ascii_only else found) or [None])[0]


def _legit_hidden(title: str, i: int, emoji_at: set[int]) -> bool:
    """Format characters that a script or an emoji needs: joiners in Indic conjuncts and cursive scripts,
    variation selectors after an emoji-capable character or an ideograph, anything inside an emoji sequence."""
    ch = title[i]
    if i in emoji_at:
        return True
    prev = title[i - 1] if i else ""
    if ch in _JOINERS:
        nxt = title[i + 1] if i + 1 < len(title) else ""
        if prev and unicodedata.combining(prev) == _VIRAMA:
            return True
        joined = bool(prev and nxt) and _script(prev) == _script(nxt)
        return ch == "\u200c" and joined and _script(prev) in _JOINING_SCRIPTS
    if _VARIATION_SELECTOR.match(ch):
        return bool(prev) and (prev in emoji.EMOJI_DATA or _script(prev) == "HAN")
    return False


# -- findings per family -------------------------------------------------------------------
def _hidden(title: str, emoji_at: set[int]) -> list[Finding]:
    """Invisible and bidi characters, a run of the same kind reported once."""
    out: list[Finding] = []
    for m in _HIDDEN.finditer(title):
        i = m.start()
        if _legit_hidden(title, i, emoji_at):
            continue
        kind: Kind = "bidi" if _BIDI.match(title[i]) else "invisible"
        last = out[-1] if out else None
        if last and last.kind == kind and last.end == i:
            out[-1] = replace(last, end=i + 1, text=last.text + title[i])
        else:
            out.append(Finding(kind, i, i + 1, title[i], ""))
    return [replace(f, explanation=_contains(f.text)) for f in out]


def _contains(run: str) -> str:
    """A run of hidden characters named by its first, e.g. "contains U+E0041 TAG LATIN CAPITAL LETTER A (+19 more)"."""
    more = f" (+{len(run) - 1} more)" if len(run) > 1 else ""
    return f"contains {_code(run[0])}{more}"


def _mixed_word(word: str, start: int) -> Finding | None:
    """A word whose letters come from scripts not written together; `confusable` when the odd letters
    look like letters of the word's main script."""
    scripts = [s for s in map(_script, word) if s]
    kinds = set(scripts)
    if len(kinds) < 2 or any(kinds <= allowed for allowed in _WRITTEN_TOGETHER):
        return None
    counts = Counter(scripts)
    main = max(kinds, key=lambda s: (counts[s], -scripts.index(s)))
    odd = list(dict.fromkeys(ch for ch in word if _script(ch) not in (None, main)))
    looks = {ch: _lookalike(ch, main, ascii_only=main == "LATIN") for ch in odd}
    notes = ", ".join(f"{ch} U+{ord(ch):04X}" + (f" looks like {looks[ch]}" if looks[ch] else "")
                      for ch in odd[:MAX_REASONS])
    others = " and ".join(_script_name(s) for s in sorted(kinds - {main}))
    kind: Kind = "confusable" if any(looks.values()) else "mixed_script"
    return Finding(kind, start, start + len(word), word,
                   f"word '{word}' mixes {_script_name(main)} and {others} ({notes})")


def _styled(ch: str) -> bool:
    """A styled form of an ASCII letter or digit (mathematical bold, fullwidth, ...), not an ordinal
    indicator or superscript, which are ordinary spelling ("Nº1")."""
    tag = unicodedata.decomposition(ch).split(" ")[0]
    plain = unicodedata.normalize("NFKC", ch)
    return tag in _STYLE_TAGS and plain.isascii() and plain.isalnum()


def _compat_letters(word: str, start: int) -> Finding | None:
    """Styled letters among plain ASCII letters of the same word ("T𝐨y"): the same word to a reader,
    another to a tokenizer. A word fully styled (a fullwidth title) is left alone."""
    compat = [ch for ch in word if _styled(ch)]
    if not compat or not any(ch.isascii() and ch.isalpha() for ch in word):
        return None
    notes = ", ".join(f"{ch} {_code(ch)} looks like {unicodedata.normalize('NFKC', ch)}"
                      for ch in list(dict.fromkeys(compat))[:MAX_REASONS])
    return Finding("confusable", start, start + len(word), word, f"word '{word}' has look-alike letters ({notes})")


def _spoofed_word(word: str, start: int) -> Finding | None:
    """A whole word of another script spelled only with letters that look like ASCII ("Тоу" in Cyrillic),
    for a title that also has a Latin word of two letters or more."""
    scripts = {s for s in map(_script, word) if s}
    if len(scripts) != 1 or scripts == {"LATIN"}:
        return None
    letters = [ch for ch in word if _script(ch)]
    looks = [_lookalike(ch, "LATIN", ascii_only=True) for ch in letters]
    if not all(looks):
        return None
    script = _script_name(scripts.pop())
    return Finding("confusable", start, start + len(word), word,
                   f"word '{word}' is {script} letters that look like Latin '{''.join(looks)}'")


def _words(title: str) -> list[Finding]:
    """Mixed-script and look-alike words; a title fully in one non-Latin script has none."""
    words = [(m.group(), m.start()) for m in _WORD.finditer(title)]
    has_latin = any(len(w) > 1 and {s for s in map(_script, w) if s} == {"LATIN"} for w, _ in words)
    out = []
    for word, start in words:
        found = (_mixed_word(word, start) or _compat_letters(word, start)
                 or (_spoofed_word(word, start) if has_latin else None))
        if found:
            out.append(found)
    return out


def _emoji_name(text: str) -> str:
    return emoji.EMOJI_DATA.get(text, {}).get("en", "").strip(":").replace("_", " ")


def _pictographs(title: str, spans: list[dict]) -> list[Finding]:
    """Emoji sequences, and non-ASCII symbols or private-use characters outside them; a text-style emoji
    character (™ ® © without the emoji selector) counts as a symbol."""
    out = []
    for span in spans:
        text, start, end = span["emoji"], span["match_start"], span["match_end"]
        if len(text) == 1 and emoji.EMOJI_DATA.get(text, {}).get("status") == _UNQUALIFIED:
            out.append(Finding("symbol", start, end, text, f"symbol {text} {_code(text)}"))
        else:
            out.append(Finding("emoji", start, end, text, f"emoji {text} ({_emoji_name(text)})"))
    taken = {i for s in spans for i in range(s["match_start"], s["match_end"])}
    for i, ch in enumerate(title):
        if i not in taken and not ch.isascii() and unicodedata.category(ch) in ("Sm", "Sc", "Sk", "So", "Co"):
            what = "private-use character" if unicodedata.category(ch) == "Co" else "symbol"
            out.append(Finding("symbol", i, i + 1, ch, f"{what} {ch} {_code(ch)}"))
    return sorted(out, key=lambda f: f.start)


def findings(title: str) -> list[Finding]:
    """Everything in a title that Unicode hygiene looks at, in title order; emoji and symbols are listed
    whether or not the catalog makes them unusual (`suspicious_findings` decides that)."""
    if title.isascii() and title.isprintable():
        return []  # the common case, and nothing to find in it
    spans = emoji.emoji_list(title)
    emoji_at = {i for s in spans for i in range(s["match_start"], s["match_end"])}
    return sorted(_hidden(title, emoji_at) + _words(title) + _pictographs(title, spans), key=lambda f: f.start)


# -- a catalog -------------------------------------------------------------------------------
def _profile(per_title: Sequence[Sequence[Finding]]) -> Profile:
    counts: Counter[str] = Counter()
    for found in per_title:
        counts.update({f.text for f in found if f.kind in ("emoji", "symbol")})
    return Profile(len(per_title), dict(counts))


def catalog_profile(titles: Iterable[str]) -> Profile:
    """Which emoji and symbols are common in this catalog, so that only rare ones count as suspicious."""
    return _profile([findings(t) for t in titles])


def suspicious_findings(titles: Sequence[str], profile: Profile | None = None) -> list[list[Finding]]:
    """Per title, the findings that count: every invisible, bidi, mixed-script and confusable one, and emoji
    or symbols unusual for the catalog (`profile`, default: these titles' own), with their rarity said.

    Args:
        titles (`Sequence[str]`): the catalog, not mutated.
        profile (`Profile`, optional): the catalog whose habits decide what is unusual.

    Returns:
        `list[list[Finding]]`: one list per title, empty for a clean title.
    """
    every = [findings(t) for t in titles]
    profile = profile or _profile(every)
    out = []
    for found in every:
        keep = []
        for f in found:
            if f.kind in ALWAYS_SUSPICIOUS:
                keep.append(f)
            elif profile.is_unusual(f.text, f.kind):
                count = profile.titles_with.get(f.text, 0)
                keep.append(replace(f, explanation=f"{f.explanation}, in {count:,} of {profile.n_titles:,} titles"))
        out.append(keep)
    return out


def summarize(per_title: Sequence[Sequence[Finding]]) -> tuple[np.ndarray, list[str]]:
    """Score and one-line reason per title from `suspicious_findings` (0 and "" for a clean title)."""
    scores = np.array([max((SUSPICIOUS_SCORE if f.kind in ALWAYS_SUSPICIOUS else UNUSUAL_SCORE for f in found),
                           default=0.0) for found in per_title], dtype=float)
    reasons = []
    for found in per_title:
        notes = list(dict.fromkeys(f.explanation for f in found))
        more = f" (+{len(notes) - MAX_REASONS} more)" if len(notes) > MAX_REASONS else ""
        reasons.append("; ".join(notes[:MAX_REASONS]) + more)
    return scores, reasons


def in_flagged_range(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Hygiene scores moved into [threshold, 1], in their order (0 stays 0): a finding flags its title whatever
    the threshold, so the title's score must rank it with the flagged ones, not below clean titles the scanner
    scores higher (on artist names or game titles the threshold sits above `UNUSUAL_SCORE`). The scan maps the
    scanner scores of a recurring trigger's carriers the same way (`core.pscanner.scan.final_scores`)."""
    return np.where(scores > 0, threshold + (1.0 - threshold) * scores, 0.0)


def kind_counts(per_title: Sequence[Sequence[Finding]]) -> dict[str, int]:
    """Findings of each kind over the catalog (every kind present, zeros included)."""
    counts = Counter(f.kind for found in per_title for f in found)
    return {k: counts.get(k, 0) for k in KINDS}


def hygiene_scores(titles: Sequence[str], profile: Profile | None = None) -> tuple[np.ndarray, list[str]]:
    """A score in [0, 1] per title (`SUSPICIOUS_SCORE` for hidden characters and spoofed words,
    `UNUSUAL_SCORE` for an emoji or symbol rare in the catalog, 0 otherwise) and its reason ("" when none)."""
    return summarize(suspicious_findings(titles, profile))
