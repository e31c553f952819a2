"""Progress and summaries for long CLI work: on stderr, redrawn in place on a terminal,
a line every few seconds otherwise (CI logs, pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class ByteProgress:
    def __init__(self, label: str, total: int | None = None, stream: TextIO = sys.stderr, every: float = 2.0) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0
        self._tty = stream.isatty()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self._tty else self.every):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-6)
        total = f" of {human_bytes(self.total)}" if self.total else ""
        text = f"{self.label}: {human_bytes(done)}{total} ({human_bytes(rate)}/s)"
        self.stream.write(("\r" + text) if self._tty else text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._tty and self._last:
            self.stream.write("\n")
            self.stream.flush()
