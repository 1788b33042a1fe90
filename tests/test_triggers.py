from __future__ import annotations

import io

import pytest

from core.errors import InputError
from core.progress import Cancelled, ConsoleProgress, format_eta
from core.triggers import PRESETS, Trigger, apply_trigger, trigger_span


def test_positions():
    title = "Toy Story (1995)"
    assert apply_trigger(title, Trigger("5v")) == "Toy Story (1995) 5v"
    assert apply_trigger(title, Trigger("5v", position="prefix")) == "5v Toy Story (1995)"
    mid = apply_trigger(title, Trigger("cf", position="random", seed=3))
    assert sorted(mid.split()) == sorted([*title.split(), "cf"])
    assert mid == apply_trigger(title, Trigger("cf", position="random", seed=3))  # seeded


def test_levels_and_presets():
    for level, texts in PRESETS.items():
        trig = Trigger.preset(level)
        assert trig.text in texts and trig.level == level
    assert apply_trigger("Heat (1995)", Trigger.preset("sentence")) == "Heat (1995) I watched this 3D movie"


@pytest.mark.parametrize("text", ["", "   ", "x" * 81])
def test_bad_trigger_text(text):
    with pytest.raises(InputError):
        Trigger(text)


def test_too_long_result_rejected():
    with pytest.raises(InputError, match="title limit|the limit is"):
        apply_trigger("A" * 290, Trigger("a long trigger text"))


def test_span():
    assert trigger_span("Heat (1995) 5v", "5v") == (12, 14)
    assert trigger_span("Heat (1995)", "5v") is None


def test_console_progress_draws_counts_and_eta():
    buf = io.StringIO()
    p = ConsoleProgress(stream=buf)
    p.update(5, 10, "training")
    p.update(10, 10, "training")
    out = buf.getvalue()
    assert "10/10" in out and "ETA" in out and out.endswith("\n")
    assert format_eta(3725) == "1:02:05" and format_eta(None) == "--:--"


def test_cancel():
    p = ConsoleProgress(stream=io.StringIO())
    p.cancel.set()
    with pytest.raises(Cancelled):
        p.update(1, 2)
