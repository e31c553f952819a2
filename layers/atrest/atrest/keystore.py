"""`BranchKeyStore`: branch keys in the MPL key store, and hierarchical keyrings over them.

Branch keys are created on first use. Two processes creating the same scope at once
is expected (a burst of first uploads): the key store's CreateKey writes with a
condition, so exactly one wins and the loser reads the winner's key.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from aws_cryptographic_material_providers.keystore import KeyStore
from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
from aws_cryptographic_material_providers.keystore.models import (
    CreateKeyInput,
    GetActiveBranchKeyInput,
    KMSConfigurationKmsKeyArn,
)
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import (
    CacheTypeDefault,
    CreateAwsKmsHierarchicalKeyringInput,
    DefaultCache,
)

from atrest.clients import AwsClients
from atrest.scopes import BranchKeyScope

log = logging.getLogger(__name__)

# Custom encryption context bound into every branch key we create (required by the
# MPL for a branch key id of our choosing, and a record of what the key is for).
SCOPE_CONTEXT_KEY = "atrest-scope"

_NOT_FOUND = "No item found for corresponding branch key identifier"


def _is_not_found(error: Exception) -> bool:
    return _NOT_FOUND in str(error)


def _is_already_exists(error: Exception) -> bool:
    return "ConditionalCheckFailed" in str(error)


class BranchKeyStore:
    """The MPL key store of one stack, with one cached hierarchical keyring per scope.

    Not thread-safe (the MPL's KMS components are not): use one per thread or process.
    """

    def __init__(
        self,
        clients: AwsClients,
        table_name: str,
        logical_name: str,
        kms_key_arn: str,
        cache_ttl_seconds: int,
        cache_entries: int = 100,
    ) -> None:
        self.table_name = table_name
        self.kms_key_arn = kms_key_arn
        self.cache_ttl_seconds = cache_ttl_seconds
        self.cache_entries = cache_entries
        self.key_store = KeyStore(
            config=KeyStoreConfig(
                ddb_table_name=table_name,
                logical_key_store_name=logical_name,
                kms_configuration=KMSConfigurationKmsKeyArn(kms_key_arn),
                kms_client=clients.kms,
                ddb_client=clients.dynamodb,
            )
        )
        self._providers = AwsCryptographicMaterialProviders(MaterialProvidersConfig())
        self._keyrings: dict[str, Any] = {}
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def active_version(self, scope: BranchKeyScope) -> str | None:
        """The active version of the scope's branch key, or None when it has none yet."""
        try:
            output = self.key_store.get_active_branch_key(
                GetActiveBranchKeyInput(branch_key_identifier=scope.branch_key_id)
            )
        except Exception as error:  # the MPL raises its own error classes, not botocore's
            if _is_not_found(error):
                return None
            raise
        return output.branch_key_materials.branch_key_version

    def ensure(self, scope: BranchKeyScope) -> bool:
        """Make sure the scope has a branch key. Returns True when this call created it."""
        if scope.branch_key_id in self._known:
            return False
        created = False
        if self.active_version(scope) is None:
            try:
                self.key_store.create_key(
                    CreateKeyInput(
                        branch_key_identifier=scope.branch_key_id,
                        encryption_context={SCOPE_CONTEXT_KEY: scope.branch_key_id},
                    )
                )
                created = True
                log.info("created branch key", extra={"branch_key_id": scope.branch_key_id})
            except Exception as error:
                if not _is_already_exists(error):
                    raise
                # Another process created it between our read and our write: use theirs.
                log.info("branch key created concurrently", extra={"branch_key_id": scope.branch_key_id})
        self._known.add(scope.branch_key_id)
        return created

    def keyring(self, branch_key_id: str) -> Any:
        """A hierarchical keyring bound to one branch key, cached for this process.

        Its branch key materials are cached for `cache_ttl_seconds`: that is also how long
        a shredded or re-wrapped version may still be used by this process.
        """
        with self._lock:
            keyring = self._keyrings.get(branch_key_id)
            if keyring is None:
                keyring = self._providers.create_aws_kms_hierarchical_keyring(
                    CreateAwsKmsHierarchicalKeyringInput(
                        key_store=self.key_store,
                        branch_key_id=branch_key_id,
                        ttl_seconds=self.cache_ttl_seconds,
                        cache=CacheTypeDefault(DefaultCache(entry_capacity=self.cache_entries)),
                    )
                )
                self._keyrings[branch_key_id] = keyring
            return keyring
