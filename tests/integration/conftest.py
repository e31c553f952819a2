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


@pytest.fixture(scope="session")
def cli_environment(settings: Settings) -> dict[str, str]:
    """The environment an operator's `atrest` command runs with against this stack:
    the emulator's standard AWS variables plus the stack's ATREST_* settings."""
    import os

    return {
        **os.environ,
        "ATREST_ACCOUNT_ID": settings.account_id,
        "ATREST_INTAKE_BUCKET": settings.intake_bucket,
        "ATREST_VAULT_BUCKET": settings.vault_bucket,
        "ATREST_KEYSTORE_TABLE": settings.keystore_table,
        "ATREST_METADATA_TABLE": settings.metadata_table,
        "ATREST_KMS_KEY_ARN": settings.kms_key_arn,
    }
