"""IAM identity-policy evaluation (atrest_cli.local.iam_policies) follows IAM's documented rules."""

from __future__ import annotations

from typing import Any

import pytest

from atrest_cli.local.iam_policies import Policy, PolicyError, arn_match, evaluate

BUCKET_OBJECTS = "arn:aws:s3:::bucket-a/*"


def policy(*statements: dict[str, Any], version: str = "2012-10-17") -> Policy:
    return Policy.parse({"Version": version, "Statement": list(statements)})


def allow(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def allowed(policies: Policy | list[Policy], action: str, resource: str = "*", context: dict[str, Any] | None = None) -> bool:
    return evaluate(policies if isinstance(policies, list) else [policies], action, resource, context).allowed


def test_nothing_is_allowed_without_an_allow() -> None:
    decision = evaluate([], "s3:GetObject", "arn:aws:s3:::b/k")
    assert not decision.allowed and decision.reason == "implicit_deny"


def test_explicit_deny_wins_over_any_allow_in_any_policy() -> None:
    grants = policy(allow("s3:*", "*"))
    denies = policy({"Sid": "NoB", "Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})
    decision = evaluate([grants, denies], "s3:GetObject", "arn:aws:s3:::b/k")
    assert (decision.allowed, decision.reason, decision.sid) == (False, "explicit_deny", "NoB")
    assert allowed([grants, denies], "s3:GetObject", "arn:aws:s3:::c/k")


def test_action_wildcards_match_case_insensitively() -> None:
    assert allowed(policy(allow("S3:get*", BUCKET_OBJECTS)), "s3:GetObject", "arn:aws:s3:::bucket-a/k")
    assert allowed(policy(allow("s3:GetObject?ersion", BUCKET_OBJECTS)), "s3:GetObjectVersion", "arn:aws:s3:::bucket-a/k")
    assert not allowed(policy(allow("s3:Get*", BUCKET_OBJECTS)), "s3:PutObject", "arn:aws:s3:::bucket-a/k")
    assert not allowed(policy(allow("s3:GetObject", BUCKET_OBJECTS)), "s3:GetObjectVersion", "arn:aws:s3:::bucket-a/k")


def test_action_list_allows_any_listed_action() -> None:
    statement = policy(allow(["dynamodb:GetItem", "dynamodb:PutItem"], "*"))
    assert allowed(statement, "dynamodb:PutItem") and not allowed(statement, "dynamodb:DeleteItem")


def test_resource_wildcards_match_case_sensitively_and_per_arn_part() -> None:
    statement = policy(allow("s3:GetObject", "arn:aws:s3:::bucket-?/in/*"))
    assert allowed(statement, "s3:GetObject", "arn:aws:s3:::bucket-a/in/deep/key")
    assert not allowed(statement, "s3:GetObject", "arn:aws:s3:::Bucket-a/in/key")
    assert not allowed(statement, "s3:GetObject", "arn:aws:s3:::bucket-ab/in/key")
    # A wildcard in one ARN part never swallows a colon into the next part.
    assert not arn_match("arn:aws:kms:*:key/k", "arn:aws:kms:us-east-1:123456789012:key/k")
    assert arn_match("arn:aws:kms:*:*:key/*", "arn:aws:kms:us-east-1:123456789012:key/k")
    assert arn_match("arn:aws:logs:*:*:log-group:/aws/*", "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/f:*")


def test_not_action_applies_to_every_other_action() -> None:
    statement = policy({"Effect": "Allow", "NotAction": "s3:DeleteObject", "Resource": "*"})
    assert allowed(statement, "s3:GetObject") and not allowed(statement, "s3:DeleteObject")


def test_not_resource_applies_to_every_other_resource() -> None:
    statement = policy(allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::bucket-a/*"})
    assert allowed(statement, "s3:GetObject", "arn:aws:s3:::bucket-a/k")
    assert not allowed(statement, "s3:GetObject", "arn:aws:s3:::bucket-b/k")


def test_string_equals_on_kms_encryption_context() -> None:
    statement = policy(allow("kms:Decrypt", "*", Condition={"StringEquals": {"kms:EncryptionContext:tablename": ["T", "U"]}}))
    assert allowed(statement, "kms:Decrypt", "*", {"kms:EncryptionContext:tablename": "U"})
    assert not allowed(statement, "kms:Decrypt", "*", {"kms:EncryptionContext:tablename": "V"})
    assert not allowed(statement, "kms:Decrypt", "*", {}), "a missing key never satisfies a positive operator"


def test_condition_key_names_are_case_insensitive_but_values_are_not() -> None:
    statement = policy(allow(Condition={"StringEquals": {"AWS:PrincipalArn": "arn:aws:iam::1:role/R"}}))
    assert allowed(statement, "s3:GetObject", "*", {"aws:principalarn": "arn:aws:iam::1:role/R"})
    assert not allowed(statement, "s3:GetObject", "*", {"aws:PrincipalArn": "arn:aws:iam::1:role/r"})


def test_negated_operators_hold_when_the_key_is_missing() -> None:
    statement = policy(allow(Condition={"StringNotEquals": {"kms:EncryptionContext:tablename": "secret"}}))
    assert allowed(statement, "kms:Decrypt", "*", {})
    assert allowed(statement, "kms:Decrypt", "*", {"kms:EncryptionContext:tablename": "other"})
    assert not allowed(statement, "kms:Decrypt", "*", {"kms:EncryptionContext:tablename": "secret"})


def test_string_like_and_not_like() -> None:
    like = policy(allow(Condition={"StringLike": {"s3:prefix": ["home/*", "shared/?"]}}))
    assert allowed(like, "s3:ListBucket", "*", {"s3:prefix": "home/alice/"})
    assert allowed(like, "s3:ListBucket", "*", {"s3:prefix": "shared/x"})
    assert not allowed(like, "s3:ListBucket", "*", {"s3:prefix": "shared/xy"})
    not_like = policy(allow(Condition={"StringNotLike": {"s3:prefix": "private/*"}}))
    assert not allowed(not_like, "s3:ListBucket", "*", {"s3:prefix": "private/x"})


def test_if_exists_holds_when_the_key_is_missing_and_checks_it_when_present() -> None:
    statement = policy(allow(Condition={"StringEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}))
    assert allowed(statement, "s3:PutObject", "*", {})
    assert allowed(statement, "s3:PutObject", "*", {"s3:x-amz-server-side-encryption": "aws:kms"})
    assert not allowed(statement, "s3:PutObject", "*", {"s3:x-amz-server-side-encryption": "AES256"})


def test_null_checks_presence() -> None:
    absent = policy(allow(Condition={"Null": {"aws:SourceAccount": "true"}}))
    present = policy(allow(Condition={"Null": {"aws:SourceAccount": "false"}}))
    assert allowed(absent, "x:Y") and not allowed(present, "x:Y")
    assert allowed(present, "x:Y", "*", {"aws:SourceAccount": "1"}) and not allowed(absent, "x:Y", "*", {"aws:SourceAccount": "1"})


def test_bool_secure_transport_deny_applies_to_the_plain_http_emulator() -> None:
    statements = policy(allow("s3:*"), {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": False}}})
    assert not allowed(statements, "s3:GetObject", "*", {"aws:SecureTransport": "false"})
    assert allowed(statements, "s3:GetObject", "*", {"aws:SecureTransport": "true"})


def test_arn_operators() -> None:
    statement = policy(allow(Condition={"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/atrest-*"}}))
    assert allowed(statement, "x:Y", "*", {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/atrest-EncryptRole-1"})
    assert not allowed(statement, "x:Y", "*", {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/other"})
    not_equals = policy(allow(Condition={"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::1:role/r"}}))
    assert not allowed(not_equals, "x:Y", "*", {"aws:PrincipalArn": "arn:aws:iam::1:role/r"})
    assert allowed(not_equals, "x:Y", "*", {})


def test_numeric_and_date_operators() -> None:
    statement = policy(allow(Condition={"NumericLessThanEquals": {"s3:max-keys": "10"},
                                        "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}))
    assert allowed(statement, "s3:ListBucket", "*", {"s3:max-keys": "10", "aws:CurrentTime": "2026-01-01T00:00:00Z"})
    assert not allowed(statement, "s3:ListBucket", "*", {"s3:max-keys": "11", "aws:CurrentTime": "2026-01-01T00:00:00Z"})
    assert not allowed(statement, "s3:ListBucket", "*", {"s3:max-keys": "not a number", "aws:CurrentTime": "2026-01-01T00:00:00Z"})


def test_ip_address_operator() -> None:
    statement = policy(allow(Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))
    assert allowed(statement, "x:Y", "*", {"aws:SourceIp": "127.0.0.1"}) and not allowed(statement, "x:Y", "*", {"aws:SourceIp": "10.0.0.1"})


def test_for_all_values_and_for_any_value_on_multivalued_keys() -> None:
    all_of = policy(allow(Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["tablename", "column"]}}))
    assert allowed(all_of, "kms:Decrypt", "*", {"kms:EncryptionContextKeys": ["tablename"]})
    assert not allowed(all_of, "kms:Decrypt", "*", {"kms:EncryptionContextKeys": ["tablename", "other"]})
    assert allowed(all_of, "kms:Decrypt", "*", {}), "ForAllValues holds for a missing key"
    any_of = policy(allow(Condition={"ForAnyValue:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}))
    assert allowed(any_of, "kms:CreateGrant", "*", {"kms:GrantOperations": ["Encrypt", "Decrypt"]})
    assert not allowed(any_of, "kms:CreateGrant", "*", {"kms:GrantOperations": ["Encrypt"]})
    assert not allowed(any_of, "kms:CreateGrant", "*", {}), "ForAnyValue fails for a missing key"


def test_conditions_and_together_and_values_or_together() -> None:
    statement = policy(allow(Condition={"StringEquals": {"a:k1": ["x", "y"], "a:k2": "z"}}))
    assert allowed(statement, "a:B", "*", {"a:k1": "y", "a:k2": "z"})
    assert not allowed(statement, "a:B", "*", {"a:k1": "y", "a:k2": "w"})


def test_policy_variables_in_resources_and_condition_values() -> None:
    statement = policy(allow("s3:*", "arn:aws:s3:::home/${aws:userid}/*",
                             Condition={"StringEquals": {"aws:PrincipalArn": "${aws:PrincipalArn}"}}))
    context = {"aws:userid": "AROA:session", "aws:PrincipalArn": "arn:aws:iam::1:role/r"}
    assert allowed(statement, "s3:GetObject", "arn:aws:s3:::home/AROA:session/k", context)
    assert not allowed(statement, "s3:GetObject", "arn:aws:s3:::home/other/k", context)
    assert not allowed(statement, "s3:GetObject", "arn:aws:s3:::home/${aws:userid}/k", {}), "a missing variable matches nothing"


def test_policy_variables_are_literal_text_in_old_policy_versions() -> None:
    statement = policy(allow("s3:*", "arn:aws:s3:::home/${aws:userid}/*"), version="2008-10-17")
    assert allowed(statement, "s3:GetObject", "arn:aws:s3:::home/${aws:userid}/k", {"aws:userid": "u"})


def test_policy_accepts_json_text_and_single_statement_objects() -> None:
    parsed = Policy.parse('{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}}')
    assert allowed(parsed, "sqs:SendMessage")


@pytest.mark.parametrize("statement", [
    {"Effect": "Permit", "Action": "*", "Resource": "*"},
    {"Effect": "Allow", "Resource": "*"},
    {"Effect": "Allow", "Action": "*"},
    {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringSort": {"a": "b"}}},
])
def test_malformed_statements_are_rejected(statement: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        policy(statement)
