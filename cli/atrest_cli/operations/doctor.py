"""`atrest doctor`: a smoke test of a deployed stack, run once after a deploy with the
operator's own credentials.

Each step is a small function returning a `StepResult` (ok, warning, FAILED or skipped,
one line saying what was proven or what broke, and what to do next); nothing here prints.
The steps, in order:

1. `check_stack`: the outputs the CLI reads exist, and so do the buckets, tables, KMS key
   and queues they name (with the cheapest read the CLI itself makes of each).
2. `encrypt_smoke_object`: upload a small, clearly named object under a key a data class
   of the catalog takes, and poll (with a deadline) until its metadata record says it is
   encrypted and its plaintext version is gone from the intake (unless the class or
   KeepSourceObjects keeps it).
3. `decrypt_smoke_object`: read it back through `atrest decrypt`'s own code (audited,
   reason `REASON`) and compare bytes.
4. `send_test_alarm`: set one of the stack's alarms to ALARM with SetAlarmState, which makes
   CloudWatch publish to the alarm topic through the topic's KMS key. Whether the email
   arrived only the user can see; on AWS the alarm history tells whether the publish
   itself worked. An alarm the stack does not have (the local emulator does not create
   alarms) is a warning, not a failure.
5. `clean_up`: without --keep, remove the smoke test's plaintext (if still in the intake),
   its vault object version and its metadata record; the audit record of step 3 stays
   (the trail is append-only). A role that may not delete from the vault is the design,
   not a fault: what stays is reported as a warning.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Callable, Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from atrest.catalog.data_classes import Classification, DataClassCatalog, DataClassifier, DataClassSpec
from atrest.catalog.scopes import ScopeKind
from atrest.core.errors import AtrestError
from atrest.core.settings import Settings
from atrest.crypto.keystore_format import ACTIVE_TYPE, item_key
from atrest.storage.record_keys import OBJECT_SK, object_key, object_pk
from atrest.storage.records import MetadataTable, ObjectRecord, ObjectStatus
from atrest.storage.vault_keys import VaultKey

REASON = "atrest doctor smoke test"  # the audit trail's reason for the decrypt of step 3
ALARM_REASON = "atrest doctor test"
SMOKE_FOLDER = "atrest-doctor/"  # under the class's prefix: easy to recognise in listings and `atrest status`
# Preferred class for the smoke object: any key under its prefix is one of its objects.
PREFERRED_CLASS = "knowledge-document"
# Alarms to test, in order of preference. Single-metric alarms whose data is usually
# "nothing wrong", so the alarm goes back to OK at its next evaluation (5-minute periods).
# Not ExpiryNotRunAlarm: it treats missing data as breaching and may stay in ALARM.
ALARM_LOGICAL_IDS = ("EncryptDeadLetterQueueAlarm", "ContactEventDeadLetterQueueAlarm", "EncryptQueueAgeAlarm")

_DENIED = {"AccessDenied", "AccessDeniedException", "403", "Forbidden", "AuthorizationError", "UnauthorizedOperation"}
_MISSING = {"NoSuchBucket", "404", "NotFound", "ResourceNotFoundException", "ResourceNotFound", "NotFoundException",
            "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_GONE = {"NoSuchKey", "NoSuchVersion", "404"}


class StepStatus(str, Enum):
    OK = "ok"
    WARNING = "warning"  # worked, or could not be checked for a reason that is not a fault; does not fail the run
    FAILED = "FAILED"
    SKIPPED = "skipped"  # not run because a step it depends on failed


@dataclass(frozen=True)
class StepResult:
    name: str
    status: StepStatus
    summary: str  # what was proven, or what went wrong
    next_step: str | None = None  # what to do about a failure or warning
    details: Mapping[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status in (StepStatus.OK, StepStatus.WARNING)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["status"] = self.status.value
        result["details"] = dict(self.details)
        result["seconds"] = round(self.seconds, 2)
        return result


@dataclass
class SmokeObject:
    """The object the smoke test uploads, and what became of it."""

    bucket: str
    key: str
    body: bytes
    data_class: str
    keeps_source: bool
    version_id: str | None = None
    vault_key: str | None = None
    record: ObjectRecord | None = None
    source_gone: bool = False  # the plaintext version is no longer in the intake
    decrypted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "intake": f"s3://{self.bucket}/{self.key}", "version_id": self.version_id, "data_class": self.data_class,
            "vault": f"s3://{self.record.vault_bucket}/{self.record.vault_key}" if self.record else None,
            "status": self.record.status.value if self.record else None, "source_gone": self.source_gone,
            "decrypted": self.decrypted,
        }


@dataclass
class DoctorContext:
    """What the steps work on. `decrypt(uri, output, reason)` is `atrest decrypt` (audited);
    `physical_id(logical_id)` names a stack resource (alarms have no output), None when unknown."""

    settings: Settings
    outputs: Mapping[str, str]
    clients: Any
    decrypt: Callable[[str, Path, str], None]
    physical_id: Callable[[str], str | None] = lambda _logical_id: None
    on_aws: bool = True
    progress: Callable[[str], None] = lambda _message: None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll_seconds: float = 2.0
    progress_every_seconds: float = 10.0


@dataclass(frozen=True)
class DoctorReport:
    steps: tuple[StepResult, ...]
    smoke: SmokeObject | None = None

    @property
    def passed(self) -> bool:
        return all(step.passed for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "steps": [step.as_dict() for step in self.steps],
                "smoke_object": self.smoke.as_dict() if self.smoke else None}


def run_doctor(ctx: DoctorContext, timeout_seconds: float, keep: bool, confirm_publish_seconds: float = 30.0,
               on_step: Callable[[StepResult], None] = lambda _step: None) -> DoctorReport:
    """Every step in order; a step that needs an earlier one's result is skipped when it failed."""
    steps: list[StepResult] = []

    def done(step: StepResult) -> StepResult:
        steps.append(step)
        on_step(step)
        return step

    stack = done(_timed(ctx, "stack", lambda: check_stack(ctx)))
    chosen: list[SmokeObject] = []

    def encrypt() -> StepResult:
        smoke = choose_smoke_object(ctx)
        if smoke is None:
            return _no_class()
        chosen.append(smoke)
        return encrypt_smoke_object(ctx, smoke, timeout_seconds)

    if not stack.passed:
        done(_skipped("encrypt", "the stack's resources are not all there (step 1)"))
    else:
        done(_timed(ctx, "encrypt", encrypt))
    smoke = chosen[0] if chosen else None
    if smoke is not None and smoke.record is not None:
        done(_timed(ctx, "decrypt", lambda: decrypt_smoke_object(ctx, smoke)))
    else:
        done(_skipped("decrypt", "no encrypted smoke-test object to read (step 2)"))
    done(_timed(ctx, "alarm", lambda: send_test_alarm(ctx, confirm_publish_seconds)))
    done(_timed(ctx, "cleanup", lambda: clean_up(ctx, smoke, keep)))
    return DoctorReport(tuple(steps), smoke)


# -- step 1 ---------------------------------------------------------------------------------

def check_stack(ctx: DoctorContext) -> StepResult:
    s = ctx.settings
    problems: list[tuple[str, str]] = []  # (what is wrong, what to do)
    checked: dict[str, str] = {}

    def probe(what: str, call: Callable[[], Any], permission: str) -> Any:
        try:
            answer = call()
        except ClientError as error:
            code = checked[what] = _code(error)
            if code in _DENIED:
                problems.append((f"{what}: access denied", f"grant your role {permission}"))
            elif code in _MISSING:
                problems.append((f"{what}: does not exist", "check that --stack names the deployed stack (`sam deploy` "
                                 "finished) and that your region is the stack's"))
            else:
                problems.append((f"{what}: {code}", "retry; if it persists, check the resource in the console"))
            return None
        checked[what] = "ok"
        return answer

    if not s.audit_table:
        problems.append(("the stack has no AuditTableName output (every decrypt must be audited)",
                         "deploy the current template.yaml (sam build && sam deploy)"))
    probe(f"intake bucket {s.intake_bucket}", lambda: ctx.clients.s3.head_bucket(Bucket=s.intake_bucket),
          f"s3:ListBucket on arn:aws:s3:::{s.intake_bucket}")
    probe(f"vault bucket {s.vault_bucket}", lambda: ctx.clients.s3.head_bucket(Bucket=s.vault_bucket),
          f"s3:ListBucket on arn:aws:s3:::{s.vault_bucket}")
    # GetItem of a key that is not there: the read `atrest decrypt` makes; a missing table says so.
    probe(f"metadata table {s.metadata_table}", lambda: ctx.clients.dynamodb.get_item(
        TableName=s.metadata_table, Key=object_key("atrest-doctor-probe")),
        f"dynamodb:GetItem on table {s.metadata_table}")
    probe(f"key store table {s.keystore_table}", lambda: ctx.clients.dynamodb.get_item(
        TableName=s.keystore_table, Key=item_key("atrest-doctor-probe", ACTIVE_TYPE)),
        f"dynamodb:GetItem on table {s.keystore_table}")
    if s.audit_table:
        probe(f"audit table {s.audit_table}", lambda: ctx.clients.dynamodb.query(
            TableName=s.audit_table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "day#0000-00-00"}}, Limit=1),
            f"dynamodb:Query and dynamodb:PutItem on table {s.audit_table}")
    key_state = _key_state(ctx, s.kms_key_arn, problems, checked)
    depths: dict[str, int] = {}
    for output in ("EncryptQueueUrl", "EncryptDeadLetterQueueUrl"):
        url = ctx.outputs.get(output)
        if not url:
            checked[output] = "not known (pass --stack, or --state-file for a local stack)"
            continue
        answer = probe(f"queue {url.rsplit('/', 1)[-1]}", lambda url=url: ctx.clients.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]), f"sqs:GetQueueAttributes on {url}")
        if answer is not None:
            depths[output] = int(answer.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
    details = {"checked": checked, "kms_key_state": key_state, "queue_depths": depths}
    if problems:
        return StepResult("stack", StepStatus.FAILED, "; ".join(p for p, _ in problems),
                          "; ".join(dict.fromkeys(fix for _, fix in problems)), details)
    summary = (f"outputs read; {sum(1 for v in checked.values() if v == 'ok')} resources answer; "
               f"KMS key {key_state or 'not described (no kms:DescribeKey)'}")
    dead = depths.get("EncryptDeadLetterQueueUrl", 0)
    if dead:
        return StepResult("stack", StepStatus.WARNING, f"{summary}; the dead-letter queue already holds {dead} message(s)",
                          "see `atrest dlq list`: objects failed before this run (their plaintext is still in the intake)",
                          details)
    return StepResult("stack", StepStatus.OK, summary, details=details)


def _key_state(ctx: DoctorContext, key_arn: str, problems: list[tuple[str, str]], checked: dict[str, str]) -> str | None:
    what = f"KMS key {key_arn}"
    try:
        metadata = ctx.clients.kms.describe_key(KeyId=key_arn)["KeyMetadata"]
    except ClientError as error:
        code = checked[what] = _code(error)
        if code not in _DENIED:  # kms:DescribeKey is not needed to decrypt; step 3 uses the key for real
            problems.append((f"{what}: {code}", "check the KmsKeyArn output (or CustomerManagedKeyArn) names a key "
                             "in this account and region"))
        return None
    checked[what] = "ok"
    state = str(metadata.get("KeyState", ""))
    if state and state != "Enabled":
        problems.append((f"{what} is {state}: no object can be encrypted or decrypted",
                         f"enable the key (aws kms enable-key --key-id {metadata.get('KeyId', key_arn)}) or cancel its "
                         "deletion (aws kms cancel-key-deletion)"))
    return state or None


# -- step 2 ---------------------------------------------------------------------------------

def choose_smoke_object(ctx: DoctorContext, now: datetime | None = None) -> SmokeObject | None:
    """A unique key under a class's prefix that the catalog classifies as that class, with the
    account's own key (not an instance or service key); the knowledge document class first."""
    settings = ctx.settings
    catalog = DataClassCatalog.from_settings(settings)
    classifier = DataClassifier(catalog, settings.account_id)
    moment = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    name = f"{SMOKE_FOLDER}{moment}-{uuid.uuid4().hex[:12]}.txt"
    candidates: Sequence[DataClassSpec] = sorted(catalog.s3_classes(), key=lambda spec: spec.name != PREFERRED_CLASS)
    for spec in candidates:
        if spec.scope_kind is not ScopeKind.ACCOUNT or not spec.listing_prefix:
            continue
        key = spec.listing_prefix + name
        found = classifier.classify(key)
        if isinstance(found, Classification) and found.data_class == spec.name:
            body = (f"atrest doctor smoke test\nuploaded {moment} to check that {spec.name} objects are encrypted, "
                    "recorded and readable back.\nSafe to delete.\n").encode()
            return SmokeObject(settings.intake_bucket, key, body, spec.name, spec.keeps_source or settings.keep_source)
    return None


def encrypt_smoke_object(ctx: DoctorContext, smoke: SmokeObject, timeout_seconds: float) -> StepResult:
    s3 = ctx.clients.s3
    try:
        answer = s3.put_object(Bucket=smoke.bucket, Key=smoke.key, Body=smoke.body, ContentType="text/plain")
    except ClientError as error:
        code = _code(error)
        fix = (f"your identity may not write to the intake: grant it s3:PutObject on arn:aws:s3:::{smoke.bucket}/"
               f"{smoke.key.split(SMOKE_FOLDER)[0]}* (the bucket policy only requires TLS, so it is your IAM policy)"
               if code in _DENIED else "check the intake bucket exists (`atrest status`)")
        return StepResult("encrypt", StepStatus.FAILED, f"could not upload s3://{smoke.bucket}/{smoke.key}: {code}", fix)
    smoke.version_id = answer.get("VersionId")
    smoke.vault_key = str(VaultKey.of_source(smoke.data_class, smoke.bucket, smoke.key, smoke.version_id))
    records = MetadataTable(ctx.clients.dynamodb, ctx.settings.metadata_table)
    started = ctx.clock()
    deadline = started + timeout_seconds
    last_said = started
    state = "no record yet"
    ctx.progress(f"uploaded s3://{smoke.bucket}/{smoke.key} ({smoke.data_class}); waiting up to {timeout_seconds:g} s "
                 "for the pipeline to encrypt it")
    while True:
        try:
            smoke.record = records.get_object(smoke.vault_key)
            if smoke.record is not None and not smoke.keeps_source and smoke.record.status is ObjectStatus.SOURCE_DELETED:
                smoke.source_gone = _version_gone(ctx, smoke)
        except ClientError as error:
            return _read_failure(ctx, smoke, error)
        if smoke.record is not None and (smoke.keeps_source or smoke.source_gone):
            return _encrypted(ctx, smoke, ctx.clock() - started)
        now = ctx.clock()
        said = (f"record {smoke.record.status.value}, plaintext still in the intake" if smoke.record is not None
                else "no record yet")
        if now >= deadline:
            return _not_encrypted(ctx, smoke, timeout_seconds)
        if said != state or now - last_said >= ctx.progress_every_seconds:
            state, last_said = said, now
            ctx.progress(f"  {now - started:.0f} s of {timeout_seconds:g} s: {said}")
        ctx.sleep(min(ctx.poll_seconds, max(deadline - now, 0.0)))


def _version_gone(ctx: DoctorContext, smoke: SmokeObject) -> bool:
    """The uploaded version is no longer in the intake. Listing versions, not HeadObject: a
    missing version answers 403, not 404, to a role without s3:ListBucket, which would
    read as "denied" rather than "gone"."""
    answer = ctx.clients.s3.list_object_versions(Bucket=smoke.bucket, Prefix=smoke.key)
    versions = [v for v in answer.get("Versions", []) if v.get("Key") == smoke.key]
    if smoke.version_id:
        return all(v.get("VersionId") != smoke.version_id for v in versions)
    return not versions


def _encrypted(ctx: DoctorContext, smoke: SmokeObject, waited: float) -> StepResult:
    record = smoke.record
    assert record is not None
    where = (f"plaintext kept in the intake (KeepSourceObjects or the class's source_removal)" if smoke.keeps_source
             else "plaintext version removed from the intake")
    return StepResult(
        "encrypt", StepStatus.OK,
        f"{smoke.data_class} s3://{smoke.bucket}/{smoke.key} encrypted in {waited:.0f} s to "
        f"s3://{record.vault_bucket}/{record.vault_key} under {record.branch_key_id} "
        f"version {record.branch_key_version[:8]}; {where}",
        details={"vault_key": record.vault_key, "status": record.status.value, "waited_seconds": round(waited, 1)},
    )


def _read_failure(ctx: DoctorContext, smoke: SmokeObject, error: ClientError) -> StepResult:
    code = _code(error)
    operation = error.operation_name
    if operation == "ListObjectVersions":
        fix = (f"grant your role s3:ListBucketVersions on arn:aws:s3:::{smoke.bucket} so doctor can see the "
               "plaintext version is gone")
    else:
        fix = f"grant your role dynamodb:GetItem on table {ctx.settings.metadata_table}"
    return StepResult("encrypt", StepStatus.FAILED, f"uploaded s3://{smoke.bucket}/{smoke.key} but could not follow it: "
                      f"{operation} {code}", fix if code in _DENIED else "retry; if it persists, check the table and bucket")


def _not_encrypted(ctx: DoctorContext, smoke: SmokeObject, timeout_seconds: float) -> StepResult:
    function = (ctx.outputs.get("EncryptObjectFunctionArn") or "").rsplit(":", 1)[-1] or "EncryptObjectFunction"
    logs = f"the function's logs (aws logs tail /aws/lambda/{function} --since 15m)"
    dead = _queue_depth(ctx, "EncryptDeadLetterQueueUrl")
    details: dict[str, Any] = {"vault_key": smoke.vault_key, "dead_letters": dead}
    if smoke.record is not None:
        return StepResult(
            "encrypt", StepStatus.FAILED,
            f"s3://{smoke.bucket}/{smoke.key} was encrypted and recorded ({smoke.record.status.value}) but its plaintext "
            f"version is still in the intake after {timeout_seconds:g} s",
            f"look in {logs} for the delete of the source (EncryptObjectFunctionRole needs s3:DeleteObjectVersion on the "
            "intake bucket)", details)
    queued = "" if dead is None else f"; the dead-letter queue holds {dead} message(s)"
    local = "" if ctx.on_aws else " Locally: is `atrest local up` running (its runner processes the events)?"
    return StepResult(
        "encrypt", StepStatus.FAILED,
        f"no record for s3://{smoke.bucket}/{smoke.key} after {timeout_seconds:g} s: the pipeline did not encrypt it{queued}",
        f"check `atrest dlq list` and {logs}; check that ObjectCreatedRule is enabled and the intake bucket sends events "
        f"to EventBridge; or give it longer with --timeout.{local}", details)


def _queue_depth(ctx: DoctorContext, output: str) -> int | None:
    url = ctx.outputs.get(output)
    if not url:
        return None
    try:
        attributes = ctx.clients.client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    except (ClientError, BotoCoreError):
        return None
    values = attributes.get("Attributes", {})
    return int(values.get("ApproximateNumberOfMessages", 0)) + int(values.get("ApproximateNumberOfMessagesNotVisible", 0))


def _no_class() -> StepResult:
    return StepResult("encrypt", StepStatus.FAILED,
                      "no data class of the catalog takes every key under a prefix with the account's key",
                      "doctor needs one such class (the packaged catalog's knowledge-document); see docs/data-classes.md")


# -- step 3 ---------------------------------------------------------------------------------

def decrypt_smoke_object(ctx: DoctorContext, smoke: SmokeObject) -> StepResult:
    record = smoke.record
    assert record is not None
    uri = f"s3://{record.vault_bucket}/{record.vault_key}"
    audit = f"`atrest audit --since 1h` shows the attempt (reason {REASON!r})"
    with TemporaryDirectory(prefix="atrest-doctor-") as folder:
        output = Path(folder) / "smoke.txt"
        try:
            ctx.decrypt(uri, output, REASON)
        except AtrestError as error:
            text = str(error)
            fix = (f"the vault's bucket policy lets only the pipeline and DecryptorRoleArns read: run doctor as one of "
                   f"those roles, or add yours (sam deploy --parameter-overrides DecryptorRoleArns=...); {audit}"
                   if "decryptor" in text else f"{audit}; docs/audit.md and docs/keys.md explain refusals")
            return StepResult("decrypt", StepStatus.FAILED, f"could not read {uri} back: {text}", fix)
        except ClientError as error:
            code = _code(error)
            fix = ("your role needs kms:Decrypt on the stack's KMS key and dynamodb:GetItem on the key store and "
                   f"metadata tables, dynamodb:PutItem on the audit table; {audit}" if code in _DENIED else audit)
            return StepResult("decrypt", StepStatus.FAILED, f"could not read {uri} back: {error.operation_name} {code}", fix)
        plaintext = output.read_bytes() if output.exists() else b""
    if plaintext != smoke.body:
        return StepResult("decrypt", StepStatus.FAILED,
                          f"{uri} decrypted to {len(plaintext)} bytes that differ from the {len(smoke.body)} uploaded",
                          "this is a bug: keep the object (--keep) and report it with `atrest status --json`")
    smoke.decrypted = True
    return StepResult("decrypt", StepStatus.OK,
                      f"{uri} decrypted to the {len(smoke.body)} bytes uploaded; the read is in the audit trail "
                      f"(reason {REASON!r})", details={"uri": uri})


# -- step 4 ---------------------------------------------------------------------------------

def send_test_alarm(ctx: DoctorContext, confirm_publish_seconds: float) -> StepResult:
    cloudwatch = ctx.clients.client("cloudwatch")
    names = [name for name in (ctx.physical_id(logical_id) for logical_id in ALARM_LOGICAL_IDS) if name]
    if not names:
        return StepResult("alarm", StepStatus.WARNING, "skipped: the stack's alarm names are not known here",
                          "run doctor with --stack NAME (or --state-file for a local stack) to test an alarm")
    try:
        found = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names).get("MetricAlarms", [])}
    except ClientError as error:
        code = _code(error)
        return StepResult("alarm", StepStatus.FAILED, f"could not describe the stack's alarms: {code}",
                          "grant your role cloudwatch:DescribeAlarms" if code in _DENIED else "retry")
    if not found:
        return StepResult("alarm", StepStatus.WARNING, f"skipped: alarm {names[0]} not found",
                          "the stack has no such alarm (the local emulator does not create alarms); on AWS check "
                          "the stack deployed completely", {"alarm": names[0]})
    quiet = [found[name] for name in names if name in found and found[name].get("StateValue") != "ALARM"]
    if not quiet:
        name = next(iter(found))
        return StepResult("alarm", StepStatus.WARNING, f"skipped: every alarm tried is already in ALARM ({', '.join(found)})",
                          "a real problem is being reported: see docs/operations.md for each alarm", {"alarm": name})
    alarm = quiet[0]
    name = alarm["AlarmName"]
    topics = [arn for arn in alarm.get("AlarmActions", []) if ":sns:" in arn]
    sent_at = datetime.now(timezone.utc)
    try:
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=ALARM_REASON)
    except ClientError as error:
        code = _code(error)
        return StepResult("alarm", StepStatus.FAILED, f"could not set alarm {name} to ALARM: {code}",
                          f"grant your role cloudwatch:SetAlarmState on alarm {name}" if code in _DENIED else "retry")
    details: dict[str, Any] = {"alarm": name, "topics": topics}
    if not ctx.on_aws:
        # Nothing evaluates alarms locally: put it back, or every later run would find it in ALARM.
        previous = str(alarm.get("StateValue") or "INSUFFICIENT_DATA")
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=previous,
                                   StateReason=f"{ALARM_REASON}: restored (alarms are not evaluated locally)")
        details["restored_to"] = previous
    after = (f"confirm the email from SNS arrived (atrest cannot see your inbox); {name} returns to OK by itself at its "
             "next evaluation (within about 5 minutes) and notifies again")
    published = _publish_outcome(ctx, cloudwatch, name, sent_at, confirm_publish_seconds) if ctx.on_aws else None
    details["publish"] = published
    if published is not None and published.startswith("Failed"):
        return StepResult(
            "alarm", StepStatus.FAILED, f"set {name} to ALARM, but CloudWatch could not notify: {published}",
            "CloudWatch must be allowed to use the topic's KMS key: a topic under the AWS managed key alias/aws/sns "
            "cannot take alarm notifications (its key policy cannot be changed); use a customer managed key whose "
            "policy allows cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*", details)
    audience = _subscribers(ctx, topics)
    details["subscriptions"] = audience
    sent = f"set {name} to ALARM (reason {ALARM_REASON!r}); CloudWatch " + (
        "published to " if published else "publishes to ") + (", ".join(topics) or "no SNS topic")
    if not topics or audience == 0:
        return StepResult("alarm", StepStatus.WARNING, f"{sent}, but nobody is subscribed",
                          "set the AlarmEmail parameter (sam deploy --parameter-overrides AlarmEmail=you@example.com) "
                          "or subscribe your on-call tooling to the AlarmTopicArn output", details)
    if audience == -1:
        return StepResult("alarm", StepStatus.WARNING, f"{sent}, but its subscription is not confirmed yet",
                          "click the link in the \"AWS Notification - Subscription Confirmation\" email, then run "
                          "doctor again", details)
    if ctx.on_aws and published is None:
        return StepResult("alarm", StepStatus.WARNING,
                          f"{sent}; the alarm history did not show the publish within {confirm_publish_seconds:g} s",
                          after, details)
    return StepResult("alarm", StepStatus.OK, f"{sent}; {after}", details=details)


def _publish_outcome(ctx: DoctorContext, cloudwatch: Any, name: str, since: datetime, seconds: float) -> str | None:
    """The alarm history's "Action" item after `since` ("Successfully executed action ..." or
    "Failed to execute action ..."), or None when none appeared within `seconds`."""
    deadline = ctx.clock() + seconds
    while True:
        try:
            items = cloudwatch.describe_alarm_history(AlarmName=name, HistoryItemType="Action", StartDate=since,
                                                      ScanBy="TimestampDescending").get("AlarmHistoryItems", [])
        except ClientError:
            return None  # no cloudwatch:DescribeAlarmHistory: the user's inbox is the only witness
        if items:
            return str(items[0].get("HistorySummary", ""))
        if ctx.clock() >= deadline:
            return None
        ctx.sleep(ctx.poll_seconds)


def _subscribers(ctx: DoctorContext, topics: Sequence[str]) -> int | None:
    """Confirmed subscriptions of the topics; -1 when only unconfirmed ones; None when not readable."""
    confirmed = pending = 0
    sns = ctx.clients.client("sns")
    for topic in topics:
        try:
            subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        except (ClientError, BotoCoreError):
            return None
        for subscription in subscriptions:
            if subscription.get("SubscriptionArn") == "PendingConfirmation":
                pending += 1
            else:
                confirmed += 1
    if confirmed:
        return confirmed
    return -1 if pending else 0


# -- step 5 ---------------------------------------------------------------------------------

def clean_up(ctx: DoctorContext, smoke: SmokeObject | None, keep: bool) -> StepResult:
    if smoke is None or smoke.version_id is None and smoke.record is None:
        return StepResult("cleanup", StepStatus.OK, "nothing to clean up")
    audit = "the audit record of the decrypt stays (the trail is append-only)" if smoke.decrypted else ""
    if keep:
        kept = [f"s3://{smoke.bucket}/{smoke.key}" if not smoke.source_gone else None,
                f"s3://{smoke.record.vault_bucket}/{smoke.record.vault_key} and its record" if smoke.record else None]
        return StepResult("cleanup", StepStatus.OK, "kept (--keep): " + ", ".join(k for k in kept if k) +
                          (f"; {audit}" if audit else ""), details=smoke.as_dict())
    s3 = ctx.clients.s3
    removed: list[str] = []
    left: list[str] = []
    fixes: list[str] = []
    if not smoke.source_gone and smoke.version_id:
        # Still there when the class keeps sources, or the pipeline never got to it. Deleting the
        # version (not adding a delete marker) removes the bytes; a late event then finds the
        # source gone and is skipped.
        try:
            s3.delete_object(Bucket=smoke.bucket, Key=smoke.key, VersionId=smoke.version_id)
            removed.append(f"s3://{smoke.bucket}/{smoke.key} (plaintext)")
        except ClientError as error:
            left.append(f"s3://{smoke.bucket}/{smoke.key} version {smoke.version_id}")
            fixes.append(f"aws s3api delete-object --bucket {smoke.bucket} --key {smoke.key} --version-id "
                         f"{smoke.version_id} ({_code(error)})")
    record = smoke.record
    if record is not None:
        # The vault object first, then its record: a record must never point at nothing, while a
        # leftover ciphertext of a smoke test is harmless.
        vault_removed = True
        if record.vault_version_id and record.vault_version_id != "null":
            try:
                s3.delete_object(Bucket=record.vault_bucket, Key=record.vault_key, VersionId=record.vault_version_id)
                removed.append(f"s3://{record.vault_bucket}/{record.vault_key}")
            except ClientError as error:
                vault_removed = False
                left.append(f"s3://{record.vault_bucket}/{record.vault_key} and its record")
                fixes.append("they are harmless (a few bytes of a smoke test, under the account key); your role may not "
                             f"delete from the vault ({_code(error)}), which is how it should be")
        if vault_removed:
            try:
                # With its count (the record was counted when the pipeline wrote it).
                MetadataTable(ctx.clients.dynamodb, ctx.settings.metadata_table).delete_object(record)
                removed.append("its metadata record")
            except ClientError as error:
                left.append(f"the metadata record {object_pk(record.vault_key)} (its vault object is gone)")
                fixes.append(f"delete item pk={object_pk(record.vault_key)}, sk={OBJECT_SK} from "
                             f"{ctx.settings.metadata_table} ({_code(error)})")
    summary = ("removed " + ", ".join(removed)) if removed else "removed nothing"
    if audit:
        summary += f"; {audit}"
    if left:
        return StepResult("cleanup", StepStatus.WARNING, f"{summary}; left {', '.join(left)}", "; ".join(fixes),
                          {"removed": removed, "left": left})
    return StepResult("cleanup", StepStatus.OK, summary, details={"removed": removed})


# -- helpers --------------------------------------------------------------------------------

def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))


def _skipped(name: str, why: str) -> StepResult:
    return StepResult(name, StepStatus.SKIPPED, f"not run: {why}", "fix the step above first")


def _timed(ctx: DoctorContext, name: str, step: Callable[[], StepResult]) -> StepResult:
    started = ctx.clock()
    try:
        result = step()
    except (ClientError, BotoCoreError, AtrestError) as error:
        # A step must report, not abort the run: the steps after it still say what they can.
        result = StepResult(name, StepStatus.FAILED, f"{type(error).__name__}: {error}",
                            "check your credentials and region (or that `atrest local up` is running)")
    return StepResult(result.name, result.status, result.summary, result.next_step, result.details, ctx.clock() - started)
