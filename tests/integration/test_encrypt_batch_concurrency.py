"""EncryptObject encrypts the messages of one SQS batch concurrently (issue 17): each message
by a pipeline of its own, a failure reported for its message only, a large object alone.
Overlap is proven by a gate that only opens once two workers reached it, never by timing."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ClientError

from atrest_cli.demos.samples import connect_key

from s3_events import object_created, sqs_batch

pytestmark = pytest.mark.local_only("invokes EncryptObjectFunction's handler in this process")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
BOUND = 30  # seconds a gate waits before it fails the message (never reached when the test passes)


def new_object(settings, body=b'{"Transcript": []}', size=None):
    key = connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
    return key, object_created(settings.intake_bucket, key, version, size=len(body) if size is None else size)


def encrypted(settings, key):
    """Encrypted, then its plaintext removed."""
    return boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", []) == []


class Gate:
    """Opens once `parties` distinct threads have arrived; an arrival waits for that, and fails
    after BOUND seconds: a batch processed one message at a time never opens it."""

    def __init__(self, parties):
        self.parties = parties
        self.arrivals: dict[int, object] = {}  # thread -> the pipeline it arrived with
        self.broken = False
        self._changed = threading.Condition()

    def arrive(self, pipeline):
        with self._changed:
            self.arrivals.setdefault(threading.get_ident(), pipeline)
            self._changed.notify_all()
            # Once broken, later arrivals fail at once: a one-at-a-time batch fails in BOUND, not N x BOUND.
            if self.broken or not self._changed.wait_for(lambda: len(self.arrivals) >= self.parties, timeout=BOUND):
                self.broken = True
                raise RuntimeError("no other message of the batch was in flight at the same time")


def test_a_batch_of_n_messages_is_encrypted_at_once_each_by_a_pipeline_of_its_own(settings, cold_function):
    gate = Gate(parties=2)

    def instrument(pipeline):
        def reading_a_source(params, **_):
            if params["Bucket"] == settings.intake_bucket:
                gate.arrive(pipeline)
        pipeline.clients.s3.meta.events.register("before-parameter-build.s3.GetObject", reading_a_source)

    module = cold_function.module
    module.pipelines.each(instrument)
    objects = [new_object(settings) for _ in range(6)]

    invocation = cold_function.invoke(sqs_batch(*(event for _, event in objects)))

    assert invocation.succeeded, invocation.error
    assert invocation.response == {"batchItemFailures": []}
    assert [key for key, _ in objects if not encrypted(settings, key)] == []
    # The two threads that met at the gate (in flight at once) each had a pipeline of their own:
    # own clients, own key stores (the MPL's KMS components are not thread-safe).
    met = list(gate.arrivals.values())[:2]
    assert len(met) == 2 and met[0] is not met[1]
    assert met[0].clients is not met[1].clients and met[0].keystore is not met[1].keystore
    assert met[0].clients.session is not met[1].clients.session  # boto3 sessions are not thread-safe
    assert 2 <= len(module.pipelines.built) <= settings.encrypt_concurrency


def test_a_failing_message_of_a_concurrent_batch_fails_alone(settings, cold_function):
    poison_key, poison = new_object(settings)

    def access_denied(params, **_):
        if params["Bucket"] == settings.intake_bucket and params["Key"] == poison_key:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "kms:Decrypt denied"}}, "GetObject")

    cold_function.module.pipelines.each(
        lambda pipeline: pipeline.clients.s3.meta.events.register("before-parameter-build.s3.GetObject", access_denied))
    good = [new_object(settings) for _ in range(4)]
    events = [good[0][1], poison, good[1][1], "not an event", good[2][1], good[3][1]]

    invocation = cold_function.invoke(sqs_batch(*events))

    assert invocation.succeeded, invocation.error
    assert sorted(item["itemIdentifier"] for item in invocation.response["batchItemFailures"]) == ["m1", "m3"]
    assert [key for key, _ in good if not encrypted(settings, key)] == []
    assert not encrypted(settings, poison_key)  # kept, to be retried and then dead-lettered


def test_an_object_above_one_part_is_encrypted_alone_while_small_ones_share(settings, cold_function):
    # Sizes as the event gives them: the budget is decided before anything is read.
    large = [new_object(settings, size=settings.part_size + 1) for _ in range(2)]
    small = [new_object(settings) for _ in range(4)]
    large_keys = {key for key, _ in large}
    lock = threading.Lock()
    running: set[str] = set()
    seen_together: list[frozenset[str]] = []

    def instrument(pipeline):
        original = pipeline.encrypt

        def encrypt(source, **options):
            with lock:
                running.add(source.key)
                seen_together.append(frozenset(running))
            try:
                return original(source, **options)
            finally:
                with lock:
                    running.discard(source.key)
        pipeline.encrypt = encrypt

    cold_function.module.pipelines.each(instrument)
    batch = [small[0][1], large[0][1], small[1][1], small[2][1], large[1][1], small[3][1]]

    invocation = cold_function.invoke(sqs_batch(*batch))

    assert invocation.succeeded, invocation.error
    assert invocation.response == {"batchItemFailures": []}
    assert [key for key, _ in large + small if not encrypted(settings, key)] == []
    # Every start is seen with what ran at that moment: a large object never shared the budget.
    shared = [together for together in seen_together if len(together) > 1 and together & large_keys]
    assert shared == [] and len(seen_together) == 6
