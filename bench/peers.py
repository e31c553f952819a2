"""What a user would run instead of atrest, each as one class with the same interface.

`encrypt(bucket, key) -> dest` reads one plaintext object from S3 and leaves its
ciphertext in the vault bucket; `calls` counts every AWS call the peer makes, per
service (botocore `before-call` hooks). `core(data) -> int` is the same encryption in
memory only (no S3), returning the ciphertext length.

`encrypt_many(bucket, keys, size) -> dests` is a batch: by default one `encrypt` after
another; atrest's takes the SQS batches its function is given.

- `Atrest`: EncryptObjectFunction's handler itself (`functions/encrypt_object/app.py`,
  imported as Lambda imports it), invoked as the deployed function is: with an SQS event of one
  S3 "Object Created" message per object (throughput), or with SQS batches of 10 such messages, the template's BatchSize (the batch
  phase: the handler encrypts a batch's messages concurrently, each with a pipeline of its own):
  `EncryptPipeline.encrypt` (hierarchical keyring, cached branch keys, 1 MiB frames,
  committing suite, checksummed multipart upload, metadata record: its conditional write is
  also what makes a repeated delivery idempotent). Every AWS call the handler makes goes
  through its `AwsClients` and is counted there. Sources are kept (ATREST_KEEP_SOURCE).
- `S3Ec`: peer (a), the Amazon S3 Encryption Client for Python v4 with a KMS keyring, used
  as its README shows: `put_object` below its 8 MiB multipart threshold, else
  `upload_fileobj` (streamed, 8 MiB parts).
- `Esdk`: peer (b), the AWS Encryption SDK used the obvious way: an MPL AWS KMS keyring (one
  GenerateDataKey per object), default frame length (4 KiB), default algorithm suite
  (committing and ECDSA-signed), the S3 body streamed through `stream(mode="e")` into
  boto3's `upload_fileobj`.
- `Copy`: peer (c), no encryption: the S3 body streamed into `upload_fileobj`. What the
  emulator allows at best.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import time
import uuid
from collections import Counter
from typing import Any

import boto3

from measure import ROOT, MiB, count_calls

DEST_PREFIX = "bench-out"


def _context(bucket: str, key: str) -> dict[str, str]:
    # Peers bind the same facts atrest binds, so the header work is comparable.
    return {"source-bucket": bucket, "source-key": key}


class Peer:
    name = "peer"
    label = "peer"
    batch_size = 1  # objects per `encrypt_many` in the batch phase

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.out_bucket = os.environ["ATREST_VAULT_BUCKET"]
        self.session = boto3.session.Session()
        self.s3 = count_calls(self.session.client("s3"), self.calls)

    def prepare(self, bucket: str, key: str, version_id: str | None) -> str:
        """Untimed set-up before one `encrypt`; returns the key to encrypt."""
        return key

    def encrypt(self, bucket: str, key: str) -> str:
        raise NotImplementedError

    def encrypt_many(self, bucket: str, keys: list[str], size: int) -> list[str]:
        """A batch of objects of `size` bytes: one `encrypt` after another (what a user of the
        peer's library writes)."""
        return [self.encrypt(bucket, key) for key in keys]

    def core(self, data: bytes) -> int:
        raise NotImplementedError

    def verify(self, bucket: str, key: str, dest: str) -> None:
        """Untimed: decrypt what `encrypt` wrote and compare it with the source bytes."""
        plaintext = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if self.decrypt(bucket, key, dest) != plaintext:
            raise RuntimeError(f"{self.name}: s3://{self.out_bucket}/{dest} does not decrypt to s3://{bucket}/{key}")

    def decrypt(self, bucket: str, key: str, dest: str) -> bytes:
        return self.s3.get_object(Bucket=self.out_bucket, Key=dest)["Body"].read()

    def dest_key(self, key: str) -> str:
        return f"{DEST_PREFIX}/{self.name}/{key}"

    def cleanup(self, bucket: str, done: list[tuple[str, str]], objects: bool) -> None:
        """Untimed: after a run of (source, dest) pairs. Deletes what was written when
        `objects` (the emulator keeps every byte in memory); small objects are left."""
        if objects:
            for _, dest in done:
                _delete_all_versions(self.s3, self.out_bucket, dest)


class Atrest(Peer):
    name = "atrest"
    label = "atrest"

    FUNCTION_DIR = ROOT / "functions" / "encrypt_object"

    def __init__(self) -> None:
        # The handler module, initialised as Lambda's init phase does (settings, clients,
        # pipeline), before the bench's own clients: built first, those would parse their
        # service models apart from the handler's (atrest.core.clients shares one loader with
        # every session created after it is imported) and show in peak RSS, which Lambda's
        # process would not hold.
        spec = importlib.util.spec_from_file_location("encrypt_object_app", self.FUNCTION_DIR / "app.py")
        self.app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.app)
        super().__init__()
        self.settings = self.app.settings
        self.pipeline = self.app.pipeline
        self._versions: dict[str, str | None] = {}
        self._sizes: dict[str, int] = {}
        # An SQS batch answers only its failures: the outcome of each message is taken where
        # the handler counts it (its metrics step), to check that each object was encrypted.
        self._outcomes: dict[str, dict[str, Any]] = {}
        count = self.app._count

        def counted(*args: Any) -> dict[str, Any]:
            result = count(*args)
            self._outcomes[result["source"]["key"]] = result
            return result

        self.app._count = counted
        # Uncounted clients: set-up and clean-up only.
        self._setup_s3 = self.session.client("s3")
        self._setup = self.session.client("dynamodb")

    def prepare(self, bucket: str, key: str, version_id: str | None) -> str:
        # Encrypt the exact version, as an S3 event names it (with its size, as S3's do).
        self._versions[key] = version_id
        self._sizes[key] = self._setup_s3.head_object(Bucket=bucket, Key=key, **(
            {"VersionId": version_id} if version_id else {}))["ContentLength"]
        return key

    batch_size = 10  # template.yaml's EncryptQueue event source BatchSize

    @property
    def calls(self) -> Counter:
        """The handler's own counts, per service, over every pipeline it has built (one per
        message in flight)."""
        total: Counter = Counter()
        # Before the handler is loaded (the base class counting its own set-up client): nothing.
        for pipeline in self.app.pipelines.built if "app" in vars(self) else ():
            total.update(pipeline.clients.calls)
        return total

    @calls.setter
    def calls(self, _: Counter) -> None:
        pass  # the base class's counter: the handler counts its calls itself (above)

    def _event(self, bucket: str, key: str, size: int | None = None) -> dict[str, Any]:
        obj = {"key": key, "version-id": self._versions.get(key)} | ({"size": size} if size is not None else {})
        return {"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": bucket}, "object": obj}}

    def _check(self, key: str, outcome: dict[str, Any]) -> str:
        if outcome.get("outcome") != "encrypted" or outcome.get("repeated"):
            raise RuntimeError(f"atrest did not encrypt {key}: {outcome}")
        return outcome["vault_key"]

    def encrypt(self, bucket: str, key: str) -> str:
        # What the deployed function receives: an SQS batch (here of one message, delivered for
        # the first time), template.yaml's only event source for it. The handler's bare
        # EventBridge path is for replaying events locally.
        return self.encrypt_many(bucket, [key], self._sizes[key])[0]

    def encrypt_many(self, bucket: str, keys: list[str], size: int) -> list[str]:
        """SQS events of `batch_size` messages, as the function's event source mapping delivers
        them (each body an "Object Created" event with the object's size, as S3 sends it)."""
        dests = []
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start:start + self.batch_size]
            self._outcomes.clear()
            records = [{"messageId": str(n), "receiptHandle": str(n), "body": json.dumps(self._event(bucket, key, size)),
                        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bench",
                        "awsRegion": "us-east-1"} for n, key in enumerate(chunk)]
            response = self.app.lambda_handler({"Records": records}, _lambda_context())
            if response.get("batchItemFailures"):
                raise RuntimeError(f"atrest failed {len(response['batchItemFailures'])} of {len(chunk)} messages")
            dests += [self._check(key, self._outcomes.get(key, {})) for key in chunk]
        return dests

    def cleanup(self, bucket: str, done: list[tuple[str, str]], objects: bool) -> None:
        # The source is kept (ATREST_KEEP_SOURCE=true), so the next run can encrypt the same
        # version again once its metadata record is gone: with a record, atrest would rightly
        # treat it as a repeated delivery and do nothing.
        from atrest.storage.record_keys import object_key

        self._delete_items(self.settings.metadata_table, [object_key(dest) for _, dest in done])
        # Every ciphertext version goes too, small ones included: a version left from an earlier
        # run would look to atrest like a leftover of a failed attempt, and it would (rightly)
        # spend calls reading and deleting it. The vault holds nothing else of atrest's.
        versions = []
        for page in self._setup_s3.get_paginator("list_object_versions").paginate(Bucket=self.settings.vault_bucket):
            versions += [{"Key": item["Key"], "VersionId": item["VersionId"]}
                         for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
                         if not item["Key"].startswith(DEST_PREFIX + "/")]
        for start in range(0, len(versions), 1000):
            self._setup_s3.delete_objects(Bucket=self.settings.vault_bucket,
                                          Delete={"Objects": versions[start:start + 1000], "Quiet": True})

    def _delete_items(self, table: str, keys: list[dict[str, Any]]) -> None:
        deletes = [{"DeleteRequest": {"Key": key}} for key in keys]
        for start in range(0, len(deletes), 25):
            pending = {table: deletes[start:start + 25]}
            while pending:
                pending = self._setup.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    def decrypt(self, bucket: str, key: str, dest: str) -> bytes:
        from atrest.catalog.scopes import BranchKeyScope

        ciphertext = self._setup_s3.get_object(Bucket=self.settings.vault_bucket, Key=dest)["Body"].read()
        keyring = self.pipeline.keystore.keyring(BranchKeyScope.account(self.settings.account_id).branch_key_id)
        plaintext, _ = self.pipeline.esdk.decrypt(source=ciphertext, keyring=keyring)
        return plaintext

    def core(self, data: bytes, checksum: bool = True) -> int:
        """The pipeline's encryption step on bytes in memory: the function
        `EncryptPipeline._encrypt_stream` calls (`atrest.crypto.framing.encrypt_frames`), with
        its client, keyring, suite, frame length, context shape, source type (a PlaintextStream
        after a peeked prefix) and keyed plaintext checksum. Not the vault writer's SHA-256s
        (storage, measured beside it: `sha256_seconds`). `checksum=False`: the ESDK's framing alone."""
        from atrest.catalog.scopes import BranchKeyScope
        from atrest.crypto.envelope import encryption_context
        from atrest.crypto.framing import encrypt_frames
        from atrest.flows.encrypt_object import PEEK_BYTES
        from atrest.storage.intake import PlaintextStream

        scope = BranchKeyScope.account(self.settings.account_id)
        keystore = self.pipeline.keystore
        keystore.ensure(scope)
        keyring = keystore.keyring(scope.branch_key_id)
        context = encryption_context(self.settings.account_id, "bench", "call-recording", "bucket", "memory")
        body = io.BytesIO(data)  # shares `data`; each read hands out fresh bytes, as an S3 body does
        plaintext = PlaintextStream(body.read(PEEK_BYTES), body)  # as the pipeline peeks the header
        size = 0

        def count(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)

        encrypt_frames(self.pipeline.esdk, plaintext, count, keyring=keyring, encryption_context=context,
                       frame_length=self.settings.frame_length,
                       checksum=keystore.checksum_key(scope.branch_key_id).new() if checksum else None)
        return size


class S3Ec(Peer):
    name = "s3ec"
    label = "(a) S3 Encryption Client v4"
    MULTIPART_THRESHOLD = 8 * MiB  # the client's own default (upload_file)

    def __init__(self) -> None:
        from s3_encryption import S3EncryptionClient, S3EncryptionClientConfig
        from s3_encryption.materials.kms_keyring import KmsKeyring

        super().__init__()
        kms = count_calls(self.session.client("kms"), self.calls)
        keyring = KmsKeyring(kms, os.environ["ATREST_KMS_KEY_ARN"])
        self.client = S3EncryptionClient(count_calls(self.session.client("s3"), self.calls),
                                         S3EncryptionClientConfig(keyring=keyring))

    def encrypt(self, bucket: str, key: str) -> str:
        dest = self.dest_key(key)
        response = self.s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        context = _context(bucket, key)
        if response["ContentLength"] < self.MULTIPART_THRESHOLD:
            self.client.put_object(Bucket=self.out_bucket, Key=dest, Body=body.read(), EncryptionContext=context)
        else:
            self.client.upload_fileobj(body, self.out_bucket, dest, EncryptionContext=context)
        body.close()
        return dest

    def decrypt(self, bucket: str, key: str, dest: str) -> bytes:
        response = self.client.get_object(Bucket=self.out_bucket, Key=dest, EncryptionContext=_context(bucket, key))
        return response["Body"].read()


class Esdk(Peer):
    name = "esdk"
    label = "(b) ESDK, KMS keyring, defaults"

    def __init__(self) -> None:
        import aws_encryption_sdk
        from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
        from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
        from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsKeyringInput

        super().__init__()
        kms = count_calls(self.session.client("kms"), self.calls)
        providers = AwsCryptographicMaterialProviders(MaterialProvidersConfig())
        self.keyring = providers.create_aws_kms_keyring(
            CreateAwsKmsKeyringInput(kms_key_id=os.environ["ATREST_KMS_KEY_ARN"], kms_client=kms)
        )
        # Defaults throughout: commitment policy, suite (signed, committing), 4 KiB frames.
        self.client = aws_encryption_sdk.EncryptionSDKClient()

    def encrypt(self, bucket: str, key: str) -> str:
        dest = self.dest_key(key)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        with self.client.stream(mode="e", source=body, keyring=self.keyring,
                                encryption_context=_context(bucket, key)) as encryptor:
            self.s3.upload_fileobj(encryptor, self.out_bucket, dest)
        body.close()
        return dest

    def decrypt(self, bucket: str, key: str, dest: str) -> bytes:
        ciphertext = self.s3.get_object(Bucket=self.out_bucket, Key=dest)["Body"].read()
        plaintext, _ = self.client.decrypt(source=ciphertext, keyring=self.keyring, encryption_context=_context(bucket, key))
        return plaintext

    def core(self, data: bytes) -> int:
        ciphertext, _ = self.client.encrypt(source=data, keyring=self.keyring,
                                            encryption_context=_context("bucket", "memory"))
        return len(ciphertext)


class Copy(Peer):
    name = "copy"
    label = "(c) plain streamed copy"

    def encrypt(self, bucket: str, key: str) -> str:
        dest = self.dest_key(key)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
        self.s3.upload_fileobj(body, self.out_bucket, dest)
        body.close()
        return dest


def _lambda_context() -> Any:
    """What Lambda passes the handler (the local runtime's context class), 15 minutes to run."""
    from atrest_cli.local.lambda_runtime import LocalLambdaContext

    return LocalLambdaContext(
        function_name="EncryptObjectFunction", function_version="$LATEST",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:EncryptObjectFunction",
        memory_limit_in_mb=1024, aws_request_id=str(uuid.uuid4()), log_group_name="/aws/lambda/bench",
        log_stream_name="bench", deadline=time.monotonic() + 900,
    )


PEERS: dict[str, type[Peer]] = {cls.name: cls for cls in (Atrest, S3Ec, Esdk, Copy)}


def raw_aes_gcm(data: bytes, chunk: int = MiB) -> int:
    """The physical reference: AES-256-GCM from `cryptography` over the same bytes, streamed in
    1 MiB updates through one GCM context (no framing, no key derivation, no headers)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12))).encryptor()
    view = memoryview(data)
    size = 0
    for start in range(0, len(data), chunk):
        size += len(encryptor.update(view[start:start + chunk]))
    size += len(encryptor.finalize()) + len(encryptor.tag)
    return size


def sha256_pass(data: bytes, chunk: int = MiB) -> str:
    """One SHA-256 over the same bytes in 1 MiB updates (OpenSSL through hashlib, as both the
    keyed plaintext checksum and the vault writer's checksums run it)."""
    import hashlib

    digest = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        digest.update(view[start:start + chunk])
    return digest.hexdigest()


def raw_aes_gcm_one_shot(data: bytes) -> int:
    """AES-256-GCM in one call (`AESGCM.encrypt`): allocates the whole ciphertext at once."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return len(AESGCM(os.urandom(32)).encrypt(os.urandom(12), data, None))


def _delete_all_versions(s3: Any, bucket: str, key: str) -> None:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    objects = [{"Key": item["Key"], "VersionId": item["VersionId"]}
               for item in listing.get("Versions", []) + listing.get("DeleteMarkers", []) if item["Key"] == key]
    if objects:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
