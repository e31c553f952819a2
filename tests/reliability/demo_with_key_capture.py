"""Run `atrest demo` (its real command line, in this process) and, just before the demo's
emulator stops, write the material of every active branch key (hex, one per line) to the
file named by the first argument, so that a test can look for it in the demo's logs.

Usage: python demo_with_key_capture.py KEY_FILE
"""

from __future__ import annotations

import sys
from pathlib import Path

from atrest_cli.local import stack as stack_module
from atrest_cli.local.emulator import Emulator
from atrest_cli.main import main
from atrest.crypto.keystore_format import ACTIVE_TYPE, BRANCH_KEY_ID, TYPE

provisioned = []
_provision, _stop = stack_module.provision, Emulator.stop


def provision(*args, **kwargs):
    state = _provision(*args, **kwargs)
    provisioned.append(state)
    return state


def stop(self):
    if provisioned:
        Path(sys.argv[1]).write_text("\n".join(active_branch_keys(provisioned[-1])))
    _stop(self)


def active_branch_keys(state) -> list[str]:
    """Every active branch key's plaintext material, read the way the MPL's keyring gets it."""
    import boto3
    from aws_cryptographic_material_providers.keystore.models import GetActiveBranchKeyInput

    from atrest.core.clients import AwsClients
    from atrest.crypto.keystore import KeyStores
    from atrest_cli.operations.deployment import settings_from_outputs

    settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)
    # A class on a KMS key of its own (the demo has one) is read by its own writer.
    stores = KeyStores.from_settings(settings, AwsClients())
    items = boto3.client("dynamodb").scan(TableName=settings.keystore_table)["Items"]
    ids = sorted({item[BRANCH_KEY_ID]["S"] for item in items if item[TYPE]["S"] == ACTIVE_TYPE})
    return [
        bytes(stores.for_branch_key(branch_key_id).key_store.get_active_branch_key(GetActiveBranchKeyInput(branch_key_identifier=branch_key_id))
              .branch_key_materials.branch_key).hex()
        for branch_key_id in ids
    ]


stack_module.provision = provision
Emulator.stop = stop
sys.exit(main(["demo"]))
