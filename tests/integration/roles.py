"""Clients with one of the local stack's function roles' credentials (assumed in the
emulator, which holds them to the role's policies, the key policies and grants)."""

from __future__ import annotations

from typing import Any

import boto3

from atrest.core.clients import AwsClients
from atrest_cli.local.iam_enforcement import assumed_role_environment


def role_clients(state: Any, role_output: str, session_name: str = "integration-test") -> AwsClients:
    """`AwsClients` as the role the stack output `role_output` names (e.g. "ReadObjectFunctionRoleArn")."""
    credentials = assumed_role_environment(state.endpoint, state.region, state.outputs[role_output], session_name)
    return AwsClients(session=boto3.session.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=state.region))
