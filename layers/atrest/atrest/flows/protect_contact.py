"""Contact records: Amazon Connect contacts with their PII encrypted under the
instance's time-limited branch key (`instance/<instance-id>`).

One item per contact (`atrest.storage.contact_records`) gathers what its
events say. Only the fields atrest needs in the clear (`Settings.contact_clear_fields`:
ids, channel, timestamps, queue, agent, initiation method, the instance) stay readable;
every other field, including ones Amazon Connect adds later, is an ESDK message whose
encryption context binds account, instance, contact and field name, so a ciphertext
moved to another contact or field does not decrypt. Each sealed field records the branch
key version its own message header names: the keyring's cache may refresh between two
fields of one event (a rotation in the last TTL), so one event can seal under two
versions. For each key version a contact's PII uses, an index item puts the contact in the
`by-key-version` index, so shredding a version can say how many contacts it makes unreadable.

The write that stores sealed fields requires, in the same transaction, that each of their
key versions is not SHREDDED. A shred or `forget-instance` marks the version first and
deletes the key after, so a warm function whose cache still holds a just-forgotten key
cannot store data under it: the write is refused, the function drops its cache and
seals again under the instance's current (new) key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.core.errors import AtrestError, DecryptRefusedError, RecordNotFoundError
from atrest.core.settings import Settings
from atrest.crypto.envelope import SUITE, context_differences, encryption_client, message_key, read_header
from atrest.crypto.keystore import BranchKeyStore, KeyStores
from atrest.events.shapes import ContactEvent
from atrest.storage.contact_records import (
    ContactEventFields,
    KeyVersionShreddedError,
    read_contact,
    store_contact_event,
)
from atrest.storage.instances import InstanceDirectory
from atrest.storage.records import KeyVersionState, MetadataTable

log = logging.getLogger(__name__)

DATA_CLASS = "contact-pii"
CTX_ACCOUNT = "atrest:account"
CTX_DATA_CLASS = "atrest:data-class"
CTX_INSTANCE_ID = "atrest:instance-id"
CTX_CONTACT = "atrest:contact"
CTX_FIELD = "atrest:field"
# Fields that identify the contact: stored as the item's own attributes, never as PII.
IDENTITY_FIELDS = {"contactId", "instanceArn", "instanceARN", "eventType"}
# How often one event is sealed again after its key version was shredded under it. A
# forget marks every version before deleting the key, so a second seal can meet the old
# key once more (still the store's active one); by the third the key is gone or new.
SEAL_ATTEMPTS = 3


@dataclass(frozen=True)
class ProtectedContact:
    """What protecting one event did. Safe to log: names, ids and versions, never values."""

    instance_id: str
    instance_alias: str | None
    contact_id: str
    event_type: str
    branch_key_id: str
    branch_key_version: str | None  # the version the last field was sealed under (the newest the event saw)
    pii_fields: list[str]
    public_fields: list[str]
    key_versions: dict[str, str] = field(default_factory=dict)  # PII field -> the version its header names

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def pii_context(account_id: str, instance_id: str, contact_id: str, field_name: str) -> dict[str, str]:
    return {CTX_ACCOUNT: account_id, CTX_DATA_CLASS: DATA_CLASS, CTX_INSTANCE_ID: instance_id,
            CTX_CONTACT: contact_id, CTX_FIELD: field_name}


class ContactProtector:
    """Stores a contact event as a contact record with its PII encrypted. Not thread-safe."""

    def __init__(self, settings: Settings, keystore: BranchKeyStore | KeyStores, records: MetadataTable,
                 instances: InstanceDirectory) -> None:
        self.settings = settings
        self.keystore = keystore
        self.records = records
        self.instances = instances
        self.esdk = encryption_client()

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> "ContactProtector":
        clients = clients or AwsClients()
        keystore = KeyStores.from_settings(settings, clients)
        records = MetadataTable(clients.dynamodb, settings.metadata_table)
        return cls(settings, keystore, records,
                   InstanceDirectory(clients.dynamodb, settings.metadata_table, lambda: clients.client("connect")))

    def protect(self, event: ContactEvent) -> ProtectedContact:
        instance = self.instances.learn(event.instance_id, event.instance_arn)
        scope = BranchKeyScope.instance(event.instance_id)
        clear = set(self.settings.contact_clear_fields) | IDENTITY_FIELDS
        pii = {k: v for k, v in event.detail.items() if k not in clear}
        public = {k: v for k, v in event.detail.items() if k in clear and k not in IDENTITY_FIELDS}
        for attempt in range(1, SEAL_ATTEMPTS + 1):
            try:
                sealed, versions = self._seal(event, scope, pii)
                self._write(event, instance.alias, public, sealed, scope, versions)
                break
            except KeyVersionShreddedError:
                if attempt == SEAL_ATTEMPTS:
                    raise AtrestError(
                        f"instance {event.instance_id} is being forgotten (its key versions are being shredded); the "
                        "event was not stored and is retried, then lands in the dead-letter queue: redrive it with "
                        "`atrest dlq redrive` once `atrest forget-instance` has finished"
                    ) from None
            except Exception as error:
                if "No item found" not in str(error) or attempt == SEAL_ATTEMPTS:
                    raise
            # The cached key was forgotten or shredded since this process cached it: drop it,
            # so the next seal reads the key store (a new key once the forget has finished).
            log.info("instance key changed under a cached keyring; sealing again", extra={
                "branch_key_id": scope.branch_key_id, "attempt": attempt})
            self.keystore.forget_cached(scope.branch_key_id)
        outcome = ProtectedContact(event.instance_id, instance.alias, event.contact_id, event.event_type,
                                   scope.branch_key_id, list(versions.values())[-1] if versions else None,
                                   sorted(pii), sorted(public), dict(versions))
        log.info("contact protected", extra={"contact": outcome.as_dict()})
        return outcome

    def _seal(self, event: ContactEvent, scope: BranchKeyScope,
              pii: Mapping[str, Any]) -> tuple[dict[str, bytes], dict[str, str]]:
        """Each field's message, and the branch key version that message's header names."""
        if not pii:
            return {}, {}
        self.keystore.ensure(scope)
        keyring = self.keystore.keyring(scope.branch_key_id)
        sealed, versions = {}, {}
        for name, value in pii.items():
            ciphertext, header = self.esdk.encrypt(
                source=json.dumps(value, sort_keys=True).encode("utf-8"),
                keyring=keyring,
                encryption_context=pii_context(self.settings.account_id, event.instance_id, event.contact_id, name),
                algorithm=SUITE,
            )
            sealed[name] = ciphertext
            # Per field: each encrypt asks the keyring for the active version, and its cache may
            # have refreshed (onto a newer version) since the previous field.
            versions[name] = message_key(header).branch_key_version
        return sealed, versions

    def _write(self, event: ContactEvent, alias: str | None, public: Mapping[str, Any], sealed: Mapping[str, bytes],
               scope: BranchKeyScope, versions: Mapping[str, str]) -> None:
        store_contact_event(self.records, scope.branch_key_id, ContactEventFields(
            event.instance_id, event.contact_id, event.event_type, event.time, alias, public, sealed, versions))


def _sealed_under(ciphertext: bytes) -> str | None:
    """The branch key version a field's message header names, or None when it names none.

    Trusted over the record's `@version`: records written before versions were kept per
    field name one version for all of an event's fields, which is wrong for a field sealed
    after a cache refresh."""
    header = read_header(ciphertext)
    if header is None:
        return None
    try:
        return message_key(header).branch_key_version
    except ValueError:
        return None  # not a hierarchical-keyring message: decryption refuses it with the reason


@dataclass(frozen=True)
class ContactView:
    instance_id: str
    contact_id: str
    public: dict[str, Any]
    pii: dict[str, Any]
    key_versions: dict[str, str]  # PII field -> branch key version


class ContactReader:
    """Reveals a contact's PII, refusing (with the date) when its key version was shredded."""

    def __init__(self, account_id: str, keystore: BranchKeyStore | KeyStores, records: MetadataTable) -> None:
        self.account_id = account_id
        self.keystore = keystore
        self.records = records
        self.esdk = encryption_client()

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> "ContactReader":
        clients = clients or AwsClients()
        keystore = KeyStores.from_settings(settings, clients)
        return cls(settings.account_id, keystore, MetadataTable(clients.dynamodb, settings.metadata_table))

    def reveal(self, instance_id: str, contact_id: str, fields: Callable[[str], bool] = lambda _name: True) -> ContactView:
        stored = read_contact(self.records, instance_id, contact_id)
        if stored is None:
            raise RecordNotFoundError(f"no contact {contact_id} of instance {instance_id}; check both ids "
                                      "(the instance id is the last part of the instance ARN)")
        branch_key_id = BranchKeyScope.instance(instance_id).branch_key_id
        pii, versions = {}, {}
        for name, ciphertext in stored.sealed.items():
            if fields(name):
                version = _sealed_under(ciphertext) or stored.recorded_versions[name]
                versions[name] = version
                pii[name] = self._open(branch_key_id, version, instance_id, contact_id, name, ciphertext)
        return ContactView(instance_id, contact_id, stored.public, pii, versions)

    def _open(self, branch_key_id: str, version: str, instance_id: str, contact_id: str, name: str, ciphertext: bytes) -> Any:
        what = f"contact {contact_id} field {name}"
        # The metadata says a version is gone before the key store is asked: a clear answer, not a stack trace.
        record = self.records.key_version(branch_key_id, version)
        if record is not None and record.state is KeyVersionState.SHREDDED:
            raise DecryptRefusedError(
                f"refusing to decrypt {what}: key {branch_key_id} version {version} was shredded on "
                f"{record.shredded_at} (key lifetime policy or forget-instance); this data is permanently unreadable"
            )
        expected = pii_context(self.account_id, instance_id, contact_id, name)
        try:
            plaintext, header = self.esdk.decrypt(source=ciphertext, keyring=self.keystore.keyring(branch_key_id),
                                                  encryption_context=expected)
        except Exception as error:
            if "No item found" in str(error):
                raise DecryptRefusedError(f"refusing to decrypt {what}: key {branch_key_id} version {version} "
                                          "no longer exists in the key store (shredded)") from error
            raise DecryptRefusedError(f"refusing to decrypt {what}: {type(error).__name__}: {str(error)[:200]}") from error
        differences = context_differences(expected, header.encryption_context)
        if differences:
            raise DecryptRefusedError(f"refusing to decrypt {what}: encryption context differs ({', '.join(differences)})")
        return json.loads(plaintext)
