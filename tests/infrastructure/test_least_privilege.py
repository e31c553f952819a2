"""Least privilege, read from template.yaml: every role reaches only this stack's own data,
and the vault takes content only from the pipeline, by any write path. (Wildcard actions
and `*` resources, intake prefixes, key store access, TLS, public access and decryptor
reads: test_template_structure.py.)"""

from __future__ import annotations

import re
from typing import Any

from .conftest import as_list, identity_policy_statements, is_bounded_grant_administration, statements
from .test_template_structure import _actions_by_resource

DATA_SERVICES = ("s3", "dynamodb", "kms")
# Parameters that name a resource of the user's own choosing, on purpose.
RESOURCE_PARAMETERS = {"CustomerManagedKeyArn"}


def names_a_stack_resource(value: Any, resources: dict[str, Any]) -> bool:
    """True when an IAM Resource value can only resolve to one of the stack's own resources
    (or a parameter that names the user's own key), never to a literal or a wildcard ARN."""
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), = value.items()
        if function == "Fn::GetAtt":
            return argument[0] in resources
        if function == "Ref":
            return argument in resources or argument in RESOURCE_PARAMETERS
        if function == "Fn::Sub":
            text = argument if isinstance(argument, str) else argument[0]
            first = re.match(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", text)
            return bool(first) and (first.group(1) in resources or first.group(1) in RESOURCE_PARAMETERS)
        if function == "Fn::If":
            return all(names_a_stack_resource(branch, resources) for branch in argument[1:])
    return False


def test_every_data_action_of_every_role_is_granted_on_this_stacks_own_resources_only(resources):
    offenders = []
    for where, stmt in identity_policy_statements(resources):
        if stmt.get("Effect") != "Allow":
            continue
        if not any(str(a).split(":")[0] in DATA_SERVICES for a in as_list(stmt["Action"])):
            continue
        # The grant function on keys of the account a data class names (test_kms_fence.py bounds it).
        if is_bounded_grant_administration(stmt):
            continue
        offenders += [f"{where} {stmt.get('Sid', '')}: {r!r}" for r in as_list(stmt["Resource"])
                      if not names_a_stack_resource(r, resources)]
    assert not offenders, "data actions on resources that are not this stack's:\n" + "\n".join(offenders)


def test_the_resource_check_rejects_literal_and_wildcard_arns(resources):
    assert not names_a_stack_resource("arn:aws:s3:::*", resources)
    assert not names_a_stack_resource({"Fn::Sub": "arn:${AWS::Partition}:s3:::*"}, resources)
    assert names_a_stack_resource({"Fn::Sub": "${VaultBucket.Arn}/*"}, resources)


def test_the_pipeline_may_remove_vault_versions_but_not_objects_buckets_or_policies(resources):
    vault = _actions_by_resource(resources, "EncryptObjectFunctionRole")
    assert vault[repr({"Fn::Sub": "${VaultBucket.Arn}/*"})] == {
        "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
        "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion",
    }
    # Finding an earlier attempt's leftovers at one vault key: listing, nothing else, on the bucket.
    assert vault[repr({"Fn::GetAtt": ["VaultBucket", "Arn"]})] == {
        "s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"}
    everything = set().union(*vault.values())
    assert not everything & {"s3:DeleteObject", "s3:DeleteBucket", "s3:PutBucketPolicy", "s3:PutLifecycleConfiguration",
                             "s3:PutBucketVersioning", "s3:PutObjectAcl"}


def test_no_principal_but_the_pipeline_writes_vault_content_by_any_write_path(resources):
    (policy,) = [r["Properties"]["PolicyDocument"] for r in resources.values()
                 if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": "VaultBucket"}]
    (deny,) = [s for s in statements(policy) if s["Effect"] == "Deny" and "s3:PutObject" in as_list(s["Action"])]
    # PutObject covers PutObject, CopyObject, CreateMultipartUpload, UploadPart(Copy) and
    # CompleteMultipartUpload; ReplicateObject is how S3 replication writes into a bucket.
    assert set(as_list(deny["Action"])) == {"s3:PutObject", "s3:ReplicateObject"}
    assert deny["Principal"] == "*" and deny["Resource"] == {"Fn::Sub": "${VaultBucket.Arn}/*"}
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["EncryptObjectFunctionRole", "Arn"]}}}


def test_only_the_pipeline_role_is_granted_vault_writes(resources):
    writers = {where.split("/")[0] for where, stmt in identity_policy_statements(resources)
               if stmt.get("Effect") == "Allow" and "s3:PutObject" in as_list(stmt["Action"])
               and any("VaultBucket" in repr(r) for r in as_list(stmt["Resource"]))}
    assert writers == {"EncryptObjectFunctionRole"}
