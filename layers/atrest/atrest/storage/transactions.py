"""TransactWriteItems as every writer of counts sends it: retried when DynamoDB cancels it
for a conflict with another transaction in flight on one of its items.

Counts (`atrest.storage.counts`) put many writers' transactions on a version's few count
items; DynamoDB cancels a transaction that meets another one on the same item
(`TransactionConflict` among the `CancellationReasons`) and botocore does not retry that.
A conflict changed nothing, so sending the same transaction again is safe; its conditions
decide again. A cancellation for any other reason (a condition, a validation error) is the
caller's to read. docs/scale.md says how often conflicts are expected, and where they cap
one scope's throughput.
"""

from __future__ import annotations

import random
import time
from typing import Any, Callable

CONFLICT_ATTEMPTS = 8  # ~0.6 s of back-off in all at most: conflicts last a transaction's few ms


def transact_write(dynamodb: Any, items: list[dict[str, Any]], attempts: int = CONFLICT_ATTEMPTS,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    for attempt in range(attempts):
        try:
            dynamodb.transact_write_items(TransactItems=items)
            return
        except dynamodb.exceptions.TransactionCanceledException as error:
            if not _conflict_only(error) or attempt == attempts - 1:
                raise
        sleep(random.uniform(0, 0.005 * 2 ** attempt))  # jittered: the writers that met must not meet again


def _conflict_only(error: Any) -> bool:
    codes = {reason.get("Code") for reason in error.response.get("CancellationReasons") or []}
    return "TransactionConflict" in codes and codes <= {"TransactionConflict", "None", None}
