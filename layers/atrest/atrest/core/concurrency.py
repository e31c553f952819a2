"""Bounded concurrency for the messages of one batch: a memory budget and a pool of
per-thread workers (docs/architecture.md, "Batches").

- `Budget`: `capacity` slots. A small object takes one slot; a large one (or one whose size
  is unknown) takes them all, so it runs alone: a batch of ten large recordings costs the
  memory of one, not ten (a 512 MB Lambda streams each through ~8 MiB parts).
- `Pool`: objects that must not be shared between threads (an `EncryptPipeline`: the MPL's
  KMS components are not thread-safe), built lazily, each checked out by one thread at a
  time, the warmest (earliest built) first so that a lone message finds warm branch key caches.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Budget:
    """A weighted semaphore with `capacity` slots. A whole-budget holder waits until every
    slot is free, and while it waits no new single slot is handed out (else a steady stream of
    small objects could keep a large one waiting for ever)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.free = capacity
        self.waiting_whole = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, whole: bool) -> Iterator[None]:
        weight = self.capacity if whole else 1
        with self._changed:
            if whole:
                self.waiting_whole += 1
                self._changed.notify_all()  # lets an observer (a test) see that it waits
                try:
                    self._changed.wait_for(lambda: self.free == self.capacity)
                finally:
                    self.waiting_whole -= 1
            else:
                self._changed.wait_for(lambda: self.free >= 1 and not self.waiting_whole)
            self.free -= weight
        try:
            yield
        finally:
            with self._changed:
                self.free += weight
                self._changed.notify_all()


class Pool(Generic[T]):
    """At most `size` items from `build`, each used by one thread at a time (`use`)."""

    def __init__(self, build: Callable[[], T], size: int, first: T | None = None) -> None:
        self._build = build
        self.size = size
        self.built: list[T] = [] if first is None else [first]
        self._idle: list[T] = list(self.built)
        self._building = 0
        self._lock = threading.Lock()
        self._configure: list[Callable[[T], None]] = []

    @contextmanager
    def use(self) -> Iterator[T]:
        with self._lock:
            item = self._idle.pop(0) if self._idle else None
            if item is None:
                if len(self.built) + self._building >= self.size:
                    raise RuntimeError(f"more than {self.size} concurrent users of a pool of {self.size}")
                self._building += 1
        if item is None:
            try:
                item = self._build()
            finally:
                with self._lock:
                    self._building -= 1
                    if item is not None:
                        self.built.append(item)
                    # Under the same lock as `each`: every configure sees the item exactly once.
                    configures = list(self._configure)
            for configure in configures:
                configure(item)
        try:
            yield item
        finally:
            with self._lock:
                # Keep the idle list in build order: the warmest item is handed out first.
                self._idle.append(item)
                order = {id(built): n for n, built in enumerate(self.built)}
                self._idle.sort(key=lambda idle: order[id(idle)])

    def each(self, configure: Callable[[T], None]) -> None:
        """Apply `configure` to every item, those built already and those built later
        (tests and demos instrument the clients of every pipeline this way)."""
        with self._lock:
            self._configure.append(configure)
            existing = list(self.built)
        for item in existing:
            configure(item)
