"""Alarms reach someone: CloudWatch must be able to publish to the encrypted alarm topic.

An SNS topic encrypted with the AWS managed key (alias/aws/sns) takes no alarm: that
key's policy cannot be changed, and it does not let CloudWatch use it, so every publish
fails and the alarm changes state without telling anyone."""

from __future__ import annotations

from typing import Any

from .conftest import as_list, statements


def _topic_key(resources: dict[str, Any]) -> Any:
    return resources["AlarmTopic"]["Properties"].get("KmsMasterKeyId")


def _key_logical_id(resources: dict[str, Any], reference: Any) -> str:
    """The stack's own AWS::KMS::Key a KmsMasterKeyId names (GetAtt Arn, Ref, or an alias of it)."""
    assert isinstance(reference, dict), f"the alarm topic's key is the literal {reference!r}, not a key of this stack"
    if "Fn::GetAtt" in reference:
        logical_id = reference["Fn::GetAtt"][0]
    else:
        logical_id = reference.get("Ref")
    if resources.get(logical_id, {}).get("Type") == "AWS::KMS::Alias":
        logical_id = resources[logical_id]["Properties"]["TargetKeyId"]["Ref"]
    assert resources.get(logical_id, {}).get("Type") == "AWS::KMS::Key", f"{reference!r} is not a KMS key of this stack"
    return logical_id


def test_the_alarm_topic_is_encrypted_with_a_key_of_this_stack_not_an_aws_managed_one(resources):
    reference = _topic_key(resources)
    assert reference, "the alarm topic should be encrypted at rest"
    assert not (isinstance(reference, str) and reference.startswith("alias/aws/")), (
        f"AlarmTopic uses the AWS managed key {reference}: CloudWatch cannot use it, so no alarm is ever delivered"
    )
    _key_logical_id(resources, reference)


def test_the_alarm_key_lets_cloudwatch_of_this_account_encrypt_alarm_messages(resources):
    key = resources[_key_logical_id(resources, _topic_key(resources))]
    granted = [
        s for s in statements(key["Properties"]["KeyPolicy"])
        if s["Effect"] == "Allow" and "cloudwatch.amazonaws.com" in as_list((s.get("Principal") or {}).get("Service", []))
    ]
    assert granted, "the alarm topic's key policy does not let cloudwatch.amazonaws.com use the key"
    actions = {a for s in granted for a in as_list(s["Action"])}
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= actions, actions
    for stmt in granted:
        assert stmt["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, (
            "CloudWatch may use the key for alarms of this account only"
        )


def test_the_alarm_key_rotates_has_an_alias_and_stays_administrable(resources):
    logical_id = _key_logical_id(resources, _topic_key(resources))
    props = resources[logical_id]["Properties"]
    assert props["EnableKeyRotation"] is True
    root = [s for s in statements(props["KeyPolicy"])
            if s["Effect"] == "Allow" and ":root" in str(s.get("Principal")) and s["Action"] == "kms:*"]
    assert root, "the account must keep administering the key (KMS lockout safety check)"
    aliases = [r for r in resources.values()
               if r["Type"] == "AWS::KMS::Alias" and r["Properties"]["TargetKeyId"] == {"Ref": logical_id}]
    assert aliases, f"{logical_id} has no alias"


def test_the_alarm_key_names_no_service_but_the_alarms_publisher(resources):
    # SNS uses the topic's key on the publisher's behalf: CloudWatch is the only service the
    # key policy must name, and least privilege says no other.
    key = resources[_key_logical_id(resources, _topic_key(resources))]
    services = {service for s in statements(key["Properties"]["KeyPolicy"])
                for service in as_list((s.get("Principal") or {}).get("Service", []))}
    assert services == {"cloudwatch.amazonaws.com"}
