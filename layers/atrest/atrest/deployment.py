"""Which deployed stack the operator CLI works on, turned into `Settings`.

In order: `ATREST_*` variables (as the functions see them); a running local stack's
state file (written by `atrest local up`); a CloudFormation stack's outputs on AWS.
The local state file and CloudFormation give the same `Outputs`, read the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from atrest.errors import ConfigurationError
from atrest.settings import Settings

DEFAULT_STACK = "atrest"
DEFAULT_STATE_FILE = Path(".atrest") / "local-stack.json"

# template.yaml Outputs -> the variables Settings reads.
OUTPUT_VARIABLES = {
    "IntakeBucketName": "ATREST_INTAKE_BUCKET",
    "VaultBucketName": "ATREST_VAULT_BUCKET",
    "KeyStoreTableName": "ATREST_KEYSTORE_TABLE",
    "MetadataTableName": "ATREST_METADATA_TABLE",
    "IdempotencyTableName": "ATREST_IDEMPOTENCY_TABLE",
    "KmsKeyArn": "ATREST_KMS_KEY_ARN",
    "ServiceKeyStoreTableName": "ATREST_SERVICE_KEYSTORE_TABLE",
    "ServiceKmsKeyArn": "ATREST_SERVICE_KMS_KEY_ARN",
    "AuditTableName": "ATREST_AUDIT_TABLE",
    "RetrievalBucketName": "ATREST_RETRIEVAL_BUCKET",
}
PARAMETER_VARIABLES = {
    "ConnectPrefix": "ATREST_CONNECT_PREFIX",
    "KnowledgeDocumentPrefix": "ATREST_KNOWLEDGE_PREFIX",
    "BranchKeyCacheTtlSeconds": "ATREST_CACHE_TTL_SECONDS",
    "FrameLengthBytes": "ATREST_FRAME_LENGTH",
    "KeepSourceObjects": "ATREST_KEEP_SOURCE",
    # Key lifetimes: `atrest keys` applies the stack's own policy.
    "InstanceKeyRotationHours": "ATREST_INSTANCE_KEY_ROTATION_HOURS",
    "AccountKeyRotationDays": "ATREST_ACCOUNT_KEY_ROTATION_DAYS",
    "InstanceKeyRetentionDays": "ATREST_INSTANCE_KEY_RETENTION_DAYS",
    "AccountKeyRetentionDays": "ATREST_ACCOUNT_KEY_RETENTION_DAYS",
    "ShredInstanceKeys": "ATREST_SHRED_INSTANCE_KEYS",
    "ShredAccountKeys": "ATREST_SHRED_ACCOUNT_KEYS",
    "RetrievalLifetimeMinutes": "ATREST_RETRIEVAL_LIFETIME_MINUTES",
    # A KMS key per data class (docs/byok.md): `<class>=<key ARN>` pairs.
    "DataClassKmsKeys": "ATREST_DATA_CLASS_KMS_KEYS",
}


def _parameter_text(value: Any) -> str:
    """A parameter as the functions' environment carries it: a list parameter (the local
    stack keeps CommaDelimitedList values as lists) joined with commas, as `!Join` does."""
    return ",".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)


def settings_from_outputs(outputs: Mapping[str, str], account_id: str, parameters: Mapping[str, str] | None = None) -> Settings:
    env = {variable: outputs[name] for name, variable in OUTPUT_VARIABLES.items() if name in outputs}
    env.update({v: _parameter_text(parameters[p]) for p, v in PARAMETER_VARIABLES.items() if parameters and p in parameters})
    env["ATREST_ACCOUNT_ID"] = account_id
    return Settings.from_env(env)


def load_local_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ConfigurationError(f"no local stack state at {path}; start one with `atrest local up`") from error


def apply_local_endpoint(state: Mapping[str, Any], environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Point boto3 at the local emulator the state file names (only the standard variables)."""
    environ["AWS_ENDPOINT_URL"] = state["endpoint"]
    environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    environ["AWS_DEFAULT_REGION"] = environ["AWS_REGION"] = state.get("region", "us-east-1")


@dataclass(frozen=True)
class Deployment:
    """A stack as the CLI sees it: its settings, its outputs, and where it runs."""

    settings: Settings
    outputs: Mapping[str, str]
    on_aws: bool  # False for ATREST_* variables and for a local stack


def resolve_deployment(stack_name: str | None = None, state_file: Path | None = None, clients: Any = None) -> Deployment:
    if stack_name is None and os.environ.get("ATREST_VAULT_BUCKET"):
        outputs = {name: os.environ[variable] for name, variable in OUTPUT_VARIABLES.items() if variable in os.environ}
        return Deployment(Settings.from_env(), outputs, on_aws=False)
    state_path = state_file or DEFAULT_STATE_FILE
    if stack_name is None and (state_file is not None or state_path.exists()):
        state = load_local_state(state_path)
        apply_local_endpoint(state)
        settings = settings_from_outputs(state["outputs"], state["account_id"], state.get("parameters"))
        return Deployment(settings, state["outputs"], on_aws=False)
    return deployment_from_cloudformation(stack_name or DEFAULT_STACK, clients)


def resolve(stack_name: str | None = None, state_file: Path | None = None, clients: Any = None) -> Settings:
    return resolve_deployment(stack_name, state_file, clients).settings


def deployment_from_cloudformation(stack_name: str, clients: Any = None) -> Deployment:
    from atrest.clients import AwsClients

    clients = clients or AwsClients()
    try:
        stack = clients.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except Exception as error:
        raise ConfigurationError(
            f"cannot read stack {stack_name!r} ({error}); deploy it with `sam deploy`, pass --stack NAME, "
            "or start a local one with `atrest local up`"
        ) from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    account_id = stack["StackId"].split(":")[4]
    return Deployment(settings_from_outputs(outputs, account_id, parameters), outputs, on_aws=True)
