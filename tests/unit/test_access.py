"""Who may read a data class through ReadObject: principals from function URL events
against the decryptors a data class names."""

from __future__ import annotations

import pytest

from atrest.catalog.access import Decryptor, is_decryptor, parse_principal

STACK = "123456789012"
OTHER = "210987654321"


def session(role: str, account: str = STACK, name: str = "jane") -> str:
    return f"arn:aws:sts::{account}:assumed-role/{role}/{name}"


def test_an_assumed_role_session_names_its_role_and_account():
    principal = parse_principal(session("QaReviewer", name="jane@example.com"))
    assert (principal.account_id, principal.role_name, principal.session_name) == (STACK, "QaReviewer", "jane@example.com")
    assert principal.short == "QaReviewer/jane@example.com"


@pytest.mark.parametrize("decryptor", [
    "QaReviewer",  # a bare name: the stack's own account
    f"arn:aws:iam::{STACK}:role/QaReviewer",
    f"arn:aws:iam::{STACK}:role/contact-center/qa/QaReviewer",  # sessions do not show the path
])
def test_a_session_of_a_decryptor_role_may_read(decryptor):
    assert is_decryptor(parse_principal(session("QaReviewer")), [decryptor], STACK)


def test_the_role_itself_may_read_too():
    assert is_decryptor(parse_principal(f"arn:aws:iam::{STACK}:role/qa/QaReviewer"), ["QaReviewer"], STACK)


@pytest.mark.parametrize(("caller", "decryptors"), [
    (session("QaReviewer", account=OTHER), ["QaReviewer"]),  # a bare name is the stack's account only
    (session("QaReviewer", account=OTHER), [f"arn:aws:iam::{STACK}:role/QaReviewer"]),
    (session("QaReviewer2"), ["QaReviewer"]),
    (session("Qa"), ["QaReviewer"]),
    (session("qareviewer"), ["QaReviewer"]),  # names are compared as IAM spells them
    (session("QaReviewer"), []),  # nobody by default
    (session("QaReviewer"), ["*"]),  # wildcards match nobody
    (session("QaReviewer"), ["arn:aws:iam::123456789012:role/*"]),
    (f"arn:aws:iam::{STACK}:user/QaReviewer", ["QaReviewer"]),  # an IAM user is not the role
    (f"arn:aws:iam::{STACK}:root", ["QaReviewer", "root"]),
    (f"arn:aws:sts::{STACK}:federated-user/QaReviewer", ["QaReviewer"]),
    ("arn:aws-cn:sts::123456789012:assumed-role/QaReviewer/jane", [f"arn:aws:iam::{STACK}:role/QaReviewer"]),
    ("", ["QaReviewer"]),
    ("QaReviewer", ["QaReviewer"]),  # not an ARN at all
    (f"arn:aws:sts::{STACK}:assumed-role/QaReviewer", ["QaReviewer"]),  # no session: malformed
])
def test_everyone_else_may_not(caller, decryptors):
    assert not is_decryptor(parse_principal(caller), decryptors, STACK)


def test_an_unrecognised_caller_is_kept_for_the_audit_but_has_no_role():
    principal = parse_principal("arn:aws:iam::123456789012:user/ops/alice")
    assert principal.arn == "arn:aws:iam::123456789012:user/ops/alice"
    assert principal.account_id == STACK and not principal.is_role
    assert parse_principal(None).arn == "" and not parse_principal(None).is_role


def test_decryptor_entries_parse_or_match_nobody():
    assert Decryptor.parse(f"arn:aws:iam::{STACK}:role/a/b/Name") == Decryptor("Name", STACK, "aws")
    assert Decryptor.parse("Name") == Decryptor("Name")
    assert Decryptor.parse("Name*") is None
    assert Decryptor.parse(f"arn:aws:iam::{STACK}:user/Name") is None
