"""ReadObject callers who follow the docs are let in by Lambda.

Function URLs with AuthType AWS_IAM created since October 2025 require the caller's
policy to allow both lambda:InvokeFunctionUrl and lambda:InvokeFunction, the latter with
the condition lambda:InvokedViaFunctionUrl "true" (which keeps it to calls through the
URL). A caller allowed only the first gets 403 from Lambda, before anything is audited."""

from __future__ import annotations

import json
import re
from typing import Any

from .conftest import REPO, as_list

AUDIT_DOC = REPO / "docs" / "audit.md"


def documented_caller_policy() -> dict[str, Any]:
    """The JSON policy block of docs/audit.md that lets a caller use the function URL."""
    blocks = re.findall(r"```json\n(.*?)```", AUDIT_DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    policies = [json.loads(block) for block in blocks if "lambda:InvokeFunctionUrl" in block]
    assert len(policies) == 1, f"docs/audit.md should show one caller policy for the function URL, found {len(policies)}"
    return policies[0]


def allowed(policy: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in as_list(policy["Statement"]) if s["Effect"] == "Allow" and action in as_list(s["Action"])]


def test_the_documented_caller_policy_allows_invoke_function_url_with_iam_auth():
    (stmt,) = allowed(documented_caller_policy(), "lambda:InvokeFunctionUrl")
    assert stmt["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}


def test_the_documented_caller_policy_also_allows_invoke_function_only_via_the_url():
    policy = documented_caller_policy()
    invoke = allowed(policy, "lambda:InvokeFunction")
    assert invoke, "docs/audit.md's caller policy lacks lambda:InvokeFunction: Lambda answers such callers 403"
    (stmt,) = invoke
    assert stmt["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}, (
        "without lambda:InvokedViaFunctionUrl the caller could also invoke ReadObject directly"
    )
    (url,) = allowed(policy, "lambda:InvokeFunctionUrl")
    assert stmt["Resource"] == url["Resource"], "both actions on the same function"


def test_the_function_url_output_names_both_actions_and_the_function_arn_is_an_output(template):
    description = template["Outputs"]["ReadObjectFunctionUrl"]["Description"]
    for needed in ("lambda:InvokeFunctionUrl", "lambda:InvokeFunction ", "lambda:InvokedViaFunctionUrl"):
        assert needed in description, f"ReadObjectFunctionUrl's description does not name {needed.strip()}"
    assert template["Outputs"]["ReadObjectFunctionArn"]["Value"] == {"Fn::GetAtt": ["ReadObjectFunction", "Arn"]}
