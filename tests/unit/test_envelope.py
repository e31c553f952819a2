"""The message format, exercised with a raw AES keyring (no AWS needed)."""

import io
import os

import pytest

from atrest.crypto import envelope
from atrest.crypto.envelope import (
    CTX_SOURCE_KEY,
    SUITE,
    MessageFormatError,
    check_message_version,
    context_differences,
    encryption_client,
    encryption_context,
    is_atrest_message,
    read_header,
)


def encrypt(keyring, plaintext, context):
    ciphertext, _ = encryption_client().encrypt(
        source=plaintext, keyring=keyring, encryption_context=context, algorithm=SUITE, frame_length=4096
    )
    return ciphertext


def test_the_context_binds_account_class_instance_and_source():
    context = encryption_context("111122223333", "acme", "call-recording", "intake", "connect/acme/x.wav")
    assert context == {
        "atrest:account": "111122223333",
        "atrest:instance": "acme",
        "atrest:data-class": "call-recording",
        "atrest:source-bucket": "intake",
        "atrest:source-key": "connect/acme/x.wav",
    }
    assert "atrest:instance" not in encryption_context("1", None, "knowledge-document", "b", "k")


def test_messages_use_the_committing_non_signing_suite(raw_keyring):
    ciphertext = encrypt(raw_keyring, b"hello", encryption_context("1", None, "chat-transcript", "b", "k"))
    header = read_header(ciphertext[:4096])
    assert header.algorithm == SUITE
    assert not header.algorithm.signing_algorithm_info


def test_atrest_messages_are_recognised_by_their_header(raw_keyring):
    long_key = "connect/" + "é+%" * 300
    ciphertext = encrypt(raw_keyring, os.urandom(10000), encryption_context("1", "a", "call-recording", "b", long_key))
    assert is_atrest_message(ciphertext[:64 * 1024])


def test_plaintext_and_foreign_esdk_messages_are_not_mistaken_for_atrest_messages(raw_keyring):
    assert not is_atrest_message(b"RIFF\x24\x08\x00\x00WAVEfmt ")
    assert not is_atrest_message(b'{"Version": "2019-08-26"}')
    assert not is_atrest_message(b"")
    assert not is_atrest_message(b"\x02\x05\x78" + os.urandom(100))  # starts like a header, is not one
    foreign = encrypt(raw_keyring, b"data", {"purpose": "someone else's"})
    assert read_header(foreign[:4096]) is not None
    assert not is_atrest_message(foreign[:4096])


def test_a_header_of_a_message_format_version_atrest_does_not_know_is_refused_with_the_version_named(
    raw_keyring, monkeypatch
):
    ciphertext = encrypt(raw_keyring, b"data", encryption_context("1", None, "chat-transcript", "b", "k"))
    written = read_header(ciphertext[:4096]).version.value
    assert written in envelope.KNOWN_MESSAGE_VERSIONS
    # As after an ESDK upgrade that parses a format atrest was not built against.
    monkeypatch.setattr(envelope, "KNOWN_MESSAGE_VERSIONS", envelope.KNOWN_MESSAGE_VERSIONS - {written})
    with pytest.raises(MessageFormatError, match=f"message format version {written} .*nothing was read"):
        read_header(ciphertext[:4096])
    with pytest.raises(MessageFormatError):
        is_atrest_message(ciphertext[:4096])


def test_the_version_guard_names_what_atrest_reads():
    future = type("Header", (), {"version": type("Version", (), {"value": 3})()})()
    with pytest.raises(MessageFormatError, match=r"version 3 \(atrest reads versions") as refused:
        check_message_version(future)
    assert all(str(known) in str(refused.value) for known in envelope.KNOWN_MESSAGE_VERSIONS)


def test_bytes_no_esdk_version_starts_with_stay_plaintext(raw_keyring):
    ciphertext = encrypt(raw_keyring, b"data", encryption_context("1", None, "chat-transcript", "b", "k"))
    assert read_header(bytes([max(envelope.KNOWN_MESSAGE_VERSIONS) + 1]) + ciphertext[1:4096]) is None


def test_context_differences_name_the_keys_that_differ_and_ignore_esdk_keys():
    expected = encryption_context("1", "a", "call-recording", "b", "k")
    actual = {**expected, CTX_SOURCE_KEY: "other", "aws-crypto-public-key": "x"}
    assert context_differences(expected, actual) == [CTX_SOURCE_KEY]
    assert context_differences(expected, dict(expected)) == []


def test_streamed_encryption_round_trips_with_large_frames(raw_keyring):
    plaintext = os.urandom(3 * 1024 * 1024 + 17)
    context = encryption_context("1", None, "knowledge-document", "b", "k")
    client = encryption_client()
    with client.stream(mode="e", source=io.BytesIO(plaintext), keyring=raw_keyring, encryption_context=context,
                       frame_length=1024 * 1024, algorithm=SUITE) as encryptor:
        ciphertext = b"".join(iter(lambda: encryptor.read(1 << 20), b""))
    decrypted, header = client.decrypt(source=ciphertext, keyring=raw_keyring, encryption_context=context)
    assert decrypted == plaintext
    assert header.frame_length == 1024 * 1024
