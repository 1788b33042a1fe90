"""Unicode hygiene on real catalogs: clean titles stay clean, each disguise family is caught and explained."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.data import builtin as datasets
from core.pscanner.unicode_hygiene import (
    SUSPICIOUS_SCORE,
    UNUSUAL_SCORE,
    Finding,
    catalog_profile,
    findings,
    hygiene_scores,
    in_flagged_range,
    kind_counts,
    suspicious_findings,
)
from core.sanitize import clean_title
from tests.conftest import require_shared


@pytest.fixture(scope="module")
def ml100k_titles(ml100k_store) -> list[str]:
    return ml100k_store.load_items("ml-100k")["title"].tolist()


def kinds(title: str) -> list[str]:
    return [f.kind for f in findings(title)]


def test_ml100k_titles_stay_clean(ml100k_titles):
    assert len(ml100k_titles) == 1682
    with_findings = [t for t in ml100k_titles if findings(t)]
    scores, reasons = hygiene_scores(ml100k_titles)
    flagged = [(t, r) for t, s, r in zip(ml100k_titles, scores, reasons) if s > 0]
    print(f"ml-100k: {len(with_findings)} titles with findings {with_findings}, {len(flagged)} flagged {flagged}")
    assert len(with_findings) <= 2 and len(flagged) <= 2
    assert all(r == "" for s, r in zip(scores, reasons) if s == 0)


@pytest.mark.parametrize("title", ["Amélie (2001)", "Æon Flux (2005)", "Señor Droopy (1949)", "Björk",
                                   "Амели (2001)", "Ляпис Трубецкой", "千と千尋の神隠し (2001)", "ドラゴンボールZ",
                                   "Nº1 Crush", "ＦＩＮＡＬ ＦＡＮＴＡＳＹ", "می\u200cخواهم", "Love ❤️ Actually",
                                   "👨\u200d👩\u200d👧 Family", "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063"
                                   "\U000e0074\U000e007f Scotland", "葛\U000e0100城", "Toy Story 2 (1999)"])
def test_legitimate_titles_have_no_suspicious_finding(title):
    """Accents, whole titles in one non-Latin script, Japanese mixing kana, Han and Latin, joiners that a
    script or an emoji sequence needs, an ideographic variation selector."""
    assert [f for f in findings(title) if f.kind not in ("emoji", "symbol")] == []


def test_zero_width_inside_a_word_is_invisible():
    title = "Toy\u200bStory (1995)"
    (f,) = findings(title)
    assert (f.kind, f.start, f.end, f.text) == ("invisible", 3, 4, "\u200b")
    assert f.explanation == "contains U+200B ZERO WIDTH SPACE"
    for hidden in ("\u200d", "\u200c", "\u2060", "\ufeff", "\u00ad", "\U000e0041"):
        assert kinds(f"Toy{hidden}Story") == ["invisible"], hex(ord(hidden))
    assert kinds("Toy\ufe0f Story") == ["invisible"]  # a variation selector after a plain letter
    run = findings("Toy Story\U000e0048\U000e0049")
    assert len(run) == 1 and run[0].explanation.endswith("(+1 more)")  # a run of tag characters, reported once


def test_bidi_controls_are_found():
    for control in ("\u202e", "\u202a", "\u2066", "\u2069", "\u200f"):
        (f,) = findings(f"Toy Story{control} (1995)")
        assert f.kind == "bidi" and f.text == control
    assert "RIGHT-TO-LEFT OVERRIDE" in findings("Toy\u202eStory")[0].explanation


def test_look_alike_letters_inside_a_latin_word():
    (f,) = findings("Tоy Story (1995)")  # Cyrillic о
    assert (f.kind, f.text, f.start, f.end) == ("confusable", "Tоy", 0, 3)
    assert f.explanation == "word 'Tоy' mixes Latin and Cyrillic (о U+043E looks like o)"
    (g,) = findings("Star Wαrs (1977)")  # Greek alpha
    assert g.kind == "confusable" and "Greek" in g.explanation and "looks like a" in g.explanation
    (m,) = findings("Tфy Story")  # Cyrillic ef: another script, but no Latin look-alike
    assert m.kind == "mixed_script" and "ф U+0444" in m.explanation
    (b,) = findings("T𝐨y Story")  # mathematical bold o among plain letters
    assert b.kind == "confusable" and "looks like o" in b.explanation
    (w,) = findings("Тоу Story (1995)")  # a whole Cyrillic word that reads as Latin "Toy"
    assert w.kind == "confusable" and w.explanation.endswith("look like Latin 'Toy'")


def test_an_emoji_unusual_for_the_catalog(ml100k_titles):
    profile = catalog_profile(ml100k_titles)
    title = "Toy Story (1995) 🔥"
    assert kinds(title) == ["emoji"]
    (found,) = suspicious_findings([title], profile)
    assert found[0].explanation == "emoji 🔥 (fire), in 0 of 1,682 titles"
    scores, reasons = hygiene_scores([title, "Toy Story (1995)"], profile)
    assert scores.tolist() == [UNUSUAL_SCORE, 0.0] and reasons[1] == ""


def test_symbols_common_in_the_catalog_are_not_unusual():
    """Steam-like: ™ on every tenth title is the catalog's habit, a lone ★ is not."""
    titles = [f"Game {i}™" if i % 10 == 0 else f"Game {i}" for i in range(300)] + ["Star ★ Game"]
    scores, reasons = hygiene_scores(titles)
    assert scores[0] == 0.0 and scores[-1] == UNUSUAL_SCORE and "U+2605 BLACK STAR" in reasons[-1]
    assert int((scores > 0).sum()) == 1


def test_an_emoji_on_three_titles_of_a_small_catalog_is_unusual_and_a_symbol_on_two_is_a_habit():
    """50 titles: an emoji an attacker put on 3 of them is 6 % of the catalog, above `RARE_SHARE`, and still
    unusual; the same emoji on 4 titles, or ™ on 2 titles, is the catalog's own habit."""
    plain = [f"Game {i}" for i in range(44)]
    for n_emoji, flagged in ((3, True), (4, False)):
        titles = plain + [f"🤷🟡 Game {i}" for i in range(n_emoji)] + ["Quest™ 1", "Quest™ 2"]
        scores, reasons = hygiene_scores(titles)
        assert (scores[44:44 + n_emoji] > 0).all() == flagged and not (scores[44 + n_emoji:] > 0).any()
        assert not flagged or f"in {n_emoji} of {len(titles)} titles" in reasons[44]


def test_scores_reasons_and_counts():
    titles = ["Toy\u200bStory", "Tоy Story", "Toy Story", "Toy Story 🎬"]
    found = suspicious_findings(titles)
    scores, reasons = hygiene_scores(titles)
    assert np.all((scores >= 0) & (scores <= 1))
    assert scores.tolist() == [SUSPICIOUS_SCORE, SUSPICIOUS_SCORE, 0.0, UNUSUAL_SCORE]
    assert reasons[0] == "contains U+200B ZERO WIDTH SPACE" and reasons[2] == ""
    counts = kind_counts(found)
    assert counts["invisible"] == counts["confusable"] == counts["emoji"] == 1 and counts["bidi"] == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0][0].kind = "bidi"
    assert isinstance(found[0][0], Finding)


def test_lastfm_mixed_script_rule_is_per_word():
    """Artist names fully in Cyrillic, Japanese or Korean are not mixed-script; only words that mix are."""
    folder = require_shared("lastfm-2k")
    items, _, _ = datasets.parse("lastfm-2k", folder)
    titles = [clean_title(t) for t in items["title"]]
    found = suspicious_findings(titles)
    mixed = [t for t, fs in zip(titles, found) if any(f.kind in ("mixed_script", "confusable") for f in fs)]
    non_latin = [t for t in titles if not t.isascii()]
    print(f"lastfm-2k: {len(mixed)} of {len(titles)} names with mixed-script or look-alike words: {mixed}")
    assert len(non_latin) > 500 and len(mixed) < 40
    assert "Ляпис Трубецкой" in titles and "Ляпис Трубецкой" not in mixed


def test_findings_move_into_the_flagged_range_in_their_order():
    raised = in_flagged_range(np.array([0.0, UNUSUAL_SCORE, SUSPICIOUS_SCORE]), threshold=0.95)
    assert raised[0] == 0 and 0.95 < raised[1] < raised[2] <= 1.0
