"""Bridge grants of `atrest rekey`: which roles they are for, and how they are told apart
from the deploy's own grants (docs/byok.md). On the emulator: tests/integration/test_rekey.py."""

from __future__ import annotations

from atrest.crypto.grants import READ_WRITE_OPERATIONS, ROTATE_OPERATIONS, Grantee, grant_name, stack_grant_prefix
from atrest_cli.operations.rekey import bridge_grant_prefix, bridge_grantees

ROLE = "arn:aws:iam::123456789012:role/{stack}-{logical}-0A6F4EFBF9E6"


def _outputs(stack: str = "atrest") -> dict[str, str]:
    return {f"{logical}Arn": ROLE.format(stack=stack, logical=logical)
            for logical in ("EncryptObjectFunctionRole", "ProtectContactFunctionRole", "ExpireKeysFunctionRole",
                            "ReadObjectFunctionRole")}


def test_bridge_grantees_are_the_function_roles_with_the_deploy_grants_operations():
    grantees, missing = bridge_grantees({**_outputs(), "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k"})

    assert missing == []
    assert [(g.role_name.split("-")[1], g.operations) for g in grantees] == [
        ("EncryptObjectFunctionRole", READ_WRITE_OPERATIONS),
        ("ProtectContactFunctionRole", READ_WRITE_OPERATIONS),
        ("ExpireKeysFunctionRole", ROTATE_OPERATIONS),
        ("ReadObjectFunctionRole", ("Decrypt",)),
    ]


def test_outputs_without_role_arns_give_no_grantee_and_name_what_is_missing():
    grantees, missing = bridge_grantees({"KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k",
                                         "ExpireKeysFunctionRoleArn": ""})

    assert grantees == []
    assert missing == ["EncryptObjectFunctionRoleArn", "ProtectContactFunctionRoleArn", "ExpireKeysFunctionRoleArn",
                       "ReadObjectFunctionRoleArn"]


def test_bridge_grants_are_listed_with_the_stacks_grants_but_never_mistaken_for_the_deploys():
    # Retiring bridges goes by name: a deploy grant must never match, whatever the stack is
    # called (a stack named "bridge..." would, with a "-" after "bridge").
    for stack in ("atrest", "bridge", "bridge-prod"):
        bridge = bridge_grant_prefix(stack)
        for grantee in (Grantee(arn) for arn in _outputs(stack).values()):
            deploy_grant = grant_name(stack_grant_prefix(stack), grantee, "1a2b3c4d")
            assert not deploy_grant.startswith(bridge), (stack, deploy_grant)
            assert grant_name(bridge, grantee).startswith(stack_grant_prefix(stack))  # `atrest grants list` shows it
