"""Progress reporting for long work: one interface, a console bar for the CLI, a sink for jobs."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable


class Cancelled(Exception):
    """Raised inside long work when its job was cancelled."""


class Progress:
    """Receives (done, total, message) updates; `check()` raises `Cancelled` when asked to stop.

    Subclasses override `emit`. The base class keeps the start time so every
    subclass can show an ETA from the same arithmetic.
    """

    def __init__(self, cancel: threading.Event | None = None):
        self.cancel = cancel or threading.Event()
        self.start = time.monotonic()
        self.last_message = ""

    def update(self, done: float, total: float | None = None, message: str = "") -> None:
        self.check()
        if message:
            self.last_message = message
        self.emit(done, total, self.last_message, self.eta(done, total))

    def phase(self, message: str) -> None:
        """Start a new phase: the ETA restarts from here."""
        self.start = time.monotonic()
        self.update(0, None, message)

    def eta(self, done: float, total: float | None) -> float | None:
        if not total or done <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed * (total - done) / done

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled by the user")

    def emit(self, done: float, total: float | None, message: str, eta: float | None) -> None:
        """Draw or store one update; the base class discards it."""


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class ConsoleProgress(Progress):
    """A one-line bar on stderr with counts and ETA, redrawn at most 5 times a second."""

    def __init__(self, stream=None, width: int = 30):
        super().__init__()
        self.stream = stream or sys.stderr
        self.width = width
        self._last_draw = 0.0
        self._last_msg = ""

    def emit(self, done, total, message, eta):
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - self._last_draw < 0.2 and not finished and message == self._last_msg:
            return
        self._last_draw, self._last_msg = now, message
        if total:
            filled = int(self.width * min(done / total, 1.0))
            bar = "#" * filled + "." * (self.width - filled)
            line = f"\r[{bar}] {int(done)}/{int(total)} ETA {format_eta(eta)} {message[:60]}"
        else:
            line = f"\r{message[:90]}"
        self.stream.write(line.ljust(110))
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
        self.fn(done, total, message, eta)
