"""`Clock`: where "now" comes from, so that key lifetimes of hours and days can be
exercised in seconds (tests and the demo inject a `ManualClock`)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that moves only when told to: `advance(hours=25)`."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime.now(timezone.utc)
        # Whole milliseconds, the precision times are stored with, so what a test reads back compares equal.
        self._now = start.replace(microsecond=start.microsecond // 1000 * 1000)

    def now(self) -> datetime:
        return self._now

    def advance(self, **delta: float) -> datetime:
        self._now += timedelta(**delta)
        return self._now


def to_text(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z: sorts as text in the order of time."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_text(text: str) -> datetime:
    """Parse what `to_text` (or the key store's create-time, with microseconds) wrote."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
