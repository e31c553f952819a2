import io

from atrest.storage.intake import PlaintextStream
from atrest.storage.vault_keys import VaultKey


def test_plaintext_stream_returns_the_peeked_prefix_then_the_rest_and_hashes_everything():
    data = bytes(range(256)) * 100
    stream = PlaintextStream(data[:1000], io.BytesIO(data[1000:]))
    pieces = []
    for size in (10, 2000, 7, 100000, 5):
        pieces.append(stream.read(size))
    assert b"".join(pieces) == data
    assert stream.size == len(data)
    assert stream.read(10) == b""


def test_vault_keys_are_stable_per_source_version_and_distinct_otherwise():
    a = VaultKey.of_source("call-recording", "intake", "connect/x.wav", "v1")
    assert a == VaultKey.of_source("call-recording", "intake", "connect/x.wav", "v1")
    assert a != VaultKey.of_source("call-recording", "intake", "connect/x.wav", "v2")
    assert a != VaultKey.of_source("call-recording", "other", "connect/x.wav", "v1")
    assert a != VaultKey.of_source("chat-transcript", "intake", "connect/x.wav", "v1")


def test_a_vault_key_parses_back_to_itself_and_names_its_class():
    key = VaultKey.of_source("call-recording", "intake", "connect/x.wav", None)
    assert VaultKey.parse(str(key)) == key
    assert VaultKey.parse(str(key)).data_class == "call-recording"
    assert VaultKey.parse(VaultKey.example("call-recording")).data_class == "call-recording"


def test_any_requested_text_parses_to_the_class_it_names_and_prints_back_unchanged():
    for text in ("call-recording/00/missing", "no-such-class/x", "no-separator", "trailing/", "/leading", ""):
        assert str(VaultKey.parse(text)) == text
    assert VaultKey.parse("no-separator").data_class == "no-separator"
    assert VaultKey.parse("/leading").data_class == ""


def test_a_1024_byte_unicode_source_key_still_gets_a_short_vault_key_without_the_source_name():
    key = ("connect/é+%/" * 100)[:1024]
    vault_key = str(VaultKey.of_source("knowledge-document", "intake", key, "v"))
    assert len(vault_key.encode()) < 200
    assert "connect" not in vault_key
