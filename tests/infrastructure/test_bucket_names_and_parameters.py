"""Whatever a (valid) stack is called, and wherever it runs, its bucket names are valid S3
names; parameters that would only fail deep inside a deployment are refused up front."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .conftest import ACCOUNT_ID, Stack, stack_id

# S3 general purpose bucket naming rules (the ones a generated name can break).
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# CloudFormation stack names: a letter, then letters, digits and hyphens, 128 at most.
STACK_NAMES = ["atrest", "Atrest-Prod", "A" + "b-C" * 42 + "d", "x"]
# Long and short region names; us-isof-south-1 is one of the longest.
REGIONS = ["us-east-1", "ap-southeast-5", "us-isof-south-1"]


def bucket_names(template: dict[str, Any], stack_name: str, region: str) -> dict[str, str]:
    stack = Stack.with_defaults(template)
    stack.parameters.update({
        "AWS::StackName": stack_name, "AWS::Region": region, "AWS::StackId": stack_id(stack_name, ACCOUNT_ID, region),
    })
    return {
        logical_id: stack.resolve(resource["Properties"]["BucketName"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::S3::Bucket" and "BucketName" in resource.get("Properties", {})
    }


def test_the_stack_names_tried_are_valid_cloudformation_stack_names():
    assert max(len(name) for name in STACK_NAMES) == 128
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", name) for name in STACK_NAMES)


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("stack_name", STACK_NAMES)
def test_every_bucket_name_is_a_valid_s3_name_whatever_the_stack_is_called(template, stack_name, region):
    names = bucket_names(template, stack_name, region)
    assert {"IntakeBucket", "VaultBucket", "RetrievalBucket", "BackfillResultsBucket"} <= set(names)
    invalid = {
        logical_id: name for logical_id, name in names.items()
        if not BUCKET_NAME.match(name) or ".." in name or "-." in name or ".-" in name
    }
    assert not invalid, f"stack {stack_name!r} in {region}: invalid bucket names {invalid}"


def test_bucket_names_of_two_stacks_in_one_account_and_region_differ(template):
    first, second = bucket_names(template, "atrest", "us-east-1"), bucket_names(template, "Atrest", "us-east-1")
    assert not set(first.values()) & set(second.values())


def test_bucket_names_still_say_what_they_hold_account_and_region(template):
    for logical_id, name in bucket_names(template, "Atrest-Prod", "eu-west-1").items():
        assert name.startswith("atrest-") and name.endswith(f"-{ACCOUNT_ID}-eu-west-1"), (logical_id, name)


# --------------------------------------------------------------------------- DecryptorRoleArns


def _decryptor_pattern(template: dict[str, Any]) -> re.Pattern[str]:
    spec = template["Parameters"]["DecryptorRoleArns"]
    assert spec["Type"] == "CommaDelimitedList" and spec.get("ConstraintDescription")
    assert "already exist" in spec["Description"]
    # CloudFormation matches each member of the list against the whole pattern (Java's
    # \w is ASCII, hence re.ASCII).
    return re.compile(spec["AllowedPattern"], re.ASCII)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "arn:aws:iam::123456789012:role/QaReviewer",
        "arn:aws:iam::123456789012:role/service-role/legal+hold=x,y.z@corp_1-2",
        "arn:aws-us-gov:iam::123456789012:role/Auditor",
        "arn:aws-cn:iam::123456789012:role/a/b/Auditor",
    ],
)
def test_decryptor_role_arns_accepts_full_role_arns_and_empty(template, value):
    assert _decryptor_pattern(template).fullmatch(value), value


@pytest.mark.parametrize(
    "value",
    [
        "QaReviewer",  # a bare role name: KMS key policies need the ARN
        "arn:aws:iam::12345678901:role/QaReviewer",  # 11-digit account
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:root",
        "arn:aws:sts::123456789012:assumed-role/QaReviewer/jane",
        "arn:aws:iam::123456789012:role/*",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/Qa Reviewer",
        "arn:aws:iam:us-east-1:123456789012:role/QaReviewer",
        "arn:aws:iam::123456789012:role/QaReviewer\narn:aws:iam::123456789012:role/Other",
    ],
)
def test_decryptor_role_arns_refuses_what_kms_would_call_an_invalid_principal(template, value):
    assert not _decryptor_pattern(template).fullmatch(value), value
