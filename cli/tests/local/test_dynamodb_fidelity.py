"""The embedded emulator's DynamoDB transactions: a cancelled one undoes only its own items,
never a write another request made while it ran."""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest

pytestmark = pytest.mark.local_only("tests the embedded emulator itself")


@pytest.fixture
def table(emulator):
    dynamodb = boto3.client("dynamodb")
    name = f"fidelity-{uuid.uuid4().hex[:10]}"
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                          StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    yield name
    dynamodb.delete_table(TableName=name)


def item(pk: str, **values: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": "ITEM"}, **{k: {"S": v} for k, v in values.items()}}


def conditional_pair(table: str, new: str) -> list[dict]:
    """A transaction that writes `new`, then fails on an item that exists."""
    return [{"Put": {"TableName": table, "Item": item(new)}},
            {"Update": {"TableName": table, "Key": {"pk": {"S": "counter"}, "sk": {"S": "ITEM"}},
                        "UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Put": {"TableName": table, "Item": item("taken"), "ConditionExpression": "attribute_not_exists(pk)"}}]


def test_a_cancelled_transaction_leaves_its_items_and_the_stream_as_they_were(table):
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=table, Item=item("taken", value="first"))
    dynamodb.put_item(TableName=table, Item={**item("counter"), "n": {"N": "5"}})
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]

    with pytest.raises(dynamodb.exceptions.TransactionCanceledException) as cancelled:
        dynamodb.transact_write_items(TransactItems=conditional_pair(table, "new"))

    codes = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
    assert codes == ["None", "None", "ConditionalCheckFailed"]
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "new"}, "sk": {"S": "ITEM"}})
    counter = dynamodb.get_item(TableName=table, Key={"pk": {"S": "counter"}, "sk": {"S": "ITEM"}})["Item"]
    assert counter["n"] == {"N": "5"}
    streams = boto3.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in streams.get_records(ShardIterator=iterator)["Records"]]
    assert keys == ["taken", "counter"]


def test_writes_made_while_transactions_are_cancelled_are_all_kept(table):
    """moto restored a copy of the whole table taken when the transaction began: a write
    that landed meanwhile was lost."""
    dynamodb = boto3.client("dynamodb")
    dynamodb.put_item(TableName=table, Item=item("taken"))
    written: list[str] = []
    stop = threading.Event()

    def cancel_transactions() -> None:
        client = boto3.client("dynamodb")
        n = 0
        while not stop.is_set():
            n += 1
            with pytest.raises(client.exceptions.TransactionCanceledException):
                client.transact_write_items(TransactItems=conditional_pair(table, f"rolled-back-{n}"))

    canceller = threading.Thread(target=cancel_transactions)
    canceller.start()
    try:
        for n in range(150):
            dynamodb.put_item(TableName=table, Item=item(f"kept-{n}"))
            written.append(f"kept-{n}")
    finally:
        stop.set()
        canceller.join()

    found = {i["pk"]["S"] for i in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]}
    assert set(written) <= found
    assert not {pk for pk in found if pk.startswith("rolled-back-")}
