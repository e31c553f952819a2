"""What a test made, and only that, is removed (tests/targets.py `CreatedResources`): the
cleanup a deployed target relies on instead of emptying the stack, run here against the
stack under test's own services. Runs on either target."""

from __future__ import annotations

import uuid

import boto3

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.crypto.keystore import BranchKeyStore
from atrest.crypto.keystore_format import items_of

from targets import CreatedResources, recording


def _versions(s3, bucket: str) -> set[tuple[str, str]]:
    listing = s3.list_object_versions(Bucket=bucket)
    return {(v["Key"], v["VersionId"]) for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]}


def test_what_this_process_made_is_removed_and_what_was_there_before_stays(created):
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    name = f"atrest-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": {"LocationConstraint": s3.meta.region_name}}
                                     if s3.meta.region_name != "us-east-1" else {}))
    created.bucket(name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    created.table(name)
    dynamodb.get_waiter("table_exists").wait(TableName=name)
    before = s3.put_object(Bucket=name, Key="kept", Body=b"before")["VersionId"]
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "kept"}, "by": {"S": "before"}})

    made = CreatedResources()
    with recording(made):
        s3.put_object(Bucket=name, Key="kept", Body=b"a newer version")
        s3.put_object(Bucket=name, Key="new", Body=b"new")
        s3.delete_object(Bucket=name, Key="kept")  # a delete marker: made by the test too
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "new"}})
        dynamodb.put_item(TableName=name, Item={"pk": {"S": "kept"}, "by": {"S": "the test"}})

    assert made.remove() == []

    assert _versions(s3, name) == {("kept", before)}
    assert [item["pk"]["S"] for item in dynamodb.scan(TableName=name, ConsistentRead=True)["Items"]] == ["kept"]


def test_a_branch_key_is_removed_with_every_item_it_has_and_no_other(settings):
    keystore = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 60)
    recorded, named, kept = (BranchKeyScope.account(uuid.uuid4().hex[:12]) for _ in range(3))
    made = CreatedResources()
    with recording(made):
        keystore.ensure(recorded)  # its items are recorded as the MPL writes them
    keystore.ensure(named)
    keystore.ensure(kept)
    made.branch_key(settings.keystore_table, named.branch_key_id)  # named after the fact: every item it has

    def items(scope: BranchKeyScope) -> list[dict]:
        return boto3.client("dynamodb").query(TableName=settings.keystore_table, ConsistentRead=True,
                                              **items_of(scope.branch_key_id))["Items"]

    try:
        assert made.remove() == []

        assert items(recorded) == [] and items(named) == []
        assert len(items(kept)) == 3  # its ACTIVE item, its version and its beacon
    finally:
        made.branch_key(settings.keystore_table, kept.branch_key_id)
        made.remove()
