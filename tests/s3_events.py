"""S3 "Object Created" events as EventBridge delivers them to EncryptObjectFunction, for
tests that invoke the handler directly (tests/integration/test_encrypt_handler.py) and
the emulator's own tests that run it with a mutated role (cli/tests/local/test_iam_mutations.py).
Importable by name: pyproject's pytest `pythonpath` puts tests/ on sys.path."""

from __future__ import annotations

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
