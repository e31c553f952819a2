"""The IAM fence that makes discovery key store readers safe (docs/byok.md).

The functions' key store readers (`KMSConfigurationDiscovery`) unwrap each branch key
with whatever KMS key its item names. That is safe only because the roles may use no
other key: their identity policies name the stack's key (or `CustomerManagedKeyArn`)
and nothing else, and grants name exactly one key each. A forged key store item naming
another KMS key is then refused by KMS. These tests read template.yaml and fail if any
Lambda function role gets a kms: action on "*" or on another resource. (A key policy's
"*" is the key itself: key policies are not identity policies and are not checked here.)

One statement reaches further, on purpose: the grant function may create grants on keys
of the stack's account and region, because a data class's own key (DataClassKmsKeys)
cannot be named as an ARN in CloudFormation. It is part of the fence only while it can
give nothing but a deploy's own grants: for the stack's function roles, the key store's
operations, under the key store's encryption context (`is_bounded_grant_administration`).
"""

from __future__ import annotations

from typing import Any, Iterator

from atrest_cli.operations.rekey import BRIDGE_ROLE_OUTPUTS

from .conftest import (ACCOUNT_KEYS, FUNCTION_ROLES, Stack, as_list, is_bounded_grant_administration, resource_values,
                       statements)

KEY_PARAMETERS = {"CustomerManagedKeyArn"}
# AWS managed policies a Lambda role may carry: none of them grants a kms: action.
KMS_FREE_MANAGED_POLICIES = ("AWSLambdaBasicExecutionRole", "AWSLambdaSQSQueueExecutionRole",
                             "AWSXRayDaemonWriteAccess", "AWSLambdaVPCAccessExecutionRole")


def _is_lambda_trust(document: Any) -> bool:
    for stmt in statements(document):
        services = (stmt.get("Principal") or {}).get("Service", []) if isinstance(stmt.get("Principal"), dict) else []
        if "lambda.amazonaws.com" in as_list(services):
            return True
    return False


def lambda_roles(resources: dict[str, Any]) -> set[str]:
    """Roles Lambda may assume, and those a function names as its role."""
    roles = {logical_id for logical_id, r in resources.items() if r.get("Type") == "AWS::IAM::Role"
             and _is_lambda_trust(r.get("Properties", {}).get("AssumeRolePolicyDocument"))}
    for resource in resources.values():
        role = resource.get("Properties", {}).get("Role") if resource.get("Type") == "AWS::Serverless::Function" else None
        if isinstance(role, dict) and "Fn::GetAtt" in role:
            roles.add(role["Fn::GetAtt"][0])
    return roles


def _attached_roles(properties: dict[str, Any]) -> set[str]:
    # A conditional role (`!If [cond, !Ref Role, !Ref AWS::NoValue]`) counts: it is attached when it exists.
    return {r["Ref"] for r in resource_values(properties.get("Roles", [])) if isinstance(r, dict) and "Ref" in r}


def role_policy_statements(resources: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(role, where, statement or policy) for every policy that reaches a Lambda function
    role: inline policies, IAM policies attached to it, managed policy ARNs, and the
    Policies of a function SAM makes a role for."""
    roles = lambda_roles(resources)
    for logical_id, resource in resources.items():
        rtype, props = resource.get("Type"), resource.get("Properties", {})
        if rtype == "AWS::IAM::Role" and logical_id in roles:
            for policy in props.get("Policies", []):
                for stmt in statements(policy.get("PolicyDocument")):
                    yield logical_id, f"{logical_id}/{policy.get('PolicyName')}", stmt
            for arn in as_list(props.get("ManagedPolicyArns", [])):
                yield logical_id, f"{logical_id}/ManagedPolicyArns", arn
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            attached = _attached_roles(props) | ({props["RoleName"]["Ref"]} if isinstance(props.get("RoleName"), dict) else set())
            for role in attached & roles:
                for stmt in statements(props.get("PolicyDocument")):
                    yield role, logical_id, stmt
        elif rtype == "AWS::Serverless::Function" and "Role" not in props:
            for policy in as_list(props.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    for stmt in statements(policy):
                        yield f"{logical_id}Role", f"{logical_id}/Policies", stmt
                else:  # a managed policy name or a SAM policy template
                    yield f"{logical_id}Role", f"{logical_id}/Policies", policy


def names_the_stacks_key(value: Any, resources: dict[str, Any]) -> bool:
    """The stack's own KMS key (`!GetAtt <AWS::KMS::Key>.Arn`), the key the user brought
    (`!Ref CustomerManagedKeyArn`), or a condition choosing between them."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (function, argument), = value.items()
    if function == "Fn::GetAtt":
        return argument[1] == "Arn" and resources.get(argument[0], {}).get("Type") == "AWS::KMS::Key"
    if function == "Ref":
        return argument in KEY_PARAMETERS
    if function == "Fn::If":
        return all(names_the_stacks_key(branch, resources) for branch in argument[1:])
    return False


def _may_grant_kms(action: Any) -> bool:
    text = str(action).lower()
    return text == "*" or text.startswith("kms:")


def fence_breaches(resources: dict[str, Any]) -> list[str]:
    breaches = []
    for role, where, stmt in role_policy_statements(resources):
        if not isinstance(stmt, dict) or "Effect" not in stmt:
            if "kms" in str(stmt).lower() or not any(name in str(stmt) for name in KMS_FREE_MANAGED_POLICIES):
                breaches.append(f"{role} ({where}): policy {stmt!r} may grant kms: actions")
            continue
        if stmt.get("Effect") != "Allow" or is_bounded_grant_administration(stmt):
            continue
        if "NotAction" in stmt or "NotResource" in stmt:
            breaches.append(f"{role} ({where}) {stmt.get('Sid', '')}: NotAction/NotResource may reach any KMS key")
            continue
        if not any(_may_grant_kms(a) for a in as_list(stmt.get("Action", []))):
            continue
        breaches += [f"{role} ({where}) {stmt.get('Sid', '')}: kms on {r!r}" for r in as_list(stmt.get("Resource", []))
                     if not names_the_stacks_key(r, resources)]
    return breaches


def test_no_lambda_role_may_use_a_kms_key_other_than_the_stacks(resources):
    breaches = fence_breaches(resources)

    assert not breaches, ("a function role may use KMS keys other than the stack's, so a forged key store item "
                          "could make the discovery reader unwrap with them:\n" + "\n".join(breaches))


def test_the_fence_covers_every_role_that_reads_or_writes_branch_keys(resources):
    kms_roles = {role for role, _, stmt in role_policy_statements(resources)
                 if isinstance(stmt, dict) and any(_may_grant_kms(a) for a in as_list(stmt.get("Action", [])))}

    assert {"EncryptObjectFunctionRole", "ProtectContactFunctionRole", "ExpireKeysFunctionRole"} <= kms_roles
    assert {"EncryptObjectFunctionRole", "ProtectContactFunctionRole", "ExpireKeysFunctionRole",
            "KmsGrantFunctionRole"} <= lambda_roles(resources)


def test_the_fence_check_catches_a_wildcard_a_literal_key_and_an_attached_policy(resources):
    role = {"Type": "AWS::IAM::Role", "Properties": {"AssumeRolePolicyDocument": {"Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}}}

    def policy(action: str, resource: Any) -> dict[str, Any]:
        return {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "Probe"}], "PolicyDocument": {
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}}}

    key = {"Fn::If": ["CreateKmsKey", {"Fn::GetAtt": ["AtrestKmsKey", "Arn"]}, {"Ref": "CustomerManagedKeyArn"}]}
    assert fence_breaches({**resources, "Probe": role, "P": policy("kms:Decrypt", key)}) == []
    for action, resource in (("kms:Decrypt", "*"), ("kms:*", "arn:aws:kms:us-east-1:123456789012:key/other"),
                             ("*", "*"), ("kms:ReEncrypt*", {"Fn::Sub": "arn:aws:kms:${AWS::Region}:${AWS::AccountId}:key/*"})):
        assert fence_breaches({**resources, "Probe": role, "P": policy(action, resource)}), (action, resource)
    for managed, breach in (("AWSLambdaBasicExecutionRole", False), ("AWSKeyManagementServicePowerUser", True)):
        carrying = {**role, "Properties": {**role["Properties"], "ManagedPolicyArns": [
            {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::aws:policy/service-role/{managed}"}]}}
        assert bool(fence_breaches({**resources, "Probe": carrying})) is breach, managed
    # A key policy's "*" (the key itself) is not an identity policy: not a breach.
    assert fence_breaches({**resources, "Probe": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]}}}}) == []


def test_the_grant_functions_reach_beyond_the_stacks_key_is_bounded_to_deploy_grants_for_function_roles(resources):
    """Mutations of the grant function's CreateGrant statement that would let it give anyone,
    anything or any context on the account's keys are breaches."""
    (stmt,) = [s for role, _, s in role_policy_statements(resources) if role == "KmsGrantFunctionRole"
               and isinstance(s, dict) and "kms:CreateGrant" in as_list(s.get("Action", []))]
    role = resources["KmsGrantFunctionRole"]

    def with_statement(changed: dict[str, Any]) -> dict[str, Any]:
        policy = {"PolicyName": "probe", "PolicyDocument": {"Statement": [changed]}}
        return {**resources, "KmsGrantFunctionRole": {**role, "Properties": {**role["Properties"], "Policies": [policy]}}}

    condition = stmt["Condition"]
    assert is_bounded_grant_administration(stmt) and fence_breaches(with_statement(stmt)) == []
    unbounded = {
        "any grantee": {**stmt, "Condition": {**condition, "StringEquals": {
            k: v for k, v in condition["StringEquals"].items() if k != "kms:GranteePrincipal"}}},
        "another grantee": {**stmt, "Condition": {**condition, "StringEquals": {
            **condition["StringEquals"], "kms:GranteePrincipal": [{"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}]}}},
        "any context": {**stmt, "Condition": {k: v for k, v in condition.items() if k != "StringEquals"}},
        "any operation": {**stmt, "Condition": {k: v for k, v in condition.items() if k != "ForAllValues:StringEquals"}},
        "CreateGrant with Encrypt": {**stmt, "Condition": {**condition, "ForAllValues:StringEquals": {
            "kms:GrantOperations": ["Encrypt", "Decrypt"]}}},
        "any key anywhere": {**stmt, "Resource": "*"},
        "a crypto action": {**stmt, "Action": ["kms:CreateGrant", "kms:Decrypt"], "Resource": ACCOUNT_KEYS},
    }
    for why, changed in unbounded.items():
        assert fence_breaches(with_statement(changed)), why


def _named_roles(principal: Any) -> set[str]:
    aws = principal.get("AWS", []) if isinstance(principal, dict) else []
    return {p["Fn::GetAtt"][0] for p in as_list(aws) if isinstance(p, dict) and "Fn::GetAtt" in p}


def test_every_key_policy_statement_naming_a_function_role_is_bound_to_one_key_store(resources):
    """A key policy may name a role directly (no identity policy needed): such a statement
    must hold to one key store's encryption context, so an item of one key store naming
    another key store's KMS key is still refused (the MPL puts `tablename` in every call)."""
    roles = lambda_roles(resources)
    unbound = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::KMS::Key":
            continue
        for stmt in statements(resource.get("Properties", {}).get("KeyPolicy")):
            named = _named_roles(stmt.get("Principal")) & roles
            condition = (stmt.get("Condition") or {}).get("StringEquals") or {}
            if stmt.get("Effect") == "Allow" and named and "kms:EncryptionContext:tablename" not in condition:
                unbound.append(f"{logical_id} {stmt.get('Sid', '')}: {sorted(named)}")

    assert not unbound, "key policy statements naming function roles without a tablename condition:\n" + "\n".join(unbound)


def test_rekey_bridge_grants_give_each_role_what_the_deploys_kms_grants_give_it(template, resources):
    """`atrest rekey` bridges the window with the same per-role operations as KmsGrants."""
    grantees = {g["RoleArn"]["Fn::GetAtt"][0]: tuple(g["Operations"])
                for g in resources["KmsGrants"]["Properties"]["Grantees"]}
    outputs = template["Outputs"]

    bridged = {outputs[name]["Value"]["Fn::GetAtt"][0]: operations for name, operations in BRIDGE_ROLE_OUTPUTS.items()}

    assert bridged == grantees


# -- the explicit Deny: grants cannot widen the fence (issue 15, finding 1) -----------------------

CUSTOMER_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CLASS_KEYS = [f"arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-12345678900{n}" for n in range(4)]
REKEY_KEY = "arn:aws:kms:us-east-1:123456789012:key/9999abcd-12ab-34cd-56ef-1234567890ab"


# The one condition the fence may carry: it holds for every call the function makes to KMS
# itself (no kms:ViaService), which is every call of the key store. Calls a service makes on
# the role's behalf with its AWS managed key (DynamoDB's aws/dynamodb, Lambda's aws/lambda)
# carry kms:ViaService and must not be denied.
DIRECT_CALLS_ONLY = {"Null": {"kms:ViaService": "true"}}


def _fence_statements(resources: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Role -> the explicit Deny statements on every KMS key but some, that reach it."""
    found: dict[str, list[dict[str, Any]]] = {}
    for role, _, stmt in role_policy_statements(resources):
        if (isinstance(stmt, dict) and stmt.get("Effect") == "Deny" and "NotResource" in stmt
                and any(str(a).lower() in ("kms:*", "*") for a in as_list(stmt.get("Action", [])))
                and stmt.get("Condition", DIRECT_CALLS_ONLY) == DIRECT_CALLS_ONLY):
            found.setdefault(role, []).append(stmt)
    return found


def test_every_function_role_denies_every_kms_key_but_the_stacks_whatever_a_grant_says(resources):
    """A key's owner can grant these role ARNs anything without an identity policy; only an
    explicit Deny in their own policies stops that (KMS evaluates it before grants)."""
    fenced = _fence_statements(resources)
    roles = lambda_roles(resources)

    assert roles >= FUNCTION_ROLES | {"SweepRetrievalsFunctionRole", "KmsGrantFunctionRole"}
    assert not roles - set(fenced), f"function roles without the KMS fence: {sorted(roles - set(fenced))}"
    # The mutation check: a condition that would let the key store's own calls through is no fence.
    (stmt,) = {id(s): s for found in fenced.values() for s in found}.values()
    policy = next(logical_id for logical_id, r in resources.items() if r.get("Type") == "AWS::IAM::Policy"
                  and stmt in statements(r["Properties"]["PolicyDocument"]))
    for weaker in ({"StringEquals": {"kms:EncryptionContext:tablename": "other"}}, {"Null": {"kms:ViaService": "false"}}):
        changed = {**resources, policy: {**resources[policy], "Properties": {**resources[policy]["Properties"],
                   "PolicyDocument": {"Statement": [{**stmt, "Condition": weaker}]}}}}
        assert not _fence_statements(changed), weaker


def test_the_fence_names_exactly_the_keys_the_stack_uses_in_each_configuration(template, resources):
    (stmt,) = {id(s): s for statements_ in _fence_statements(resources).values() for s in statements_}.values()
    service = "AtrestServiceKmsKey.Arn"

    def allowed(**parameters: Any) -> set[str]:
        stack = Stack.with_defaults(template, **parameters)
        return set(as_list(stack.resolve(stmt["NotResource"])))

    assert allowed() == {"AtrestKmsKey.Arn", service}
    assert allowed(CustomerManagedKeyArn=CUSTOMER_KEY) == {CUSTOMER_KEY, service}
    assert allowed(CustomerManagedKeyArn=CUSTOMER_KEY, RekeyKmsKeyArn=REKEY_KEY) == {CUSTOMER_KEY, service, REKEY_KEY}
    pairs = ",".join(f"class-{n}={key}" for n, key in enumerate(CLASS_KEYS))
    assert allowed(DataClassKmsKeys=pairs) == {"AtrestKmsKey.Arn", service, *CLASS_KEYS}
    assert allowed(DataClassKmsKeys=f"integration-configuration={CLASS_KEYS[2]}") == {"AtrestKmsKey.Arn", service, CLASS_KEYS[2]}
    # Never a wildcard: a planter's key in the stack's own account stays outside.
    stack = Stack.with_defaults(template, DataClassKmsKeys=pairs, RekeyKmsKeyArn=REKEY_KEY)
    assert not [r for r in as_list(stack.resolve(stmt["NotResource"])) if "*" in str(r)]


def test_the_fence_has_a_slot_for_as_many_class_keys_as_the_settings_accept(template):
    from atrest.core.settings import MAX_DATA_CLASS_KMS_KEYS

    slots = [name for name in template["Conditions"] if name.startswith("HasClassKmsKey")]
    assert len(slots) == MAX_DATA_CLASS_KMS_KEYS


def test_a_refused_key_store_item_raises_an_alarm_from_every_reader_log_group(resources):
    from atrest.crypto.keystore import REFUSED_ITEM_LOG_TOKEN

    filters = {r["Properties"]["LogGroupName"]["Ref"]: r["Properties"] for r in resources.values()
               if r.get("Type") == "AWS::Logs::MetricFilter"
               and r["Properties"]["MetricTransformations"][0]["MetricName"] == "KeyStoreItemRefused"}
    readers = {"EncryptObjectLogGroup", "ProtectContactLogGroup", "ExpireKeysLogGroup", "ReadObjectLogGroup"}

    assert set(filters) == readers
    assert all(REFUSED_ITEM_LOG_TOKEN in f["FilterPattern"] for f in filters.values())
    assert all(f["MetricTransformations"][0]["MetricNamespace"] == "Atrest" for f in filters.values())
    (alarm,) = [r["Properties"] for r in resources.values()
                if r.get("Type") == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == "KeyStoreItemRefused"]
    assert alarm["Namespace"] == "Atrest" and alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and "Dimensions" not in alarm


def test_a_grant_retirable_by_anyone_but_the_grant_function_is_a_breach(resources):
    (stmt,) = [s for role, _, s in role_policy_statements(resources) if role == "KmsGrantFunctionRole"
               and isinstance(s, dict) and "kms:CreateGrant" in as_list(s.get("Action", []))]
    condition = stmt["Condition"]
    equals = {k: v for k, v in condition["StringEquals"].items() if k != "kms:RetiringPrincipal"}

    assert is_bounded_grant_administration(stmt)
    assert not is_bounded_grant_administration({**stmt, "Condition": {**condition, "StringEquals": equals}})
    assert not is_bounded_grant_administration({**stmt, "Condition": {**condition, "StringEquals": {
        **equals, "kms:RetiringPrincipal": {"Fn::GetAtt": ["EncryptObjectFunctionRole", "Arn"]}}}})
