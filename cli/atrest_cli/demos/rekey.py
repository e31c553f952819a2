"""`make demo-rekey` (`python -m atrest_cli.demos.rekey`): switching the KMS key on existing data.

On the embedded emulator: provision the stack, encrypt call recordings through the
pipeline (S3 -> EventBridge -> SQS -> EncryptObjectFunction) and a contact's PII under an
instance key, then `atrest rekey` to a second KMS key (bridge grants for the function
roles, progress bar). An EncryptObjectFunction instance still configured with the old key
then encrypts a new recording: its discovery reader fetches the re-wrapped branch key
with the new key, and no KMS call names the old one. `atrest rekey` again finds nothing
to do and retires the bridge grants; `atrest status` shows which KMS key protects each
scope; every object is decrypted again while recording every KMS call: none may name the
old key. (The emulator enforces neither key state nor grants, so the recording is the
proof; on AWS you would disable the old key.)
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


def _say(label: str, text: str) -> None:
    print(f"  {label:<10} {text}", flush=True)


class KmsCallRecorder:
    """Every KMS request made through one client, and the key each response names."""

    def __init__(self, kms: Any) -> None:
        self.keys: list[tuple[str, str]] = []
        kms.meta.events.register("before-parameter-build.kms", self._before)
        kms.meta.events.register("after-call.kms", self._after)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.keys += [(model.name, str(params[f])) for f in ("KeyId", "SourceKeyId", "DestinationKeyId") if params.get(f)]
        self.keys.append((model.name, ""))

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.keys += [(model.name, str(parsed[f])) for f in ("KeyId", "SourceKeyId") if parsed.get(f)]

    @property
    def calls(self) -> int:
        return sum(1 for _, key in self.keys if not key)

    def naming(self, key_arn: str) -> list[str]:
        key_id = key_arn.rsplit("/", 1)[-1]
        return [f"{operation} {key}" for operation, key in self.keys if key and key_id in key]


def _stale_function_encrypts(state: Any, settings: Any, function_log: Any, key: str, body: bytes) -> KmsCallRecorder:
    """EncryptObjectFunction as it was before the rekey (the in-memory state still holds its
    old configuration, as a function not yet redeployed does) encrypts one new recording.
    Returns the recorder of every KMS call it made."""
    import boto3

    from atrest_cli.local.runner import Runner

    runner = Runner(state, function_stdout=function_log, functions=["EncryptObjectFunction"])
    function = runner.function("EncryptObjectFunction")
    # Cold start on an empty backfill batch (no KMS call), so the recorder is on its client
    # before it fetches any branch key.
    with warnings.catch_warnings():  # Powertools warns that an empty batch published no metric
        warnings.simplefilter("ignore", UserWarning)
        warm = function.invoke({"Items": [], "BatchInput": {"bucket": settings.intake_bucket}})
    assert warm.succeeded, warm.error
    recorder = KmsCallRecorder(function.module.clients.kms)
    boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)
    runner.drain(timeout=60)
    return recorder


def run() -> int:
    import boto3

    from atrest.core.clients import AwsClients
    from atrest.flows.decrypt_object import VaultReader
    from atrest.storage.record_keys import is_object_item
    from atrest.storage.records import ObjectRecord
    from atrest_cli.demos.demo import put_contact_event
    from atrest_cli.demos.samples import call_recording_wav, connect_key, contact_event
    from atrest_cli.local.emulator import Emulator
    from atrest_cli.local.runner import Runner
    from atrest_cli.local.stack import provision
    from atrest_cli.main import main as atrest
    from atrest_cli.operations.deployment import settings_from_outputs

    print("atrest demo-rekey: switch the KMS key on existing data, rewriting no object", flush=True)
    work = Path(tempfile.mkdtemp(prefix="atrest-demo-rekey-"))
    function_log = (work / "functions.log").open("w")
    with Emulator() as emulator, function_log:
        os.environ.update(emulator.environment())
        state = provision(ROOT / "template.yaml", emulator, stack_name="atrest")
        state_file = state.write(work / "local-stack.json")
        settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)
        old_key = settings.kms_key_arn
        _say("stack", f"{state.stack_name} on {emulator.endpoint}; KMS key {old_key}")

        put_contact_event(contact_event(settings.account_id, state.region, str(uuid.uuid4()), str(uuid.uuid4()),
                                        "CONNECTED_TO_AGENT", phone="+12065550100"))
        Runner(state, function_stdout=function_log, functions=["ProtectContactFunction"]).drain(timeout=60)
        s3 = boto3.client("s3")
        when = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        bodies = {}
        for n in range(3):
            key = connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()), when, "wav")
            bodies[key] = call_recording_wav(1.0 + n)
            s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=bodies[key])
        Runner(state, function_stdout=function_log).drain(timeout=120)
        items = boto3.client("dynamodb").scan(TableName=settings.metadata_table)["Items"]
        records = [ObjectRecord.from_item(i) for i in items if is_object_item(i)]
        etags_before = {r.vault_key: s3.head_object(Bucket=r.vault_bucket, Key=r.vault_key)["ETag"] for r in records}
        _say("encrypted", f"{len(records)} recording(s) and a contact's PII under {old_key.rsplit('/', 1)[-1]}")

        new_key = boto3.client("kms").create_key(Description="atrest demo: the customer's new key")["KeyMetadata"]["Arn"]
        # Every function role denies KMS keys outside the stack's fence: declare the new key first.
        print(f"\n$ atrest local up --parameter-overrides RekeyKmsKeyArn={new_key}   # declare the switch's other key",
              flush=True)
        state = provision(ROOT / "template.yaml", emulator, stack_name="atrest",
                          parameters={"RekeyKmsKeyArn": new_key})
        state_file = state.write(work / "local-stack.json")
        print(f"\n$ atrest rekey --to-kms-key {new_key}", flush=True)
        code = atrest(["rekey", "--to-kms-key", new_key, "--state-file", str(state_file)])
        if code:
            return code
        print("\n$ atrest grants list   (the configuration now names the new key)", flush=True)
        atrest(["grants", "list", "--state-file", str(state_file)])

        key = connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()), when, "wav")
        bodies[key] = call_recording_wav(4.0)
        print("\nEncryptObjectFunction still configured with the old key (not redeployed yet) gets a new recording:",
              flush=True)
        stale = _stale_function_encrypts(state, settings, function_log, key, bodies[key])
        stale_named = stale.naming(old_key)
        _say("encrypted", f"1 new recording with {stale.calls} KMS call(s), {len(stale_named)} naming the old key "
                          "(its reader unwraps each branch key with the key the item names)")

        print(f"\n$ atrest rekey --to-kms-key {new_key}   # again, after the switch: retires the bridge grants", flush=True)
        atrest(["rekey", "--to-kms-key", new_key, "--state-file", str(state_file)])

        print("\n$ atrest status   (KMS key section)", flush=True)
        shown = io.StringIO()
        with contextlib.redirect_stdout(shown), contextlib.redirect_stderr(io.StringIO()):
            atrest(["status", "--state-file", str(state_file)])
        section = shown.getvalue().split("KMS key (configured)", 1)[-1].split("\n\n", 1)[0]
        print("KMS key (configured)" + section)

        items = boto3.client("dynamodb").scan(TableName=settings.metadata_table)["Items"]
        records = [ObjectRecord.from_item(i) for i in items if is_object_item(i)]
        clients = AwsClients()
        recorder = KmsCallRecorder(clients.kms)
        switched = settings_from_outputs({**state.outputs, "KmsKeyArn": new_key}, state.account_id, state.parameters)
        reader = VaultReader.from_settings(switched, clients)
        verified = 0
        for record in records:
            out = work / "plain.wav"
            reader.decrypt_to_file(record.vault_bucket, record.vault_key, out)
            verified += out.read_bytes() == bodies[record.source_key]
            out.unlink()
        rewritten = [k for k, etag in etags_before.items()
                     if s3.head_object(Bucket=settings.vault_bucket, Key=k)["ETag"] != etag]
        named = recorder.naming(old_key)
        print()
        _say("decrypted", f"{verified} of {len(records)} object(s) to their original bytes with {recorder.calls} KMS "
                          f"call(s), {len(named)} naming the old key")
        _say("rewritten", f"{len(rewritten)} vault object(s) (ETags unchanged)")
        if verified != len(records) or len(records) != len(bodies) or named or stale_named or not stale.calls or rewritten:
            print(f"FAILED: {named or stale_named or rewritten or 'objects did not encrypt or decrypt'}")
            return 1
        print("every object decrypts without the old KMS key; on AWS you may now disable it")
        return 0


if __name__ == "__main__":
    sys.exit(run())
