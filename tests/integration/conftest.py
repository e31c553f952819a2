"""Fixtures for the encrypt pipeline's integration tests, on the stack of template.yaml
(see tests/conftest.py for the emulator and the stack)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from atrest.deployment import settings_from_outputs
from atrest.settings import Settings


@pytest.fixture(scope="session")
def settings(local_stack: Any) -> Settings:
    """The settings the deployed functions would have, from the stack's outputs."""
    return settings_from_outputs(local_stack.outputs, local_stack.account_id, local_stack.parameters)


@pytest.fixture(scope="session")
def encrypt_function(local_stack: Any, emulator: Any) -> Any:
    """EncryptObjectFunction as Lambda runs it: its module, its template environment, one cold start."""
    from atrest.local.lambda_runtime import InProcessFunction

    return InProcessFunction(local_stack.function("EncryptObjectFunction"), emulator.environment())


@pytest.fixture
def encrypt_handler(encrypt_function: Any) -> Callable[[Any], Any]:
    """Invoke the handler with an event; returns its response (raises if the invocation failed)."""

    def invoke(event: Any) -> Any:
        invocation = encrypt_function.invoke(event)
        assert invocation.succeeded, invocation.error
        return invocation.response

    return invoke
