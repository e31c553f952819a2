"""How far long CLI work got, on stderr (standard output carries the result, or plaintext).

On a terminal, rich progress bars redrawn in place, with rate and ETA; on a pipe or a CI
log (atrest_cli.terminal decides), a plain line every few seconds and, where the work has
a known end, a last line when it is done. Each reporter is called with how far the work
got and must be finished (`finish()`, or used as a context manager) to stop its display.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Self, TextIO

from rich.progress import (
    BarColumn, DownloadColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from atrest_cli.terminal import console_for, is_terminal, safe_text


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class _Rate(ProgressColumn):
    """How fast, in the units of the plain lines: "1.2 MiB/s" (`unit` None: bytes) or
    "1,200 objects/s" (rich's TransferSpeedColumn counts bytes in decimal units)."""

    def __init__(self, unit: str | None) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        return Text(f"{human_bytes(speed)}/s" if self.unit is None else f"{speed:,.0f} {self.unit}/s",
                    style="progress.data.speed")


def _label() -> TextColumn:
    return TextColumn("{task.description}", markup=False)  # descriptions hold data (URIs, keys): never markup


class _Reporter:
    """A rich Progress on a terminal stream (started on first use), or plain lines at most
    every `every` seconds (`quiet_start`: not before `every` seconds have passed)."""

    transient = False  # whether the bars are cleared from the terminal when finished

    def __init__(self, stream: TextIO | None, every: float, quiet_start: bool,
                 terminal: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.terminal = is_terminal(self.stream) if terminal is None else terminal
        self.every = every
        self.started = time.monotonic()
        self._last = self.started if quiet_start else float("-inf")
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def _columns(self) -> tuple[ProgressColumn, ...]:
        raise NotImplementedError

    def _show(self, description: str, completed: float, total: float | None, **fields: Any) -> tuple[Progress, TaskID]:
        """The bar for `description` brought up to date; the display starts with the first bar."""
        if self._bars is None:
            # Not redirecting stdout: `atrest decrypt -o -` writes plaintext to sys.stdout.buffer.
            self._bars = Progress(*self._columns(), console=console_for(self.stream, terminal=True),
                                  transient=self.transient, redirect_stdout=False, redirect_stderr=False)
            self._bars.start()
        task = self._tasks.get(description)
        if task is None:
            task = self._tasks[description] = self._bars.add_task(safe_text(description), total=total,
                                                                  completed=completed, **fields)
        else:
            self._bars.update(task, total=total, completed=completed, **fields)
        return self._bars, task

    def _due(self, final: bool = False) -> bool:
        """Whether a plain line is due now (always for the `final` one)."""
        now = time.monotonic()
        if not final and now - self._last < self.every:
            return False
        self._last = now
        return True

    def _rate(self, done: float) -> float:
        return done / max(time.monotonic() - self.started, 1e-6)

    def _line(self, text: str) -> None:
        self.stream.write(safe_text(text) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own, above the bars on a terminal (writing past them would garble them)."""
        if self._bars is not None:
            self._bars.console.print(Text(safe_text(text)))
        else:
            self._line(text)

    def finish(self) -> None:
        """Stop the display, leaving its last state on screen. Safe to call more than once."""
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.finish()


class ByteProgress(_Reporter):
    """Bytes done of `total` (None: unknown), e.g. a decryption: a transfer bar with speed and
    ETA on a terminal; otherwise "<label>: 1.5 MiB of 2.0 MiB (1.2 MiB/s)" every `every` s."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None, every: float = 2.0,
                 terminal: bool | None = None) -> None:
        super().__init__(stream, every, quiet_start=False, terminal=terminal)
        self.label, self.total = label, total

    def _columns(self) -> tuple[ProgressColumn, ...]:
        return (_label(), BarColumn(), DownloadColumn(binary_units=True), _Rate(None), TimeRemainingColumn())

    def __call__(self, done: int) -> None:
        if self.terminal:
            self._show(self.label, done, self.total)
        elif self._due():
            total = f" of {human_bytes(self.total)}" if self.total else ""
            self._line(f"{self.label}: {human_bytes(done)}{total} ({human_bytes(self._rate(done))}/s)")


class ListingProgress(_Reporter):
    """How many items a long scan or listing has read, per kind of item ("intake objects"):
    a spinner, the count and the rate on a terminal, cleared when done (the report that
    follows has the counts); otherwise "status: 2,000 intake objects read (950/s)" every
    `every` s, nothing for runs shorter than that."""

    transient = True

    def __init__(self, stream: TextIO | None = None, every: float = 2.0, terminal: bool | None = None) -> None:
        super().__init__(stream, every, quiet_start=True, terminal=terminal)

    def _columns(self) -> tuple[ProgressColumn, ...]:
        return (SpinnerColumn(finished_text="✓"), _label(), TextColumn("{task.completed:,.0f} read"), _Rate("items"))

    def __call__(self, what: str, count: int) -> None:
        if self.terminal:
            _bars, task = self._show(f"status: {what}", count, None)
            self._done(but=task)  # one kind at a time: the earlier ones are read
        elif self._due():
            self._line(f"status: {count:,} {what} read ({self._rate(count):,.0f}/s)")

    def _done(self, but: TaskID | None = None) -> None:
        """Listings are known to be whole only when the next begins or the work ends: a total
        equal to the count marks them finished (their spinner stops, their rate is final)."""
        if self._bars is None:
            return
        for task in self._bars.tasks:
            if task.id != but:
                self._bars.update(task.id, total=task.completed)

    def finish(self) -> None:
        self._done()
        super().finish()


class ItemProgress(_Reporter):
    """Items done of a total (re-wrapped branch keys, backfilled objects): a bar, done/total,
    `detail` (e.g. bytes and failures so far) and the ETA on a terminal; otherwise
    "<label>: 3/10 <unit>, <detail>, 0.5 <unit>/s, ETA 14 s" every `every` s and once done."""

    def __init__(self, label: str, unit: str, stream: TextIO | None = None, every: float = 2.0,
                 terminal: bool | None = None) -> None:
        super().__init__(stream, every, quiet_start=False, terminal=terminal)
        self.label, self.unit = label, unit

    def _columns(self) -> tuple[ProgressColumn, ...]:
        return (_label(), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit, markup=False),
                TextColumn("{task.fields[detail]}", markup=False), _Rate(self.unit), TimeRemainingColumn())

    def __call__(self, done: int, total: int, detail: str = "") -> None:
        if self.terminal:
            self._show(self.label, done, total, detail=safe_text(detail))
        elif self._due(final=done >= total):
            rate = self._rate(done)
            eta = (total - done) / rate if rate else 0
            extra = f", {detail}" if detail else ""
            self._line(f"{self.label}: {done}/{total} {self.unit}{extra}, {rate:.1f} {self.unit}/s, ETA {eta:.0f} s")
