"""`make bench-scale`: operator views against the size of the archive, and the busiest partition.

    python bench/scale.py [--sizes 10000 200000] [--objects 10000] [--out bench/scale.md]

On an emulator of its own (bench/emulator_process.py, the "emulator" profile):
1. One real object goes through the pipeline; its record is the template of every loaded
   one. A loader writes records straight into the metadata table (BatchWriteItem, 25 at a
   time), as the pipeline would have left them: one scope's version, four data classes,
   mostly with the plaintext deleted, 1% with the source step unfinished, and their counts.
   `atrest migrate` then runs once (an upgraded stack; on the loaded table it has nothing to
   count), and the key is rotated so that `keys shred --dry-run` has a retired version with
   every loaded record under it.
2. At each size (loaded up to it): `status --json`, `keys list`, `keys shred --dry-run` and
   the start of a backfill of one day's prefix, each timed (median of 3) with its DynamoDB
   requests and read units. The emulator's own ConsumedCapacity is a constant, so read units
   are computed from what each request read, as DynamoDB bills it: 4 KB per unit, rounded up
   per request (Query, Scan) or per item (GetItem, BatchGetItem), halved for eventually
   consistent reads.
3. `--objects` small objects encrypted through the pipeline, with every DynamoDB write the
   pipeline sends tallied per partition key of the table and of each index (an index is
   written when an item carrying its key is put, deleted, or updated in what it projects).
   Reported: the largest share of one table's or index's writes that one partition key took.

Writes bench/scale.md (the measured numbers; docs/scale.md explains and extrapolates them).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from emulator_process import EmulatorProcess  # noqa: E402
from measure import ROOT, machine, versions  # noqa: E402

CLASSES = ("call-recording", "chat-transcript", "contact-lens", "attachment")
UNFINISHED_EVERY = 100  # 1% of loaded records: their run stopped before the source step
_UNIT = 4096


# -- DynamoDB request accounting -------------------------------------------------------------


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values (numbers ~ their digits)."""
    return sum(len(name.encode()) + _value_bytes(value) for name, value in item.items())


def _value_bytes(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind in ("S", "N"):
        return len(str(inner).encode())
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + item_bytes(inner)
    if kind == "L":
        return 3 + sum(_value_bytes(v) for v in inner)
    return sum(len(str(v).encode()) for v in inner)  # SS, NS, BS


class ReadLedger:
    """Every DynamoDB request this process makes while `active`, and the read units it would
    cost on DynamoDB (items read; a Query's or Scan's filtered-out items count too)."""

    def __init__(self) -> None:
        self.active = False
        self.requests: Counter[str] = Counter()
        self.units = 0.0
        self.last: dict[str, int] = {}

    def install(self) -> None:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        ledger = self

        def counted(client: Any, operation: str, params: dict[str, Any]) -> Any:
            response = original(client, operation, params)
            if ledger.active and client.meta.service_model.service_name == "dynamodb":
                ledger.requests[operation] += 1
                ledger.units += read_units(operation, params, response)
            return response

        BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def measure(self, action: Callable[[], Any]) -> tuple[float, int, float, Any]:
        self.requests, self.units, self.active = Counter(), 0.0, True
        started = time.perf_counter()
        try:
            result = action()
        finally:
            self.active = False
        self.last = dict(self.requests)
        return time.perf_counter() - started, sum(self.requests.values()), self.units, result


def read_units(operation: str, params: dict[str, Any], response: dict[str, Any]) -> float:
    factor = 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "GetItem":
        return factor * max(1, math.ceil(item_bytes(response.get("Item", {})) / _UNIT))
    if operation == "BatchGetItem":
        consistent = any(r.get("ConsistentRead") for r in params.get("RequestItems", {}).values())
        items = [i for found in response.get("Responses", {}).values() for i in found]
        asked = sum(len(r.get("Keys", [])) for r in params.get("RequestItems", {}).values())
        # An item not found still costs a read unit's half (or one) on DynamoDB.
        found_units = sum(max(1, math.ceil(item_bytes(i) / _UNIT)) for i in items) + (asked - len(items))
        return (1.0 if consistent else 0.5) * found_units
    if operation in ("Query", "Scan"):
        items = response.get("Items", [])
        scanned = response.get("ScannedCount", len(items))
        average = (sum(item_bytes(i) for i in items) / len(items)) if items else (1 if not scanned else 2048)
        return factor * max(1, math.ceil(scanned * average / _UNIT))
    return 0.0


# -- loading ---------------------------------------------------------------------------------


class Loader:
    """Writes records as the pipeline leaves them (and their counts) straight into the table."""

    def __init__(self, dynamodb: Any, table: str, template: Any) -> None:
        self.dynamodb, self.table, self.template = dynamodb, table, template
        self.loaded = 0
        self.day_prefix = ""

    def load_to(self, total: int, on_progress: Callable[[int], None]) -> None:
        from atrest.storage.counts import count_update, of_record
        from atrest.storage.record_keys import shard_of

        counts: dict[int, Counter[str]] = defaultdict(Counter)
        batch: list[dict[str, Any]] = []
        for record in self._records(total - self.loaded):
            adds = of_record(record.data_class, record.plaintext_size, record.status.value)
            counts[shard_of(record.vault_key)].update(adds)
            batch.append({"PutRequest": {"Item": record.to_item()}})
            if len(batch) == 25:
                self._write(batch)
                batch = []
                if self.loaded % 10_000 == 0:
                    on_progress(self.loaded)
        if batch:
            self._write(batch)
        # The counts the pipeline would have added record by record, added once per shard.
        for shard, adds in counts.items():
            self.dynamodb.update_item(**count_update(self.table, self.template.branch_key_id,
                                                     self.template.branch_key_version, shard, dict(adds))["Update"])

    def _records(self, count: int) -> Iterator[Any]:
        from atrest.storage.records import ObjectStatus
        from atrest.storage.vault_keys import VaultKey

        template = self.template
        for _ in range(count):
            n = self.loaded
            self.loaded += 1
            day = f"2026/{1 + n // 20000 % 12:02d}/{1 + n // 700 % 28:02d}"
            data_class = CLASSES[n % len(CLASSES)]
            key = f"connect/acme/CallRecordings/{day}/{uuid.uuid4()}_{n:09d}.wav"
            if n == 0:
                self.day_prefix = f"connect/acme/CallRecordings/{day}/"
            source_version = uuid.uuid4().hex
            status = ObjectStatus.ENCRYPTED if n % UNFINISHED_EVERY == 0 else ObjectStatus.SOURCE_DELETED
            yield replace(template, vault_key=str(VaultKey.of_source(data_class, template.source_bucket, key, source_version)),
                          source_key=key, source_version_id=source_version, data_class=data_class,
                          plaintext_size=random.randint(200_000, 9_000_000), status=status,
                          vault_version_id=uuid.uuid4().hex)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        request = {self.table: batch}
        while request:
            request = self.dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


# -- write spread ----------------------------------------------------------------------------


class WriteSpread:
    """Writes per partition key of the table and of each index, from the requests the pipeline sends."""

    def __init__(self, indexes: dict[str, tuple[str, str, str, tuple[str, ...]]], table: str) -> None:
        # index name -> (partition attribute, sort attribute, projection type, non-key attributes)
        self.indexes, self.table = indexes, table
        self.writes: dict[str, Counter[str]] = defaultdict(Counter)
        self.items: dict[str, dict[str, Any]] = {}  # item key -> its index attributes (as last written)

    def hook(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb", self._seen)

    def _seen(self, model: Any = None, params: dict[str, Any] | None = None, **_: Any) -> None:
        operation, params = model.name, params or {}
        if operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                for kind, body in entry.items():
                    self._write(kind, body)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            self._write(operation[:-4], params)
        elif operation == "BatchWriteItem":
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        self._write("Put", {"TableName": table, **request["PutRequest"]})
                    else:
                        self._write("Delete", {"TableName": table, **request["DeleteRequest"]})

    def _write(self, kind: str, body: dict[str, Any]) -> None:
        if body.get("TableName") != self.table or kind == "ConditionCheck":
            return
        key = body.get("Item") or body.get("Key") or {}
        identity = f"{key['pk']['S']}\n{key['sk']['S']}"
        self.writes["table"][key["pk"]["S"]] += 1
        before = self.items.get(identity, {})
        if kind == "Put":
            self.items[identity] = dict(body["Item"])
        elif kind == "Delete":
            self.items.pop(identity, None)
        for index, (partition, sort, projection, non_key) in self.indexes.items():
            if kind == "Update":
                # An update writes an index entry when it changes what the entry carries.
                touched, removed = _update_names(body)
                carried = {partition, sort, *non_key}
                if partition in before and (projection == "ALL" or touched & carried):
                    self.writes[index][before[partition]["S"]] += 1
                    if partition in removed:
                        self.items[identity] = {k: v for k, v in before.items() if k not in removed}
            else:
                entry = (self.items.get(identity) if kind == "Put" else before) or {}
                if partition in entry:
                    self.writes[index][entry[partition]["S"]] += 1

    def shares(self) -> dict[str, tuple[int, int, float, str]]:
        """table or index -> (writes, partition keys, largest share, its key)"""
        result = {}
        for where, counter in self.writes.items():
            total = sum(counter.values())
            key, most = counter.most_common(1)[0]
            result[where] = (total, len(counter), most / total, key)
        return result


def _update_names(body: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(every attribute an UpdateExpression names, those it REMOVEs)."""
    names = body.get("ExpressionAttributeNames", {})
    touched: set[str] = set()
    removed: set[str] = set()
    clause = ""
    for word in body.get("UpdateExpression", "").replace(",", " ").replace("=", " ").split():
        if word in ("SET", "REMOVE", "ADD", "DELETE"):
            clause = word
        elif not word.startswith(":") and word not in ("+", "-"):
            name = names.get(word, word)
            touched.add(name)
            if clause == "REMOVE":
                removed.add(name)
    return touched, removed


# -- the run ---------------------------------------------------------------------------------


def atrest(*args: str, exits: tuple[int, ...] = (0,)) -> str:
    from atrest_cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    if code not in exits:
        raise RuntimeError(f"atrest {' '.join(args)} exited {code}: {err.getvalue()[-2000:]}")
    return out.getvalue()


def run(args: argparse.Namespace) -> dict[str, Any]:
    say = lambda message: print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)  # noqa: E731
    results: dict[str, Any] = {"machine": machine(), "versions": versions(), "sizes": {}, "started": datetime.now(timezone.utc).isoformat()}
    with EmulatorProcess("emulator") as emulator:
        os.environ.update(emulator.environment())
        os.environ["ATREST_KEEP_SOURCE"] = "false"
        state_file = emulator.stack["state_file"]
        import boto3

        from atrest.core.settings import Settings
        from atrest.flows.encrypt_object import EncryptPipeline
        from atrest.storage.intake import SourceObject
        from atrest.storage.records import MetadataTable
        from atrest_cli.operations.backfill import unfinished_records

        settings = Settings.from_env()
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        pipeline = EncryptPipeline.from_settings(settings)
        key = "connect/acme/CallRecordings/2026/12/01/seed.wav"
        version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=os.urandom(4096))["VersionId"]
        seeded = pipeline.encrypt(SourceObject(settings.intake_bucket, key, version))
        template = MetadataTable(dynamodb, settings.metadata_table).get_object(seeded.vault_key)
        scope = template.branch_key_id
        loader = Loader(dynamodb, settings.metadata_table, template)
        ledger = ReadLedger()
        ledger.install()
        prepared = False
        for size in args.sizes:
            say(f"loading records up to {size:,}")
            started = time.perf_counter()
            loader.load_to(size, lambda n: say(f"  {n:,} records"))
            load_seconds = time.perf_counter() - started
            if not prepared:
                atrest("migrate", "--state-file", state_file)  # an upgraded stack: nothing left to count
                atrest("keys", "rotate", scope, "--state-file", state_file)
                prepared = True
            views: dict[str, Callable[[], Any]] = {
                "status --json": lambda: json.loads(atrest("status", "--json", "--state-file", state_file)),
                "keys list": lambda: atrest("keys", "list", "--state-file", state_file),
                # Without --yes it prints the impact and exits 1 (nothing shredded).
                "keys shred --dry-run": lambda: atrest("keys", "shred", scope, "--state-file", state_file, exits=(0, 1)),
                "backfill start (one day)": lambda: list(unfinished_records(
                    pipeline.clients, settings, settings.intake_bucket, [loader.day_prefix])),
            }
            measured = {}
            for name, view in views.items():
                # The backfill's index Queries are the emulator's slowest (note b): measured once.
                repeat = 1 if name.startswith("backfill") else args.repeat
                runs = [ledger.measure(view) for _ in range(repeat)]
                seconds = statistics.median(r[0] for r in runs)
                measured[name] = {"seconds": seconds, "requests": runs[-1][1], "read_units": runs[-1][2],
                                  "by_operation": ledger.last}
                say(f"  {name}: {seconds:.2f} s, {runs[-1][1]} requests ({ledger.last}), {runs[-1][2]:.1f} read units")
            report = views["status --json"]()
            totals = report["totals"]
            if totals["encrypted"] != size + 1:
                raise RuntimeError(f"status counted {totals['encrypted']} encrypted objects, {size + 1} are recorded")
            impact = views["keys shred --dry-run"]()
            if f"{template.branch_key_version}  {size + 1} object(s)" not in impact:
                raise RuntimeError(f"the shred report does not count {size + 1} objects:\n{impact}")
            measured["check"] = {"encrypted": totals["encrypted"], "source_not_removed": totals["source_not_removed"]}
            results["sizes"][str(size)] = {"load_seconds": load_seconds, "views": measured}

        say(f"encrypting {args.objects:,} objects through the pipeline, tallying its writes per partition key")
        results["spread"] = write_spread(args.objects, settings, dynamodb, say)
    return results


def write_spread(objects: int, settings: Any, dynamodb: Any, say: Callable[[str], None]) -> dict[str, Any]:
    import boto3

    from atrest.flows.encrypt_object import EncryptPipeline
    from atrest.storage.intake import SourceObject

    described = dynamodb.describe_table(TableName=settings.metadata_table)["Table"]
    indexes = {
        index["IndexName"]: (
            next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "HASH"),
            next(k["AttributeName"] for k in index["KeySchema"] if k["KeyType"] == "RANGE"),
            index["Projection"]["ProjectionType"], tuple(index["Projection"].get("NonKeyAttributes", ())))
        for index in described["GlobalSecondaryIndexes"]
    }
    spread = WriteSpread(indexes, settings.metadata_table)
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(settings)
    spread.hook(pipeline.clients.dynamodb)
    body = os.urandom(10 * 1024)
    started = time.perf_counter()
    for n in range(objects):
        key = f"connect/acme/ChatTranscripts/2026/12/02/{uuid.uuid4()}.json" if n % 2 else \
            f"connect/acme/CallRecordings/2026/12/02/{uuid.uuid4()}.wav"
        version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
        pipeline.encrypt(SourceObject(settings.intake_bucket, key, version, size=len(body)))
        if (n + 1) % 1000 == 0:
            say(f"  {n + 1:,} objects")
    shares = spread.shares()
    return {"objects": objects, "seconds": time.perf_counter() - started,
            "shares": {where: {"writes": w, "partition_keys": k, "largest_share": share, "busiest": key}
                       for where, (w, k, share, key) in shares.items()}}


def render(results: dict[str, Any]) -> str:
    sizes = list(results["sizes"])
    lines = [
        "# Operator views against the size of the archive (bench/scale.py)",
        "",
        f"Run {results['started'][:19]}Z on {results['machine'].get('cpu', '?')} "
        f"({results['machine'].get('cores', '?')} cores), moto {results['versions'].get('moto', '?')}, "
        "one emulator process (\"emulator\" profile). What the numbers mean and what they come to at 100 million "
        "objects: [docs/scale.md](../docs/scale.md).",
        "",
        "## Time and DynamoDB reads per view",
        "",
        "| view | " + " | ".join(f"{int(s):,} records" for s in sizes) + " | ratio | read units | requests | goal |",
        "|---|" + "---|" * len(sizes) + "---|---|---|---|",
    ]
    first, last = sizes[0], sizes[-1]
    for view in results["sizes"][first]["views"]:
        if view == "check":
            continue
        cells = [results["sizes"][s]["views"][view] for s in sizes]
        ratio = cells[-1]["seconds"] / cells[0]["seconds"]
        units = " / ".join(f"{c['read_units']:.1f}" for c in cells)
        requests = " / ".join(str(c["requests"]) for c in cells)
        goal = ("ratio <= 1.5: **met**" if ratio <= 1.5 else "ratio <= 1.5: **missed**") if view != "backfill start (one day)" \
            else "(no ratio goal; see note b)"
        lines.append(f"| `{view}` | " + " | ".join(f"{c['seconds']:.2f} s" for c in cells)
                     + f" | {ratio:.2f}x | {units} | {requests} | {goal} |")
    lines += [
        "",
        f"Read units and requests: at {int(first):,} / {int(last):,} records, DynamoDB's billing model applied to "
        "what each request read (4 KB per unit, halved when eventually consistent); the emulator reports a constant.",
        "Load: " + ", ".join(f"{int(s):,} records in {results['sizes'][s]['load_seconds']:.0f} s" for s in sizes)
        + " (BatchWriteItem, straight into the table; not part of any view's time).",
        "Each status run checked its count against the records loaded: "
        + ", ".join(f"{results['sizes'][s]['views']['check']['encrypted']:,}" for s in sizes) + " encrypted.",
        "",
        "(b) The start of a backfill reads the `unfinished` index: one Query per shard, whose read units grow with "
        "the unfinished records of the prefix only. The emulator answers an index Query by going through every item "
        "of the table (moto keeps no index structures), so its time here grows with the table; DynamoDB's does not.",
        "",
        f"## Writes per partition key: {results['spread']['objects']:,} objects through the pipeline",
        "",
        "| table or index | writes | partition keys | largest share of one key | goal (<= 1/16 = 0.0625) |",
        "|---|---|---|---|---|",
    ]
    for where, entry in sorted(results["spread"]["shares"].items()):
        verdict = "**met**" if entry["largest_share"] <= 1 / 16 else "**missed**"
        lines.append(f"| {where} | {entry['writes']:,} | {entry['partition_keys']:,} | {entry['largest_share']:.4f} "
                     f"(`{entry['busiest'][:60]}`) | {verdict} |")
    lines += ["", f"({results['spread']['seconds']:.0f} s for the run; the writes include the branch key's and the "
              "version's records, written once.)", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--objects", type=int, default=10_000, help="objects through the pipeline for the write spread")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each view (the median is reported)")
    parser.add_argument("--out", type=Path, default=BENCH / "scale.md")
    args = parser.parse_args(argv)
    results = run(args)
    args.out.write_text(render(results))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
