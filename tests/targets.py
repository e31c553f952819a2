"""The stack the integration and reliability suites run against (the `target` fixture,
tests/stack_fixtures.py), and what a test made on it.

- The local target (default): template.yaml provisioned into the embedded emulator, as
  stack "atrest". Tests may empty it (`clean_stack`): that is fast and keeps them apart.
- A deployed target: `ATREST_STACK=<stack name>` with the usual AWS credentials and region.
  Its outputs and parameters are read with CloudFormation DescribeStacks and turned into
  the settings its functions have, by the same code the `atrest` command uses
  (`deployment_from_cloudformation`); boto3 reaches AWS itself (no AWS_ENDPOINT_URL). A
  deployed stack is never emptied: tests keep apart by unique keys and ids, and
  `CreatedResources` removes exactly what they made, nothing else.

Kept apart from the fixtures so that choosing a target can be tested without a stack
(tests/unit/test_target_selection.py).
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import boto3
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from atrest.core.settings import Settings
from atrest.crypto.keystore_format import BRANCH_KEY_ID
from atrest_cli.operations.deployment import OUTPUT_VARIABLES, deployment_from_cloudformation, settings_from_outputs

STACK_VARIABLE = "ATREST_STACK"  # names the deployed stack to test; unset or empty: the local stack


def deployed_stack_name(environ: Mapping[str, str] = os.environ) -> str | None:
    """The deployed stack `ATREST_STACK` names, or None for the local stack."""
    return environ.get(STACK_VARIABLE, "").strip() or None


@dataclass(frozen=True)
class Target:
    """What tests need from the stack under test.

    `local` is the provisioned `LocalStackState` and `emulator` the running emulator on the
    local target; both are None on a deployed one (`deployed`)."""

    name: str
    settings: Settings
    outputs: Mapping[str, str]
    local: Any = None
    emulator: Any = None

    @property
    def deployed(self) -> bool:
        return self.local is None

    @property
    def account_id(self) -> str:
        return self.settings.account_id

    def cli_arguments(self, directory: Path) -> list[str]:
        """What names this stack to `atrest`, as an operator names it: the local stack's state
        file (written into `directory`), a deployed stack's name."""
        if self.deployed:
            return ["--stack", self.name]
        return ["--state-file", str(self.local.write(directory / "local-stack.json"))]

    def cli_environment(self, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
        """`environ` plus the stack's ATREST_* settings (every output the CLI maps to a
        variable), as the functions and an operator's `atrest` see them."""
        outputs = {variable: self.outputs[name] for name, variable in OUTPUT_VARIABLES.items() if name in self.outputs}
        return {**environ, **outputs, "ATREST_ACCOUNT_ID": self.account_id}

    def empty(self) -> bool:
        """Empty every bucket, table and queue of the local stack; on a deployed stack do
        nothing (its data is not the tests' to delete). Whether it emptied."""
        if self.deployed:
            return False
        from atrest_cli.local.stack import empty_stack

        empty_stack(self.local, self.emulator)
        return True


def local_target(stack: Any, emulator: Any) -> Target:
    """The local stack (a `LocalStackState`) on the running emulator."""
    settings = settings_from_outputs(stack.outputs, stack.account_id, stack.parameters)
    return Target(stack.stack_name, settings, stack.outputs, local=stack, emulator=emulator)


def deployed_target(stack_name: str, clients: Any = None) -> Target:
    """The deployed stack `stack_name`, read as `atrest --stack NAME` reads it. `clients`:
    an `AwsClients` (default: one for the caller's credentials and region)."""
    deployment = deployment_from_cloudformation(stack_name, clients)
    return Target(stack_name, deployment.settings, dict(deployment.outputs))


# Variables that would send requests to an emulator or name a local stack: never for a deployed target.
LOCAL_VARIABLES = ("AWS_ENDPOINT_URL", "ATREST_STATE_FILE")


@contextlib.contextmanager
def selected_target(local: Callable[[], Target], environ: Any = os.environ, clients: Any = None,
                    leftovers: Callable[[list[str]], None] = lambda failures: None) -> Iterator[Target]:
    """The stack under test for a session: `local()` unless `ATREST_STACK` names a deployed
    stack. For a deployed one, `environ` loses `LOCAL_VARIABLES` while it is in use, and
    what this process makes meanwhile is recorded and removed at the end (`leftovers` gets
    what could not be); nothing of the stack is ever emptied."""
    stack = deployed_stack_name(environ)
    if stack is None:
        yield local()
        return
    saved = {name: environ.pop(name) for name in LOCAL_VARIABLES if name in environ}
    try:
        deployed = deployed_target(stack, clients)
        # The audit trail's records stay: its resource policy denies DeleteItem to everyone.
        made = CreatedResources(kept_tables=frozenset({deployed.settings.audit_table}))
        try:
            with recording(made):
                yield deployed
        finally:
            leftovers(made.remove())
    finally:
        environ.update(saved)


# -- what a test made ---------------------------------------------------------------------------


@dataclass
class CreatedResources:
    """What tests made on the stack under test, to remove at teardown: each object version,
    item, branch key, queue, table, bucket and KMS key recorded here, and nothing else.

    `kept_tables`: tables whose items are never removed (the audit trail: its resource
    policy denies DeleteItem to everyone, by design). `client`: how to build boto3 clients
    (only when there is something to remove)."""

    kept_tables: frozenset[str] = frozenset()
    client: Callable[[str], Any] = boto3.client
    objects: list[tuple[str, str, str | None]] = field(default_factory=list)
    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    branch_keys: list[tuple[str, str]] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)
    kms_keys: list[str] = field(default_factory=list)

    def object(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """One version of an object (its only one when `version_id` is None), or a delete marker."""
        self.objects.append((bucket, key, version_id))

    def item(self, table: str, key: dict[str, Any]) -> None:
        if table not in self.kept_tables:
            self.items.append((table, key))

    def branch_key(self, keystore_table: str, branch_key_id: str) -> None:
        """Every item of a branch key (its versions, ACTIVE item and beacon) in a key store."""
        self.branch_keys.append((keystore_table, branch_key_id))

    def queue(self, url: str) -> None:
        self.queues.append(url)

    def table(self, name: str) -> None:
        self.tables.append(name)

    def bucket(self, name: str) -> None:
        self.buckets.append(name)

    def kms_key(self, key_id: str) -> None:
        self.kms_keys.append(key_id)

    def remove(self) -> list[str]:
        """Remove everything recorded (the newest first), forget it, and return what could
        not be removed: teardown goes on past a failure, so one leftover hides no other."""
        failures: list[str] = []

        def attempt(what: str, action: Callable[[], Any]) -> None:
            try:
                action()
            except ClientError as error:
                if error.response["Error"]["Code"] not in _ALREADY_GONE:
                    failures.append(f"{what}: {error}")

        for bucket, key, version in reversed(self.objects):
            options = {"VersionId": version} if version else {}
            attempt(f"s3://{bucket}/{key} {version or ''}",
                    lambda: self.client("s3").delete_object(Bucket=bucket, Key=key, **options))
        for table, key in reversed(self.items):
            attempt(f"{table} {key}", lambda: self.client("dynamodb").delete_item(TableName=table, Key=key))
        for table, branch_key_id in reversed(self.branch_keys):
            attempt(f"{table} {branch_key_id}",
                    lambda: _delete_partition(self.client("dynamodb"), table, BRANCH_KEY_ID, branch_key_id))
        for url in reversed(self.queues):
            attempt(url, lambda: self.client("sqs").delete_queue(QueueUrl=url))
        for table in reversed(self.tables):
            attempt(table, lambda: self.client("dynamodb").delete_table(TableName=table))
        for bucket in reversed(self.buckets):
            attempt(bucket, lambda: _delete_bucket(self.client("s3"), bucket))
        for key_id in reversed(self.kms_keys):
            attempt(key_id, lambda: self.client("kms").schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7))
        for recorded in (self.objects, self.items, self.branch_keys, self.queues, self.tables, self.buckets, self.kms_keys):
            recorded.clear()
        return failures


# A resource gone by teardown (the code under test deleted it, or it was never made) is removed.
_ALREADY_GONE = {"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "ResourceNotFoundException",
                 "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NotFoundException"}


def _delete_partition(dynamodb: Any, table: str, attribute: str, value: str) -> None:
    schema = dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
    names = {f"#k{n}": key["AttributeName"] for n, key in enumerate(schema)}
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="#p = :v", ExpressionAttributeNames={"#p": attribute, **names},
        ExpressionAttributeValues={":v": {"S": value}}, ConsistentRead=True,
        ProjectionExpression=", ".join(names))  # the key attributes alone: what DeleteItem takes
    for item in [item for page in pages for item in page["Items"]]:
        dynamodb.delete_item(TableName=table, Key=item)


def _delete_bucket(s3: Any, bucket: str) -> None:
    """A bucket a test made: everything in it was made by that test too."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3.delete_bucket(Bucket=bucket)


# -- recording what this process makes ---------------------------------------------------------


_quiet = threading.local()  # set while the recorder makes calls of its own


@contextlib.contextmanager
def recording(created: CreatedResources) -> Iterator[CreatedResources]:
    """Record in `created` what every boto3 client of this process makes while the block
    runs: object versions and delete markers; items that did not exist before the write;
    tables, queues, buckets and KMS keys. Processes this one starts are not seen (a test
    that spawns writers records their work itself). An item that existed before is never
    recorded: removing it would delete what the test did not make."""
    original = BaseClient._make_api_call
    schemas: dict[str, list[str]] = {}

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if getattr(_quiet, "active", False):
            return original(client, operation, params)
        service = client.meta.service_model.service_name
        new_items = _new_items(client, operation, params, schemas) if service == "dynamodb" else []
        response = original(client, operation, params)
        _record(created, service, operation, params, response, new_items)
        return response

    BaseClient._make_api_call = call
    try:
        yield created
    finally:
        BaseClient._make_api_call = original


def _record(created: CreatedResources, service: str, operation: str, params: dict[str, Any],
            response: dict[str, Any], new_items: list[tuple[str, dict[str, Any]]]) -> None:
    if service == "s3":
        if operation in ("PutObject", "CopyObject", "CompleteMultipartUpload"):
            created.object(params["Bucket"], params["Key"], response.get("VersionId"))
        elif operation == "DeleteObject" and response.get("DeleteMarker") and "VersionId" not in params:
            created.object(params["Bucket"], params["Key"], response.get("VersionId"))
        elif operation == "CreateBucket":
            created.bucket(params["Bucket"])
    elif service == "dynamodb":
        for table, key in new_items:
            created.item(table, key)
        if operation == "CreateTable":
            created.table(params["TableName"])
    elif service == "sqs" and operation == "CreateQueue":
        created.queue(response["QueueUrl"])
    elif service == "kms" and operation == "CreateKey":
        created.kms_key(response["KeyMetadata"]["KeyId"])


def _new_items(client: Any, operation: str, params: dict[str, Any],
               schemas: dict[str, list[str]]) -> list[tuple[str, dict[str, Any]]]:
    """The (table, key) of each item this write names that does not exist yet."""
    if operation in ("PutItem", "UpdateItem"):
        named = [(params["TableName"], params.get("Item") or params.get("Key"))]
    elif operation == "TransactWriteItems":
        named = [(write["TableName"], write.get("Item") or write.get("Key"))
                 for entry in params["TransactItems"] for kind, write in entry.items() if kind in ("Put", "Update")]
    elif operation == "BatchWriteItem":
        named = [(table, request["PutRequest"]["Item"])
                 for table, requests in params["RequestItems"].items() for request in requests if "PutRequest" in request]
    else:
        return []
    _quiet.active = True
    try:
        found = []
        for table, item in named:
            try:
                if table not in schemas:
                    schemas[table] = [key["AttributeName"] for key in client.describe_table(TableName=table)["Table"]["KeySchema"]]
                key = {name: item[name] for name in schemas[table]}
                if "Item" not in client.get_item(TableName=table, Key=key, ConsistentRead=True):
                    found.append((table, key))
            except (ClientError, KeyError):
                # A client whose role may not read the table (the write itself will say whether it
                # may write), or a write naming no whole key: not known to be new, so not removed.
                continue
        return found
    finally:
        _quiet.active = False
