"""What the audit trail holds for one `atrest decrypt` target, for the CLI read tests."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import boto3

from atrest.storage.audit import AuditTrail


def audit_rows(settings: Any, uri: str) -> list[Any]:
    """Today's audit rows (one per attempt) of reads that named `uri` (`object:<uri>`)."""
    started = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return [r for r in AuditTrail(boto3.client("dynamodb"), settings.audit_table).since(started)
            if r.requested == f"object:{uri}"]
