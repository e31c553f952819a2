"""A shred right after a rotation cannot destroy data written after the rotation.

The hazard: a warm EncryptObject function caches the account key's active version for
`BranchKeyCacheTtlSeconds`; a rotation by another process does not reach that cache, so a
recording uploaded just after the rotation is encrypted under the version the rotation
retired. Shredding that version at once would make the new recording unreadable for
good. Here the operator's commands run as separate processes, as on a workstation."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from atrest.core.clock import ManualClock, from_text
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.expire_keys import KeyLifecycle
from atrest.storage.records import MetadataTable
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import call_recording_wav, connect_key

pytestmark = pytest.mark.local_only("fakes time (ManualClock) and runs the functions with the local runner")


def atrest(environment, state_file, *args):
    """`atrest ARGS...` in a process of its own, as an operator runs it."""
    done = subprocess.run([sys.executable, "-m", "atrest_cli.main", *args, "--state-file", str(state_file)],
                          env=environment, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def upload_and_encrypt(settings, runner):
    key = connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()),
                      datetime.now(timezone.utc).replace(second=0, microsecond=0), "wav")
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=call_recording_wav(0.1))["VersionId"]
    runner.drain(timeout=60)
    record = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(
        VaultKey.of_source("call-recording", settings.intake_bucket, key, version))
    assert record is not None, "the recording was not encrypted"
    return record


def test_a_shred_right_after_a_rotation_is_refused_and_nothing_readable_is_lost(
        settings, clean_stack, local_runner, cli_environment, tmp_path):
    state_file = clean_stack.write(tmp_path / "local-stack.json")
    before = upload_and_encrypt(settings, local_runner)  # the function is warm now: it caches the active version
    scope = before.branch_key_id

    code, out, err = atrest(cli_environment, state_file, "keys", "rotate", scope)
    assert code == 0, err
    after = upload_and_encrypt(settings, local_runner)  # inside the cache TTL of the warm function
    assert after.branch_key_version == before.branch_key_version, \
        "the warm function should still hold the retired version (this is the hazard the refusal guards)"

    named = atrest(cli_environment, state_file, "keys", "shred", scope, "--version", before.branch_key_version, "--yes")
    every = atrest(cli_environment, state_file, "keys", "shred", scope, "--yes")

    assert named[0] == 1 and "cannot be shredded before" in named[2], named
    assert every[0] == 1 and "shreddable after" in every[1] and "2 object(s) so far" in every[1], every
    reader = VaultReader.from_settings(settings)
    for number, record in enumerate((before, after)):
        target = tmp_path / f"{number}.wav"
        reader.decrypt_to_file(record.vault_bucket, record.vault_key, target)
        assert target.read_bytes() == call_recording_wav(0.1)

    # Once every writer's cache has let the version go, the impact report counts what is
    # under it now, the recording stored after its retirement included.
    retired = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).key_version(
        scope, before.branch_key_version)
    later = ManualClock(from_text(retired.writers_stop_by))
    (plan,) = KeyLifecycle.from_settings(settings, clock=later).plan_shred(scope)
    assert plan.shreddable and plan.version == before.branch_key_version and plan.objects == 2
