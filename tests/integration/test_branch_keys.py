"""Branch keys are created on first use, once, however many processes race for it.
Runs on either target: each test makes a branch key of its own and removes it (`created`)."""

from __future__ import annotations

import multiprocessing
import os
import uuid

import boto3

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.crypto.keystore import BranchKeyStore
from atrest.crypto.keystore_format import TYPE, item_kind, items_of


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
