"""A one-line progress bar on stderr for long loops (alignment, embedding, evaluation).

Shown only when stderr is a terminal, the loop has more than one step, no other bar is showing
(an inner loop stays silent inside an outer one) and progress is not switched off
(`set_enabled(False)`, the CLI's ``--quiet``), so logs, pipes and tests stay clean.
No dependency: a line ``desc  120/4814 (2%)  31.2/s`` redrawn with a carriage return.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

_enabled = True
_showing: Progress | None = None
REFRESH_SECONDS = 0.1


def set_enabled(enabled: bool) -> None:
    """Switch every progress bar of this process on (when stderr is a TTY) or off."""
    global _enabled
    _enabled = bool(enabled)


class Progress:
    """Counts steps of a loop of `total` steps and redraws its line at most every 0.1 s.

    `stream` defaults to ``sys.stderr``; `active` is False when the stream is not a TTY,
    progress is switched off, ``total <= 1`` or another bar is showing. Use as a context
    manager or call `close`.
    """

    def __init__(self, total: int, desc: str = "", stream: TextIO | None = None):
        global _showing
        self.total, self.desc, self.done = int(total), desc, 0
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        tty = bool(isatty and isatty())
        self.active = _enabled and self.total > 1 and tty and _showing is None
        if self.active:
            _showing = self
        self._start = self._drawn = time.perf_counter()

    def update(self, steps: int = 1) -> None:
        self.done += steps
        now = time.perf_counter()
        if self.active and (now - self._drawn >= REFRESH_SECONDS or self.done >= self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self._start, 1e-9)
        percent = 100 * self.done // max(self.total, 1)
        line = f"{self.desc}  {self.done}/{self.total} ({percent}%)  {rate:.1f}/s"
        self.stream.write(f"\r{line}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        global _showing
        if self.active:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
            self.active, _showing = False, None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], total: int, desc: str = "", weight=lambda item: 1) -> Iterator[T]:
    """Yield `items`, advancing a `Progress` of `total` by ``weight(item)`` after each one."""
    with Progress(total, desc) as bar:
        for item in items:
            yield item
            bar.update(weight(item))
