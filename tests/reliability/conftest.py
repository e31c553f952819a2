"""Fixtures for the fault suite: processes of their own for work that must run at once, and
the functions' logs. The stack under test and its `settings` are every directory's
(tests/stack_fixtures.py).

Concurrency uses processes (spawn), never threads: the MPL's KMS components are not
thread-safe, and a Lambda function's instances are separate processes too.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterator

import pytest

from targets import Target


@pytest.fixture(scope="session")
def worker_processes(target: Target) -> Iterator[ProcessPoolExecutor]:
    """Three spawned processes (each like one warm Lambda instance), started once per session.
    They inherit the target's AWS variables (the emulator's on the local stack) from
    os.environ at spawn time."""
    with ProcessPoolExecutor(max_workers=3, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture
def function_logs(clean_stack: Any) -> Iterator[io.StringIO]:
    """Everything the functions log (Powertools JSON lines) while the test runs.

    Powertools binds its handler to the stdout of the first import; point it here for the
    test. A Runner built with `function_stdout=` this buffer covers a first import too.
    """
    captured = io.StringIO()
    handlers = [h for h in logging.getLogger("atrest").handlers if isinstance(h, logging.StreamHandler)]
    previous = [h.stream for h in handlers]
    for handler in handlers:  # not setStream(): it flushes the old stream, which may be closed by now
        handler.stream = captured
    try:
        yield captured
    finally:
        for handler, stream in zip(handlers, previous):
            handler.stream = stream
        for handler in logging.getLogger("atrest").handlers:  # created during the test, bound to our buffer
            if isinstance(handler, logging.StreamHandler) and handler.stream is captured:
                handler.stream = sys.stdout
