"""What every object's message is bound to (its encryption context): the account, the data
class, the Amazon Connect instance alias when it has one, and the source bucket and key.

Here, below both `atrest.crypto` and `atrest.storage`, because both need it: the message
carries it (`atrest.crypto.envelope`), and an object record rebuilds it from the fields it
holds anyway instead of storing a copy (`atrest.storage.records`: about 280 bytes, a third of
the write units the record's size costs, docs/cost.md).
"""

from __future__ import annotations

# Prefixed so they never collide with the ESDK's own (aws-crypto-*).
CTX_ACCOUNT = "atrest:account"
CTX_INSTANCE = "atrest:instance"
CTX_DATA_CLASS = "atrest:data-class"
CTX_SOURCE_BUCKET = "atrest:source-bucket"
CTX_SOURCE_KEY = "atrest:source-key"


def encryption_context(
    account_id: str, instance: str | None, data_class: str, source_bucket: str, source_key: str
) -> dict[str, str]:
    """What every object's message is bound to; decrypt must reproduce it exactly."""
    context = {
        CTX_ACCOUNT: account_id,
        CTX_DATA_CLASS: data_class,
        CTX_SOURCE_BUCKET: source_bucket,
        CTX_SOURCE_KEY: source_key,
    }
    if instance:
        context[CTX_INSTANCE] = instance
    return context
