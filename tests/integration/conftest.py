"""Fixtures for the encrypt pipeline's integration tests, on the stack under test (the
`target`: the local stack of template.yaml, or the deployed stack ATREST_STACK names; see
tests/stack_fixtures.py for it, the emulator and `settings`)."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import pytest

from atrest.core.settings import Settings
from atrest.storage.audit import AuditTrail

from targets import Target


def cli_naming(stack: list[str], capsys: Any) -> Callable[..., tuple[int, str, str]]:
    """`run(*args)`: `atrest ARGS... <stack>` as an operator would run it (`stack`: the
    arguments naming the stack), in this process; returns (exit code, stdout, stderr)."""
    from atrest_cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, *stack])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def cli_on_state_file(state: Any, state_file: Any, capsys: Any) -> Callable[..., tuple[int, str, str]]:
    """`cli_naming` a local stack by its state file, written from `state`. `run.state_file` is
    the file, for tests that read what it switched."""
    written = state.write(state_file)
    run = cli_naming(["--state-file", str(written)], capsys)
    run.state_file = written  # type: ignore[attr-defined]
    return run


@pytest.fixture
def cli_on(tmp_path: Any, capsys: Any) -> Callable[[Any], Callable[..., tuple[int, str, str]]]:
    """`cli_on(state)`: the CLI on a copy of that local stack's state file (`cli_on_state_file`)."""
    return lambda state: cli_on_state_file(state, tmp_path / "local-stack.json", capsys)


@pytest.fixture
def atrest(target: Target, tmp_path: Any, capsys: Any) -> Callable[..., tuple[int, str, str]]:
    """The CLI on the stack under test: `atrest("status", "--json")` -> (exit code, stdout,
    stderr); the local stack named by a copy of its state file, a deployed one by `--stack NAME`."""
    return cli_naming(target.cli_arguments(tmp_path), capsys)


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
def cli_environment(target: Target) -> dict[str, str]:
    """The environment an operator's `atrest` command runs with against this stack:
    the AWS variables of this session (the emulator's, or the caller's for a deployed
    stack) plus the stack's ATREST_* settings (every output the CLI maps to a variable,
    as `atrest` itself reads a stack)."""
    return target.cli_environment()


@pytest.fixture(scope="session")
def trail(settings: Settings) -> AuditTrail:
    """The stack's audit trail, read and appended to as the administrator."""
    import boto3

    return AuditTrail(boto3.client("dynamodb"), settings.audit_table)


@pytest.fixture
def cold_function(local_stack, emulator, settings):
    """A function of its own, loaded (an empty backfill batch: no AWS call), so that the hooks a
    test puts on its pipelines leave the other tests' function alone."""
    from atrest_cli.local.lambda_runtime import InProcessFunction

    function = InProcessFunction(local_stack.function("EncryptObjectFunction"), emulator.environment())
    with warnings.catch_warnings():  # Powertools warns that an empty batch published no metric
        warnings.simplefilter("ignore", UserWarning)
        assert function.invoke({"Items": [], "BatchInput": {"bucket": settings.intake_bucket}}).succeeded
    return function
