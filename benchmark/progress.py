"""Progress of long commands: rich bars on a terminal, plain lines anywhere else.

When stderr is not a terminal (a log file, CI, a pipe), a line goes to stderr whenever the count moves and at
least every `HEARTBEAT` seconds in between: what is done of how many, the time spent and an estimate of what
is left. Nothing goes to stdout, so `--json` output stays machine-readable.
"""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bars, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

HEARTBEAT = 30.0
"""The longest a piped long command stays silent, in seconds."""


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """`update(done, total)` as work finishes; `log(text)` for a line of its own. A context manager.

    `estimate` (seconds for the whole) counts down until an item finishes; after that, what is left is set each
    time an item finishes, at the pace of the items finished since the start, and counts down in between. The
    first update gives what was done before (a resumed build), which does not count towards the pace."""

    def __init__(self, what: str, items: str, estimate: float | None = None, stream: TextIO | None = None,
                 heartbeat: float = HEARTBEAT) -> None:
        self.what, self.items, self.estimate, self.heartbeat = what, items, estimate, heartbeat
        self.stream = stream or sys.stderr
        self.done, self.total, self._first = 0, None, None
        self._start = time.monotonic()
        self._end: float | None = None
        """When the work should end, as of the last item that finished."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bars: Bars | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        if self.estimate is not None:
            self._end = self._start + self.estimate
        if self.stream.isatty():
            self._bars = Bars(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                              TimeRemainingColumn(), console=Console(file=self.stream))
            self._bars.__enter__()
            self._task = self._bars.add_task(self.what, total=None)
        else:
            self._line()
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._bars:
            self._bars.__exit__(kind, error, trace)

    def update(self, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if self._first is None:
                self._first = done  # what was done before this command (a resumed build)
            moved = (done, total) != (self.done, self.total)
            self.done, self.total = done, total
            if done > self._first:
                self._end = now + (now - self._start) / (done - self._first) * (total - done)
        if self._bars:
            self._bars.update(self._task, completed=done, total=total)
        elif moved:
            self._line()

    def log(self, text: str) -> None:
        if self._bars:
            self._bars.console.print(text, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def left(self) -> float | None:
        """Seconds still to go, as far as can be told."""
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    def _line(self) -> None:
        left = self.left()
        count = f"{self.done}/{self.total} {self.items}" if self.total is not None else "starting"
        print(f"[dab] {self.what}: {count}, {clock(time.monotonic() - self._start)} elapsed"
              + ("" if left is None else f", about {clock(left)} left"), file=self.stream, flush=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self._line()
