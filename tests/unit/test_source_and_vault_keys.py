import io

from atrest.storage.intake import PlaintextStream
from atrest.storage.vault import vault_key_for


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
    a = vault_key_for("call-recording", "intake", "connect/x.wav", "v1")
    assert a == vault_key_for("call-recording", "intake", "connect/x.wav", "v1")
    assert a != vault_key_for("call-recording", "intake", "connect/x.wav", "v2")
    assert a != vault_key_for("call-recording", "other", "connect/x.wav", "v1")
    assert a.startswith("call-recording/") and a.endswith(".esdk")


def test_a_1024_byte_unicode_source_key_still_gets_a_short_vault_key_without_the_source_name():
    key = ("connect/é+%/" * 100)[:1024]
    vault_key = vault_key_for("knowledge-document", "intake", key, "v")
    assert len(vault_key.encode()) < 200
    assert "connect" not in vault_key
