"""Progress reporting for long work: one interface, a console bar for the CLI, a sink for jobs.

A job made of several stages (an attack: base model, clean model, poisoned model, evaluation) declares
them with `Progress.stages` and enters each with `Progress.stage`; the bar then covers the whole job and
reads like "stage 2/3: poisoned model, epoch 1/1, step 40/119, ETA 3 min overall". Without declared
stages a phase is reported on its own ("training · 12/40 · ETA 01:05"), as before.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class Cancelled(Exception):
    """Raised inside long work when its job was cancelled."""


@dataclass
class _Stage:
    """One declared stage of a job: its relative amount of work and what happened to it."""

    name: str
    weight: float
    epochs: float | None = None
    started: float | None = None  # monotonic time it was entered
    skipped: bool = False  # never entered: a later stage began first (e.g. a cached model)


class Progress:
    """Receives (done, total, message) updates; `check()` raises `Cancelled` when asked to stop.

    Subclasses override `emit`. Before each `emit`, `self.fraction` (of the whole job when stages are
    declared, else of the phase; None when unknown) and `self.label` (one line for people) are set, so
    every subclass shows the same bar, counts and ETA.
    """

    def __init__(self, cancel: threading.Event | None = None):
        self.cancel = cancel or threading.Event()
        self.start = time.monotonic()  # start of the current phase
        self.job_start = self.start
        self.last_message = ""
        self.fraction: float | None = None
        self.label = ""
        self.overall_eta: float | None = None  # seconds left in the whole job (declared stages only)
        self._plan: list[_Stage] = []
        self._current: int | None = None
        self._eta_at: tuple[float, float] | None = None  # (overall ETA in s, when it was computed)

    # -- stages -------------------------------------------------------------------------------
    def stages(self, names: Sequence[str], weights: Sequence[float] | None = None) -> None:
        """Declare the job's stages in order and enter the first; the bar and the ETA then cover them all.

        Args:
            names (`Sequence[str]`): stage names as people read them ("clean model", "evaluation").
            weights (`Sequence[float]`, *optional*): relative amounts of work (e.g. training samples, scored
                lists); future stages' time is estimated from the current stage's speed per unit of weight.
                Default: equal.
        """
        weights = list(weights) if weights is not None else [1.0] * len(names)
        if len(weights) != len(names) or not names:
            raise ValueError("stages: one weight per stage name, at least one stage")
        self._plan = [_Stage(str(n), max(float(w), 0.0)) for n, w in zip(names, weights)]
        self._current = None
        self._eta_at = None
        self.stage(self._plan[0].name)

    def stage(self, name: str, epochs: float | None = None) -> None:
        """Enter a declared stage; the declared stages it jumps over count as skipped (e.g. a cached model).

        A no-op without declared stages (the same code also runs inside jobs that declare none), and for
        the current or an earlier stage (a helper shared by several stages may announce its own).

        Args:
            name (`str`): the stage; a name not declared is added after the current one.
            epochs (`float`, *optional*): passes over the data when the stage trains a model, so the label
                can say "epoch 1/2" (a fraction of a pass shows as epoch 1/1).
        """
        if not self._plan:
            return
        after = -1 if self._current is None else self._current
        if self._current is not None and self._plan[self._current].name == name:
            self._plan[self._current].epochs = epochs or self._plan[self._current].epochs
            return
        if any(s.name == name for s in self._plan[:after + 1]):
            return
        found = next((i for i in range(after + 1, len(self._plan)) if self._plan[i].name == name), None)
        if found is None:
            self._plan.insert(after + 1, _Stage(name, self._plan[max(after, 0)].weight))
            found = after + 1
        for s in self._plan[after + 1:found]:
            s.skipped = True
        self._current = found
        current = self._plan[found]
        current.started = time.monotonic()
        current.epochs = epochs
        self.phase("")

    # -- updates ------------------------------------------------------------------------------
    def update(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report `done` of `total` in the current stage (raises `Cancelled` when the user cancelled)."""
        self.check()
        if message:
            self.last_message = message
        eta = self.eta(done, total)
        if self._current is None:
            self.fraction = min(max(done / total, 0.0), 1.0) if total else None
            self.label = describe(done, total, self.last_message, eta)
        else:
            overall = self.overall_eta = self._overall_eta(eta)
            if overall is not None:
                elapsed = time.monotonic() - self.job_start
                fraction = elapsed / (elapsed + overall) if elapsed + overall > 0 else 0.0
                self.fraction = max(self.fraction or 0.0, min(fraction, 1.0))  # a bar never moves back
            self.label = self._stage_label(done, total, overall)
        self.emit(done, total, self.last_message, eta)

    def phase(self, message: str) -> None:
        """Start a new phase: the phase's ETA restarts from here."""
        self.start = time.monotonic()
        self.last_message = message
        self.update(0, None, message)

    def eta(self, done: float, total: float | None) -> float | None:
        """Seconds left in the current phase, from its speed so far."""
        if not total or done <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed * (total - done) / done

    def _overall_eta(self, phase_eta: float | None) -> float | None:
        """Seconds left in the whole job: the current stage's rest plus the stages still to come, each
        estimated from the current stage's time per unit of weight. Between measurements the last
        estimate counts down."""
        now = time.monotonic()
        current = self._plan[self._current]
        if phase_eta is None or current.weight <= 0:
            if self._eta_at is None:
                return None
            eta, at = self._eta_at
            return max(eta - (now - at), 0.0)
        projected = (now - current.started) + phase_eta
        per_unit = projected / current.weight
        later = sum(s.weight for s in self._plan[self._current + 1:])
        eta = phase_eta + later * per_unit
        self._eta_at = (eta, now)
        return eta

    def _stage_label(self, done: float, total: float | None, overall: float | None) -> str:
        counted = [s for s in self._plan if not s.skipped]
        current = self._plan[self._current]
        parts = [f"stage {counted.index(current) + 1}/{len(counted)}: {current.name}" if len(counted) > 1
                 else current.name]
        if total:
            if current.epochs:
                n_epochs = max(1, math.ceil(current.epochs))
                per_epoch = total / current.epochs if current.epochs >= 1 else total
                epoch = min(n_epochs, int(max(done - 1, 0) // per_epoch) + 1)
                parts.append(f"epoch {epoch}/{n_epochs}, step {int(done)}/{int(total)}")
            else:
                parts.append(f"{int(done)}/{int(total)}")
        parts.append(f"ETA {human_eta(overall)} overall" if overall is not None else "ETA estimating")
        detail = self.last_message
        if detail.startswith(f"{current.name}: "):
            detail = detail[len(current.name) + 2:]
        elif detail == current.name:
            detail = ""
        return ", ".join(parts) + (f" · {detail}" if detail else "")

    def check(self) -> None:
        """Raise `Cancelled` if the user cancelled: long loops call it between steps."""
        if self.cancel.is_set():
            raise Cancelled("cancelled by the user")

    @property
    def last_stage(self) -> bool:
        """True while in the last declared stage (or when no stages are declared)."""
        return self._current is None or self._current == len(self._plan) - 1

    def emit(self, done: float, total: float | None, message: str, eta: float | None) -> None:
        """Draw or store one update; the base class discards it."""


def format_eta(seconds: float | None) -> str:
    """Seconds as mm:ss or h:mm:ss (`--:--` when unknown) for progress lines."""
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


def human_eta(seconds: float) -> str:
    """'40 s', '3 min', '1 h 05 min': how long is left, as people say it."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = int(round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def describe(done: float, total: float | None, message: str, eta: float | None) -> str:
    """One line for a phase without declared stages: 'message · 12/40 · ETA 01:05'."""
    if not total:
        return message
    return f"{message} · {int(done)}/{int(total)} · ETA {format_eta(eta)}"


class ConsoleProgress(Progress):
    """A one-line bar on stderr with counts and ETA, redrawn at most 5 times a second."""

    def __init__(self, stream=None, width: int = 30):
        super().__init__()
        self.stream = stream or sys.stderr
        self.width = width
        self._last_draw = 0.0
        self._last_msg = ""

    def emit(self, done, total, message, eta):
        """Draw one progress line on stderr, at most five times a second."""
        now = time.monotonic()
        finished = total is not None and done >= total and self.last_stage
        if now - self._last_draw < 0.2 and not finished and message == self._last_msg:
            return
        self._last_draw, self._last_msg = now, message
        if self._current is not None:
            filled = int(self.width * (self.fraction or 0.0))
            bar = "#" * filled + "." * (self.width - filled)
            line = f"\r[{bar}] {self.label[:110]}"
        elif total:
            filled = int(self.width * min(done / total, 1.0))
            bar = "#" * filled + "." * (self.width - filled)
            line = f"\r[{bar}] {int(done)}/{int(total)} ETA {format_eta(eta)} {message[:60]}"
        else:
            line = f"\r{message[:90]}"
        self.stream.write(line.ljust(150 if self._current is not None else 110))
        if finished:
            self.stream.write("\n")
        self.stream.flush()


class CallbackProgress(Progress):
    """Forwards updates to a function (used by background jobs and tests)."""

    def __init__(self, fn: Callable[[float, float | None, str, float | None], None],
                 cancel: threading.Event | None = None):
        super().__init__(cancel)
        self.fn = fn

    def emit(self, done, total, message, eta):
        """Pass the progress on to the callback (a job's store writer, a test)."""
        self.fn(done, total, message, eta)
