"""The small stack of local_stack_fixture/ for the runner's own tests (test_local_runner.py,
test_local_streams.py): handlers that record what they receive and fail on demand, every
event source the runner supports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from atrest_cli.local.stack import empty_stack, provision

FIXTURE_TEMPLATE = Path(__file__).resolve().parent / "local_stack_fixture" / "template.yaml"


@pytest.fixture(scope="module")
def fixture_stack(emulator: Any) -> Any:
    return provision(FIXTURE_TEMPLATE, emulator, stack_name="runnertest")


@pytest.fixture
def stack(fixture_stack: Any, emulator: Any) -> Any:
    """The fixture stack emptied: every object version, item and message deleted."""
    empty_stack(fixture_stack, emulator)
    return fixture_stack
