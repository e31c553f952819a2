"""A role that reads objects that may be gone must be told they are gone.

Without s3:ListBucket on the bucket, S3 answers a GET or HEAD of a missing key (or
version) with 403 AccessDenied, not 404. The pipeline skips a source that is gone
(pipeline._GONE) but retries, then dead-letters, one it may not read; ReadObject would
turn a vanished object into a 500; a swept copy's URL would answer 403."""

from __future__ import annotations

import re
from typing import Any, Iterator

from .conftest import as_list, statements

_OBJECTS_OF = re.compile(r"^\$\{([A-Za-z0-9]+)\.Arn\}/")


def _role_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role, statement) for every identity policy statement, attached policies included."""
    for logical_id, resource in resources.items():
        rtype, props = resource.get("Type"), resource.get("Properties", {})
        if rtype == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for stmt in statements(policy.get("PolicyDocument")):
                    yield logical_id, stmt
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role in as_list(props.get("Roles", [])):
                for stmt in statements(props.get("PolicyDocument")):
                    yield (role.get("Ref") if isinstance(role, dict) else str(role)), stmt


def _reads_objects(action: str) -> bool:
    return action in ("s3:*", "s3:Get*") or action.startswith("s3:GetObject")


def reads_without_list(resources: dict[str, Any]) -> list[str]:
    """"<role> reads objects of <bucket> without s3:ListBucket on it" for every such pair."""
    reads: dict[tuple[str, str], str] = {}
    lists: set[tuple[str, str]] = set()
    for role, stmt in _role_statements(resources):
        if stmt.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(stmt.get("Action", []))]
        for resource in as_list(stmt.get("Resource", [])):
            if isinstance(resource, dict) and "Fn::Sub" in resource:
                text = resource["Fn::Sub"] if isinstance(resource["Fn::Sub"], str) else resource["Fn::Sub"][0]
                found = _OBJECTS_OF.match(text)
                if found and any(_reads_objects(a) for a in actions):
                    reads[(role, found.group(1))] = stmt.get("Sid", "")
            elif isinstance(resource, dict) and "Fn::GetAtt" in resource and resource["Fn::GetAtt"][1] == "Arn":
                if "s3:ListBucket" in actions or "s3:*" in actions:
                    lists.add((role, resource["Fn::GetAtt"][0]))
    return [
        f"{role} may read objects of {bucket} ({sid}) but has no s3:ListBucket on {bucket}: "
        f"a missing object answers 403 AccessDenied instead of 404"
        for (role, bucket), sid in sorted(reads.items()) if (role, bucket) not in lists
    ]


def test_every_role_that_reads_objects_may_list_their_bucket_so_missing_means_404(resources):
    offenders = reads_without_list(resources)
    assert not offenders, "\n".join(offenders)


def test_the_missing_object_check_names_the_role_and_bucket_it_catches():
    resources = {"SomeRole": {"Type": "AWS::IAM::Role", "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {
        "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObjectVersion"], "Resource": {"Fn::Sub": "${Bucket.Arn}/*"}},
                      {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": {"Fn::GetAtt": ["Other", "Arn"]}}],
    }}]}}}
    (offender,) = reads_without_list(resources)
    assert offender.startswith("SomeRole may read objects of Bucket (Read)")
    resources["SomeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].append(
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]}})
    assert reads_without_list(resources) == []


def test_the_pipeline_may_list_intake_versions_because_it_reads_sources_by_version(resources):
    listed = {
        a for role, stmt in _role_statements(resources)
        if role == "EncryptObjectFunctionRole" and stmt.get("Effect") == "Allow"
        and {"Fn::GetAtt": ["IntakeBucket", "Arn"]} in as_list(stmt["Resource"])
        for a in as_list(stmt["Action"])
    }
    assert {"s3:ListBucket", "s3:ListBucketVersions"} <= listed, listed
