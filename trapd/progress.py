"""Progress of a long copy (export, offload of a 50,000-image card).

On a terminal: one line rewritten in place with \\r (done/total, images per
second, MB/s, time left), then a summary line. Not on a terminal: with
`plain=True` a line at every tenth of the work (logs stay short), else
nothing. Wrap the work like tqdm: `for frame in progress.track(frames): ...`,
or call start/advance/finish.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
MB = 1024 * 1024
_REDRAW_S = 0.2   # a terminal line at most 5 times a second


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, stream: TextIO = sys.stdout, label: str = "offload", unit: str = "images",
                 plain: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.label = label
        self.unit = unit
        self.plain = plain
        self.clock = clock
        self.tty = stream.isatty()
        self.total = 0
        self.done = 0
        self.bytes = 0
        self._started = 0.0
        self._drawn = 0.0
        self._width = 0
        self._last_tenth = -1
        self._finished = False

    def track(self, items: Iterable[T], name: Callable[[T], str] = str,
              size: Callable[[T], int] | None = None) -> list[T]:
        """`items` as a list that counts each one done when the next is asked
        for, and shows the summary when a loop over it ends (like tqdm)."""
        return _Tracked(items, self, name, size)

    def start(self, total: int) -> None:
        self.total = total
        self.done = self.bytes = 0
        self._started = self._drawn = self.clock()
        self._last_tenth = -1
        self._finished = False
        if self.plain or self.tty:
            self._write_line(f"{self.label}: {total} {self.unit} to copy")

    def advance(self, done: int, name: str, nbytes: int = 0) -> None:
        self.done = done
        self.bytes += nbytes
        if self.tty:
            now = self.clock()
            if now - self._drawn >= _REDRAW_S or done == self.total:
                self._drawn = now
                self._redraw(f"{self.label}: {done}/{self.total} {self.unit} "
                             f"{self._rates(now)} {name[:40]}")
            return
        if not self.plain:
            return
        tenth = 10 * done // max(self.total, 1)
        if tenth != self._last_tenth or done == self.total:
            self._last_tenth = tenth
            self._write_line(f"{self.label}: {done}/{self.total} {self.unit} ({name})")

    def finish(self) -> None:
        """The summary line on a terminal (once, however often called)."""
        if not self.tty or not self.total or self._finished:
            return
        self._finished = True
        elapsed = self.clock() - self._started
        self._redraw("")
        self.stream.write("\r")
        self._write_line(f"{self.label}: {self.done}/{self.total} {self.unit} in "
                         f"{_duration(elapsed)}" + (f" ({self._speed(elapsed)})" if elapsed else ""))

    def _rates(self, now: float) -> str:
        elapsed = now - self._started
        if not elapsed or not self.done:
            return ""
        left = (self.total - self.done) * elapsed / self.done
        return f"{self._speed(elapsed)}, ETA {_duration(left)}"

    def _speed(self, elapsed: float) -> str:
        text = f"{self.done / elapsed:.1f} {self.unit}/s"
        return text + (f", {self.bytes / MB / elapsed:.1f} MB/s" if self.bytes else "")

    def _redraw(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class _Tracked(list):
    """A list (len, indexing, truth as usual) whose iteration drives a Progress."""

    def __init__(self, items: Iterable[T], progress: Progress, name: Callable[[T], str],
                 size: Callable[[T], int] | None) -> None:
        super().__init__(items)
        self._progress, self._name, self._size = progress, name, size

    def __iter__(self) -> Iterator[T]:
        progress = self._progress
        progress.start(len(self))
        try:
            for done, item in enumerate(super().__iter__(), 1):
                yield item
                progress.advance(done, self._name(item), self._size(item) if self._size else 0)
        finally:
            progress.finish()
