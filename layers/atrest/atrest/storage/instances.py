"""`InstanceDirectory`: which Amazon Connect instance id an alias belongs to.

Contact events name the instance by id (in its ARN); Amazon Connect writes recordings
and transcripts under `connect/<alias>/`. The directory learns the pair from a
contact event (DescribeInstance gives the alias) and keeps it in the metadata table:
`INSTANCE#<id>` and `ALIAS#<alias>` items, so the encrypt pipeline can tie a recording
to its instance.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from atrest.storage.record_keys import alias_key, instance_key
from atrest.storage.records import utc_now

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ConnectInstance:
    instance_id: str
    arn: str
    alias: str | None = None


class InstanceDirectory:
    """Reads and learns instance id <-> alias pairs. Known pairs are cached per process
    (an instance's alias never changes); an unknown alias is asked again after
    `UNKNOWN_ALIAS_SECONDS`, as the contact event that teaches it may come a little
    after the recording (and a backfill of a thousand objects should not ask a thousand times)."""

    UNKNOWN_ALIAS_SECONDS = 60.0

    def __init__(self, dynamodb: Any, table_name: str, connect: Callable[[], Any] | None = None) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name
        self._connect = connect
        self._by_id: dict[str, ConnectInstance] = {}
        self._by_alias: dict[str, str] = {}
        self._unknown_until: dict[str, float] = {}

    def learn(self, instance_id: str, arn: str) -> ConnectInstance:
        """The instance of a contact event, with its alias when Amazon Connect tells it."""
        known = self._by_id.get(instance_id) or self._read(instance_id)
        if known is not None and known.alias:
            return self._remember(known)
        alias = self._describe_alias(instance_id)
        instance = ConnectInstance(instance_id, arn, alias)
        item = {**instance_key(instance_id), "instance_id": {"S": instance_id}, "arn": {"S": arn},
                "learned_at": {"S": utc_now()}}
        if alias:
            item["alias"] = {"S": alias}
            self.dynamodb.put_item(TableName=self.table_name, Item={
                **alias_key(alias), "alias": {"S": alias}, "instance_id": {"S": instance_id}})
        self.dynamodb.put_item(TableName=self.table_name, Item=item)
        return self._remember(instance) if alias else instance

    def instance_id_for_alias(self, alias: str) -> str | None:
        if alias in self._by_alias:
            return self._by_alias[alias]
        if self._unknown_until.get(alias, 0.0) > time.monotonic():
            return None
        item = self.dynamodb.get_item(TableName=self.table_name, Key=alias_key(alias)).get("Item")
        if not item:
            self._unknown_until[alias] = time.monotonic() + self.UNKNOWN_ALIAS_SECONDS
            return None
        self._by_alias[alias] = item["instance_id"]["S"]
        return self._by_alias[alias]

    def _read(self, instance_id: str) -> ConnectInstance | None:
        item = self.dynamodb.get_item(TableName=self.table_name, Key=instance_key(instance_id)).get("Item")
        if not item:
            return None
        return ConnectInstance(instance_id, item["arn"]["S"], item.get("alias", {}).get("S"))

    def _remember(self, instance: ConnectInstance) -> ConnectInstance:
        self._by_id[instance.instance_id] = instance
        if instance.alias:
            self._by_alias[instance.alias] = instance.instance_id
        return instance

    def _describe_alias(self, instance_id: str) -> str | None:
        if self._connect is None:
            return None
        try:
            return self._connect().describe_instance(InstanceId=instance_id)["Instance"].get("InstanceAlias")
        except (BotoCoreError, ClientError) as error:
            # Contact PII is protected all the same; only the tie to recordings waits.
            log.warning("cannot learn the instance alias; recordings under connect/<alias>/ stay untied to it. "
                        "Check that the instance exists in this account and region and that the function may call "
                        "connect:DescribeInstance", extra={"instance_id": instance_id, "reason": str(error)})
            return None
