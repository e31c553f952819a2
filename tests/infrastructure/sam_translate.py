"""Translate template.yaml (SAM) into plain CloudFormation JSON, offline.

Run with the tools environment's Python (it has aws-sam-translator), not the test
environment's: `.venv-tools/bin/python tests/infrastructure/sam_translate.py template.yaml out.json`.

`sam validate` cannot print the translation and needs AWS credentials to look up
managed policies; this template attaches no managed policies, so an empty map is
enough. Resource Metadata (checkov suppressions) is passed through to the resources
SAM generates, so checkov can judge the translated template with the same skips.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# What `sam deploy` would fill in; the translation only needs plausible values.
PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


# Local code locations become S3 URIs, as `sam package` would make them.
CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    for logical_id, resource in template.get("Resources", {}).items():
        prop = CODE_PROPERTIES.get(resource.get("Type"))
        properties = resource.get("Properties", {})
        if prop and isinstance(properties.get(prop), str) and not properties[prop].startswith("s3://"):
            properties[prop] = f"s3://atrest-artifacts/{logical_id}.zip"  # a state machine definition too: SAM accepts its S3 location
    return template


class NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs only when a function names one."""

    def load(self) -> dict[str, str]:
        return {}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    # The translator asks boto3 for a region even when AWS::Region is given.
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO["AWS::Region"])
    with open(argv[1], encoding="utf-8") as handle:
        template: dict[str, Any] = yaml_parse(handle.read())
    translated = transform(as_packaged(template), dict(PSEUDO), NoManagedPolicies(), passthrough_metadata=True)
    with open(argv[2], "w", encoding="utf-8") as handle:
        json.dump(translated, handle, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
