"""Which objects atrest encrypts, and as what.

Rules are built from configuration (prefixes); an object key that matches no rule
is not atrest's business and is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterable

from atrest.scopes import BranchKeyScope
from atrest.settings import Settings


class DataClass(str, Enum):
    CALL_RECORDING = "call-recording"
    CHAT_TRANSCRIPT = "chat-transcript"
    KNOWLEDGE_DOCUMENT = "knowledge-document"


@dataclass(frozen=True)
class Classification:
    """What an object is: its data class, the scope of its key, and what the key layout tells."""

    data_class: DataClass
    scope: BranchKeyScope
    instance: str | None = None  # the Connect instance alias (from the key layout) when known
    contact_id: str | None = None


@dataclass(frozen=True)
class ClassificationRule:
    data_class: DataClass
    pattern: re.Pattern[str]

    def match(self, key: str, account_scope: BranchKeyScope) -> Classification | None:
        found = self.pattern.match(key)
        if not found:
            return None
        groups = found.groupdict()
        return Classification(self.data_class, account_scope, groups.get("instance"), groups.get("contact"))


# Amazon Connect: <prefix><alias>/CallRecordings/YYYY/MM/DD/<contactId>_<YYYYMMDDTHH:MM>_UTC.wav
_DATE = r"\d{4}/\d{2}/\d{2}"
_CONTACT = r"(?P<contact>[A-Za-z0-9-]{1,128})_\d{8}T\d{2}:\d{2}(?::\d{2})?_UTC"


def connect_rules(connect_prefix: str) -> list[ClassificationRule]:
    base = re.escape(connect_prefix) + r"(?P<instance>[^/]{1,128})/"
    return [
        ClassificationRule(DataClass.CALL_RECORDING, re.compile(base + rf"CallRecordings/{_DATE}/{_CONTACT}\.wav\Z")),
        ClassificationRule(DataClass.CHAT_TRANSCRIPT, re.compile(base + rf"ChatTranscripts/{_DATE}/{_CONTACT}\.json\Z")),
    ]


def knowledge_rule(knowledge_prefix: str) -> ClassificationRule:
    return ClassificationRule(DataClass.KNOWLEDGE_DOCUMENT, re.compile(re.escape(knowledge_prefix) + r".*[^/]\Z", re.S))


class DataClassifier:
    """Maps an object key to its `Classification`, or None when atrest should leave it alone."""

    def __init__(self, rules: Iterable[ClassificationRule], account_id: str) -> None:
        self.rules = list(rules)
        self.account_scope = BranchKeyScope.account(account_id)

    @classmethod
    def from_settings(cls, settings: Settings) -> "DataClassifier":
        return cls([*connect_rules(settings.connect_prefix), knowledge_rule(settings.knowledge_prefix)], settings.account_id)

    def classify(self, key: str) -> Classification | None:
        for rule in self.rules:
            found = rule.match(key, self.account_scope)
            if found:
                return found
        return None
