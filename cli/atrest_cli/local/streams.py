"""Reading a DynamoDB stream the way a Lambda event source mapping reads it.

A mapping keeps, per shard, a checkpoint: the sequence number of the last record it is
done with. On AWS the checkpoint belongs to the mapping and outlives any one poller, so
here it lives in a process-wide registry keyed by (endpoint, stream ARN, mapping id):
successive `Runner`s on the same stack resume where the last one stopped. A mapping seen
for the first time starts at its StartingPosition: TRIM_HORIZON (the oldest record) or
LATEST (after every record there is when it is registered; `Runner` registers its
mappings when it is created, as the mapping exists from deployment on AWS). Shards that
appear later are read from their start, and a child shard only once its parent is done
(a closed parent, with an EndingSequenceNumber, read to its end), as Lambda does.

`skip_to_latest` moves every mapping of a stream, and those not registered yet, past
every record the stream holds now: `empty_stack` calls it so that the deletions a test
harness makes between tests are never delivered.

Sequence numbers are decimal strings of varying length: compared as integers.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from atrest_cli.local.emulator import emulator_client

GET_RECORDS_LIMIT = 1000  # GetRecords returns at most 1,000 records

_lock = threading.Lock()
# (endpoint, stream ARN, mapping id) -> shard id -> last sequence number done with.
_checkpoints: dict[tuple[str, str, str], dict[str, str]] = {}
# (endpoint, stream ARN) -> shard id -> where a mapping registered from now on starts at the earliest.
_floors: dict[tuple[str, str], dict[str, str]] = {}


def sequence_number(record: dict[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


def _later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a if b is None else b
    return a if int(a) >= int(b) else b


def _client(endpoint: str, stream_arn: str) -> Any:
    # arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>
    return emulator_client("dynamodbstreams", endpoint=endpoint, region=stream_arn.split(":")[3])


def shards(endpoint: str, stream_arn: str) -> list[dict[str, Any]]:
    """The stream's shards (DescribeStream, every page), parents listed before their children."""
    client = _client(endpoint, stream_arn)
    found: list[dict[str, Any]] = []
    start: str | None = None
    while True:
        paging = {"ExclusiveStartShardId": start} if start else {}
        description = client.describe_stream(StreamArn=stream_arn, **paging)["StreamDescription"]
        found.extend(description.get("Shards", []))
        start = description.get("LastEvaluatedShardId")
        if not start:
            return found


def records_after(endpoint: str, stream_arn: str, shard_id: str, after: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` records of a shard after sequence number `after` (None: from its start)."""
    client = _client(endpoint, stream_arn)
    position: dict[str, Any] = (
        {"ShardIteratorType": "TRIM_HORIZON"} if after is None
        else {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
    )
    iterator = client.get_shard_iterator(StreamArn=stream_arn, ShardId=shard_id, **position)["ShardIterator"]
    records: list[dict[str, Any]] = []
    while iterator and len(records) < limit:
        page = client.get_records(ShardIterator=iterator, Limit=min(GET_RECORDS_LIMIT, limit - len(records)))
        if not page.get("Records"):
            break  # an open shard always hands out a next iterator: an empty page is its end for now
        records.extend(page["Records"])
        iterator = page.get("NextShardIterator")  # none once a closed shard is read to its end
    return records


def _ends(endpoint: str, stream_arn: str, starts: dict[str, str]) -> dict[str, str]:
    """Per shard, the sequence number of its last record now (shards without records after `starts` keep those)."""
    ends = dict(starts)
    for shard in shards(endpoint, stream_arn):
        shard_id = shard["ShardId"]
        records = records_after(endpoint, stream_arn, shard_id, starts.get(shard_id), sys.maxsize)
        if records:
            ends[shard_id] = sequence_number(records[-1])
    return ends


def skip_to_latest(endpoint: str, stream_arn: str) -> None:
    """Move every mapping of the stream (and any registered later) past every record it holds now."""
    with _lock:
        floor = dict(_floors.get((endpoint, stream_arn), {}))
    ends = _ends(endpoint, stream_arn, floor)
    with _lock:
        _floors[(endpoint, stream_arn)] = ends
        for (mapping_endpoint, mapping_stream, _), checkpoint in _checkpoints.items():
            if (mapping_endpoint, mapping_stream) == (endpoint, stream_arn):
                for shard_id, end in ends.items():
                    checkpoint[shard_id] = _later(checkpoint.get(shard_id), end) or end


class StreamMapping:
    """One event source mapping's reading of one stream: its checkpoints in the registry."""

    def __init__(self, endpoint: str, stream_arn: str, mapping_id: str, starting_position: str) -> None:
        self.endpoint = endpoint
        self.stream_arn = stream_arn
        self._key = (endpoint, stream_arn, mapping_id)
        with _lock:
            registered = self._key in _checkpoints
            floor = dict(_floors.get((endpoint, stream_arn), {}))
        if registered:
            return
        start = _ends(endpoint, stream_arn, floor) if starting_position == "LATEST" else floor
        with _lock:
            _checkpoints.setdefault(self._key, start)

    def checkpoint(self, shard_id: str) -> str | None:
        with _lock:
            return _checkpoints[self._key].get(shard_id)

    def commit(self, shard_id: str, done_with: str) -> None:
        """Record that the mapping is done with every record up to `done_with`. Never moves
        back: `skip_to_latest` may have moved it further meanwhile."""
        with _lock:
            checkpoint = _checkpoints[self._key]
            checkpoint[shard_id] = _later(checkpoint.get(shard_id), done_with) or done_with

    def readable_shards(self) -> list[dict[str, Any]]:
        """Shards that may have records to read now: not done with, and whose parent is done."""
        listed = shards(self.endpoint, self.stream_arn)
        listed_ids = {shard["ShardId"] for shard in listed}
        pending = {shard["ShardId"] for shard in listed if not self._is_done(shard)}
        return [
            shard for shard in listed
            if shard["ShardId"] in pending
            and (shard.get("ParentShardId") not in listed_ids or shard["ParentShardId"] not in pending)
        ]

    def _is_done(self, shard: dict[str, Any]) -> bool:
        ending = _ending(shard)
        checkpoint = self.checkpoint(shard["ShardId"])
        return ending is not None and checkpoint is not None and int(checkpoint) >= int(ending)

    def read(self, shard: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Up to `limit` records of `shard` (from `readable_shards`) after its checkpoint."""
        shard_id = shard["ShardId"]
        records = records_after(self.endpoint, self.stream_arn, shard_id, self.checkpoint(shard_id), limit)
        ending = _ending(shard)
        if not records and ending is not None:
            # A closed shard's last record may come before its EndingSequenceNumber: read to its
            # end, the mapping is done with the whole range, and its children may be read.
            self.commit(shard_id, ending)
        return records

    def unread(self) -> int:
        """Records after the checkpoints, in every shard not done with."""
        return sum(
            len(records_after(self.endpoint, self.stream_arn, shard["ShardId"], self.checkpoint(shard["ShardId"]), sys.maxsize))
            for shard in shards(self.endpoint, self.stream_arn)
            if not self._is_done(shard)
        )


def _ending(shard: dict[str, Any]) -> str | None:
    ending = shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber")
    return None if ending is None else str(ending)
