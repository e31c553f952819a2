"""Fixtures for the encrypt pipeline's integration tests, on the stack of template.yaml
(see tests/conftest.py for the emulator and the stack)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from atrest.core.settings import Settings
from atrest_cli.operations.deployment import settings_from_outputs


def cli_on_state_file(state: Any, state_file: Any, capsys: Any) -> Callable[..., tuple[int, str, str]]:
    """`run(*args)`: `atrest ARGS... --state-file <state_file>` as an operator would run it (the
    stack read from its state file, written from `state`), in this process; returns (exit
    code, stdout, stderr). `run.state_file` is the file, for tests that read what it switched."""
    from atrest_cli.main import main

    written = state.write(state_file)

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--state-file", str(written)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    run.state_file = written  # type: ignore[attr-defined]
    return run


@pytest.fixture
def cli_on(tmp_path: Any, capsys: Any) -> Callable[[Any], Callable[..., tuple[int, str, str]]]:
    """`cli_on(state)`: the CLI on a copy of that local stack's state file (`cli_on_state_file`)."""
    return lambda state: cli_on_state_file(state, tmp_path / "local-stack.json", capsys)


@pytest.fixture
def atrest(local_stack: Any, cli_on: Any) -> Callable[..., tuple[int, str, str]]:
    """The CLI on the test stack: `atrest("status", "--json")` -> (exit code, stdout, stderr)."""
    return cli_on(local_stack)


def _clone_table(dynamodb: Any, source: str, name: str) -> None:
    table = dynamodb.describe_table(TableName=source)["Table"]
    request: dict[str, Any] = {
        "TableName": name, "KeySchema": table["KeySchema"], "AttributeDefinitions": table["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if table.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = [
            {k: index[k] for k in ("IndexName", "KeySchema", "Projection")} for index in table["GlobalSecondaryIndexes"]
        ]
    dynamodb.create_table(**request)


@pytest.fixture(scope="session")
def clone_table() -> Callable[[Any, str, str], None]:
    """`clone_table(dynamodb, source, name)`: a new table with the stack table's schema and
    indexes, for tests that must not touch the branch keys other tests share."""
    return _clone_table


@pytest.fixture
def key_tables(settings: Settings) -> Callable[[str], tuple[str, str]]:
    """`key_tables(prefix)`: a fresh key store and metadata table with the stack's schemas
    (`<prefix>-keystore-<suffix>`, `<prefix>-metadata-<suffix>`), for tests that plant or
    move branch keys without touching the ones other tests share; their names."""
    import uuid

    import boto3

    def make(prefix: str) -> tuple[str, str]:
        dynamodb, suffix = boto3.client("dynamodb"), uuid.uuid4().hex[:8]
        keystore, metadata = f"{prefix}-keystore-{suffix}", f"{prefix}-metadata-{suffix}"
        _clone_table(dynamodb, settings.keystore_table, keystore)
        _clone_table(dynamodb, settings.metadata_table, metadata)
        return keystore, metadata

    return make


@pytest.fixture(scope="session")
def settings(local_stack: Any) -> Settings:
    """The settings the deployed functions would have, from the stack's outputs."""
    return settings_from_outputs(local_stack.outputs, local_stack.account_id, local_stack.parameters)


@pytest.fixture(scope="session")
def encrypt_function(local_stack: Any, emulator: Any, stack_emptied: Any) -> Callable[[], Any]:
    """`encrypt_function()`: EncryptObjectFunction as Lambda runs it (its module, its template
    environment), warm across tests, and cold again once `clean_stack` has emptied the key
    store since its start: its cached branch keys would encrypt under keys that no longer
    exist (a deployed function never sees its key store emptied under it)."""
    from atrest_cli.local.lambda_runtime import InProcessFunction

    warm: dict[str, Any] = {}

    def current() -> Any:
        if warm.get("emptied") != stack_emptied():
            warm.update(emptied=stack_emptied(),
                        function=InProcessFunction(local_stack.function("EncryptObjectFunction"), emulator.environment()))
        return warm["function"]

    return current


@pytest.fixture
def encrypt_handler(encrypt_function: Any) -> Callable[[Any], Any]:
    """Invoke the handler with an event; returns its response (raises if the invocation failed)."""

    def invoke(event: Any) -> Any:
        invocation = encrypt_function().invoke(event)
        assert invocation.succeeded, invocation.error
        return invocation.response

    return invoke


@pytest.fixture(scope="session")
def cli_environment(settings: Settings, local_stack: Any) -> dict[str, str]:
    """The environment an operator's `atrest` command runs with against this stack:
    the emulator's standard AWS variables plus the stack's ATREST_* settings (every
    output the CLI maps to a variable, as `atrest` itself reads a stack)."""
    import os

    from atrest_cli.operations.deployment import OUTPUT_VARIABLES

    outputs = {variable: local_stack.outputs[name] for name, variable in OUTPUT_VARIABLES.items()
               if name in local_stack.outputs}
    return {**os.environ, **outputs, "ATREST_ACCOUNT_ID": settings.account_id}
