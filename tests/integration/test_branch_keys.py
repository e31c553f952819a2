"""Branch keys are created on first use, once, however many processes race for it.
Runs on either target: each test makes a branch key of its own and removes it (`created`)."""

from __future__ import annotations

import multiprocessing
import os
import uuid

import boto3
import pytest

import atrest.crypto.keystore as keystore_module
from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.core.errors import AtrestError
from atrest.crypto.keystore import BranchKeyStore
from atrest.crypto.keystore_format import BEACON_TYPE, TYPE, item_key, item_kind, items_of


def _ensure_in_fresh_process(settings, scope_id, start, results):
    # A process of its own, like a second Lambda: the MPL's KMS components are not thread-safe.
    keystore = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    start.wait(10)
    created = keystore.ensure(BranchKeyScope.account(scope_id))
    results.put((created, keystore.active_version(BranchKeyScope.account(scope_id))))


def test_two_first_uploads_at_once_create_exactly_one_branch_key(settings, target, created):
    scope_id = uuid.uuid4().hex[:12]
    created.branch_key(settings.keystore_table, f"account/{scope_id}")  # written by the processes below
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_ensure_in_fresh_process, args=(settings, scope_id, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)

    assert all(worker.exitcode == 0 for worker in workers)
    assert sum(created for created, _ in outcomes) == 1
    assert len({version for _, version in outcomes}) == 1
    items = boto3.client("dynamodb").query(
        TableName=settings.keystore_table, **items_of(f"account/{scope_id}"))["Items"]
    assert sorted(item_kind(item[TYPE]["S"]) for item in items) == ["active", "beacon", "version"]
    # The processes reached the stack under test: the emulator exactly when it is the local stack.
    assert os.environ.get("AWS_ENDPOINT_URL", "").startswith("http://127.0.0.1:") is not target.deployed


def test_losing_the_create_race_uses_the_winners_key(settings, created):
    scope = BranchKeyScope.account(uuid.uuid4().hex[:12])
    created.branch_key(settings.keystore_table, scope.branch_key_id)
    winner = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    loser = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    assert winner.ensure(scope) is True

    # The loser read "no key" just before the winner wrote: replay that stale read.
    loser.active_version = lambda _scope: None

    assert loser.ensure(scope) is False
    assert BranchKeyStore.active_version(loser, scope) == winner.active_version(scope)


def _beacon(settings, branch_key_id: str) -> dict:
    return boto3.client("dynamodb").get_item(TableName=settings.keystore_table, ConsistentRead=True,
                                             Key=item_key(branch_key_id, BEACON_TYPE))["Item"]


def test_a_loser_that_fails_while_the_winner_commits_waits_for_the_winners_items(settings, created):
    """DynamoDB cancels a CreateKey that conflicts with one still committing (and the emulator
    applies a transaction's items one by one): the loser's ensure() must not return before the
    winner's items can be read, or its first encryption finds no beacon key."""
    scope = BranchKeyScope.account(uuid.uuid4().hex[:12])
    created.branch_key(settings.keystore_table, scope.branch_key_id)
    winner = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    assert winner.ensure(scope) is True
    beacon = _beacon(settings, scope.branch_key_id)
    admin = boto3.client("dynamodb")
    admin.delete_item(TableName=settings.keystore_table, Key=item_key(scope.branch_key_id, BEACON_TYPE))

    clients = AwsClients()
    loser = BranchKeyStore(clients, settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    loser.active_version = lambda _scope: None  # it read "no key" before the winner began
    missed = []

    def winner_commits(parsed, **kwargs):
        # The loser looked for the beacon and did not find it yet: the winner's commit lands now.
        params = kwargs["context"].get("atrest_get_item", {})
        if "Item" not in parsed and params.get("Key", {}).get(TYPE, {}).get("S") == BEACON_TYPE:
            missed.append(True)
            admin.put_item(TableName=settings.keystore_table, Item=beacon)

    def note(params, context, **kwargs):
        context["atrest_get_item"] = params

    clients.dynamodb.meta.events.register("before-parameter-build.dynamodb.GetItem", note)
    clients.dynamodb.meta.events.register("after-call.dynamodb.GetItem", winner_commits)

    assert loser.ensure(scope) is False
    assert missed == [True], "the loser returned without reading the winner's beacon item"
    assert loser.checksum_key(scope.branch_key_id) is not None  # what the first encryption needs


def test_a_loser_whose_winner_never_commits_says_so(settings, created, monkeypatch):
    scope = BranchKeyScope.account(uuid.uuid4().hex[:12])
    created.branch_key(settings.keystore_table, scope.branch_key_id)
    winner = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    assert winner.ensure(scope) is True
    boto3.client("dynamodb").delete_item(TableName=settings.keystore_table, Key=item_key(scope.branch_key_id, BEACON_TYPE))
    monkeypatch.setattr(keystore_module, "CONCURRENT_CREATE_WAIT_SECONDS", 0.2)
    loser = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    loser.active_version = lambda _scope: None

    with pytest.raises(AtrestError, match="still not readable"):
        loser.ensure(scope)
