"""S3 "Object Created" events as EventBridge delivers them to EncryptObjectFunction (bare, or
in an SQS batch: `sqs_batch`), for tests that invoke the handler directly
(tests/integration/test_encrypt_handler.py, test_encrypt_batch_concurrency.py) and the emulator's own tests that run it with a mutated role (cli/tests/local/test_iam_mutations.py).
Importable by name: pyproject's pytest `pythonpath` puts tests/ on sys.path."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote_plus


def object_created(bucket, key, version_id, size=0, encode=True):
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-30T05:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": quote_plus(key, safe="/") if encode else key, "size": size,
                              "etag": "0" * 32, "version-id": version_id, "sequencer": "0"},
                   "request-id": "R", "requester": "123456789012", "reason": "PutObject"},
    }


def sqs_batch(*bodies):
    """An SQS event of these message bodies (events, or text as is), messages m0, m1, ..."""
    return {"Records": [
        {"messageId": f"m{n}", "receiptHandle": f"h{n}", "body": body if isinstance(body, str) else json.dumps(body),
         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "x", "ApproximateFirstReceiveTimestamp": "0"},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
        for n, body in enumerate(bodies)]}
