"""DynamoDB transactions isolated as DynamoDB's are, in the in-process moto server.

moto 5.2.5's TransactWriteItems deep-copies every table the transaction names, applies the
items one by one, and when one fails puts the copies back. atrest writes every record in a
transaction with its count (`atrest.storage.counts`), and that meets two faults of it:
- a cancelled transaction puts back copies taken before it began, undoing the writes other
  requests made meanwhile: two deliveries of one object at once could lose the record the
  winner wrote. DynamoDB transactions are serializable with the other writes to their items;
- every transaction costs time in proportion to the tables it names (a deep copy of each),
  so a table of 200,000 records makes each record write take seconds.

`install()` serializes the backend's item writes (one lock around TransactWriteItems,
PutItem, UpdateItem and DeleteItem; BatchWriteItem goes through the last two) and makes the
rollback exact and cheap: before a transaction's items apply, the items it names (and
each table's stream length) are kept, and a cancelled transaction puts back exactly those.
Not reproduced: DynamoDB cancels a transaction that meets another one in flight on the same
item (`TransactionConflict`); here the second waits for the first. docs/aws-parity.md.
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import textwrap
import threading
from typing import Any, Callable

_lock = threading.RLock()
_originals: dict[str, Any] = {}
_WRITES = ("put_item", "update_item", "delete_item")


def install() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    if _originals:
        return
    for name in (*_WRITES, "transact_write_items"):
        _originals[name] = getattr(DynamoDBBackend, name)
    for name in _WRITES:
        setattr(DynamoDBBackend, name, _serialized(_originals[name]))
    DynamoDBBackend.transact_write_items = _transaction(_without_table_copies(_originals["transact_write_items"]))


def uninstall() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name, original in list(_originals.items()):
        setattr(DynamoDBBackend, name, original)
        del _originals[name]


def _serialized(write: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(write)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return write(*args, **kwargs)

    return serialized


def _without_table_copies(transact: Callable[..., Any]) -> Callable[..., Any]:
    """moto's transact_write_items, its `copy.deepcopy(self.tables[...])` replaced by the
    table itself: the copies' restore becomes a no-op, and `_transaction` restores instead."""
    from moto.dynamodb import models

    source = textwrap.dedent(inspect.getsource(transact))
    source, found = re.subn(r"copy\.deepcopy\(\s*self\.tables\[table_name\]\s*\)", "self.tables[table_name]", source)
    if found != 1:
        raise RuntimeError("moto's transact_write_items changed; review atrest_cli/local/dynamodb_fidelity.py")
    namespace: dict[str, Any] = {}
    exec(compile(source, models.__file__, "exec"), models.__dict__, namespace)  # noqa: S102 - moto's own code, one call removed
    return namespace["transact_write_items"]


def _transaction(transact: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(transact)
    def transaction(backend: Any, transact_items: list[dict[str, Any]]) -> Any:
        with _lock:
            kept = [_keep(backend, entry) for entry in transact_items]
            try:
                return transact(backend, transact_items)
            except Exception:
                for restore in reversed([k for k in kept if k is not None]):
                    restore()
                raise

    return transaction


def _keep(backend: Any, entry: dict[str, Any]) -> Callable[[], None] | None:
    """What puts the item `entry` names back as it is now (None: not an item of a known table)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    (_, operation), = entry.items() if len(entry) == 1 else ((None, {}),)
    table = backend.tables.get(operation.get("TableName"))
    if table is None:
        return None
    key = operation.get("Key") or operation.get("Item") or {}
    if table.hash_key_attr not in key:
        return None
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr and table.range_key_attr in key else None
    if table.range_key_attr and range_value is None:
        return None
    before = table.items.get(hash_value)
    if range_value is not None:
        before = before.get(range_value) if before else None
    before = copy.deepcopy(before)
    stream = table.stream_shard.items if table.stream_shard is not None else None
    stream_length = len(stream) if stream is not None else 0

    def restore() -> None:
        if range_value is None:
            if before is None:
                table.items.pop(hash_value, None)
            else:
                table.items[hash_value] = before
        else:
            partition = table.items.get(hash_value)
            if before is not None:
                table.items[hash_value][range_value] = before
            elif partition is not None:
                partition.pop(range_value, None)
                if not partition:
                    table.items.pop(hash_value, None)
        if stream is not None:
            del stream[stream_length:]  # a cancelled transaction is not in the stream

    return restore
