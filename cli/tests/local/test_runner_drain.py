"""`Runner.drain` returns only when the queues are empty, even when the emulator's reading
of a queue's backlog misses a message.

moto computes a queue's ApproximateNumberOfMessages, ...Delayed and ...NotVisible one
after another; a message whose retry delay ends between those computations is in none of
them, so the backlog reads 0 while the message is still in the queue. Under load (the
suite on two busy cores) that window is wide enough to be hit: the malformed message of
tests/integration/test_end_to_end.py had reached maxReceiveCount, drain returned, and the
receive that would have moved it to the dead-letter queue never came. Here the torn
reading is made to happen, deterministically, at exactly that moment.
"""

from __future__ import annotations

import threading
import time

import boto3
import pytest

pytestmark = pytest.mark.local_only("tests the local runner's drain")


def _visible(sqs, queue_url: str) -> int:
    return int(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"]["ApproximateNumberOfMessages"])


def _torn_reading_once(runner, sqs, queue_url: str, after_returns: int):
    """Wrap `runner.backlog`: once `after_returns` messages have been handed back for a
    retry, the next reading waits until the message is visible again and answers 0 for
    every queue, as the emulator's torn reading does."""
    real = runner.backlog
    torn = threading.Event()

    def backlog():
        if not torn.is_set() and runner.stats.messages_returned >= after_returns:
            torn.set()
            deadline = time.monotonic() + 30
            while not _visible(sqs, queue_url) and time.monotonic() < deadline:
                time.sleep(0.05)  # the test's own stand-in for the emulator's timing, not the runner's
            return {url: 0 for url in real()}
        return real()

    runner.backlog = backlog
    return torn


def test_drain_moves_a_message_to_the_dead_letter_queue_even_when_a_backlog_reading_misses_it(
        clean_stack, local_runner):
    sqs = boto3.client("sqs")
    queue_url = clean_stack.outputs["EncryptQueueUrl"]
    dlq_url = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    max_receives = int(clean_stack.parameters["MaxReceiveCount"])
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"detail-type": "Object Created", "source": "aws.s3"}')
    torn = _torn_reading_once(local_runner, sqs, queue_url, after_returns=max_receives)

    local_runner.drain(timeout=60)

    assert torn.is_set()  # the torn reading did happen, after the last retry
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    assert len(dead) == 1 and int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= max_receives


def test_drain_with_the_runner_in_the_background_also_confirms_an_empty_reading(clean_stack, local_runner):
    sqs = boto3.client("sqs")
    queue_url = clean_stack.outputs["EncryptQueueUrl"]
    dlq_url = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    max_receives = int(clean_stack.parameters["MaxReceiveCount"])
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"detail-type": "Object Created", "source": "aws.s3"}')
    torn = _torn_reading_once(local_runner, sqs, queue_url, after_returns=max_receives)

    with local_runner:
        local_runner.drain(timeout=60)
        dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])

    assert torn.is_set() and len(dead) == 1
