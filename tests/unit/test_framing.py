"""atrest.crypto.framing: the pipeline's encryption loop, with a raw AES keyring (no AWS).

What it must keep: the message format the decrypt paths read (framed, committing suite,
the frame length asked for), the bytes, and the keyed plaintext checksum, exactly as the
ESDK stream the pipeline used before wrote them.
"""

import hashlib
import hmac
import io
import os
import platform
import subprocess
import sys
import textwrap

import pytest
from aws_encryption_sdk.identifiers import ContentType

from atrest.crypto import framing
from atrest.crypto.checksums import ChecksumKey, ChecksummedStream
from atrest.crypto.envelope import SUITE, encryption_client, encryption_context, read_header
from atrest.crypto.framing import encrypt_frames
from atrest.crypto.verification import LARGEST_FRAME_LENGTH
from atrest.storage.intake import PlaintextStream

FRAME = 4096
CONTEXT = encryption_context("111122223333", "acme", "call-recording", "intake", "connect/acme/x.wav")


@pytest.fixture(scope="module")
def checksum_key():
    return ChecksumKey.from_beacon_key(os.urandom(32))


def pipeline_source(plaintext: bytes, peek: int = 100) -> PlaintextStream:
    """What the pipeline hands over: a peeked prefix, then the rest of the body."""
    body = io.BytesIO(plaintext)
    return PlaintextStream(body.read(peek), body)


def encrypt(keyring, plaintext: bytes, checksum=None) -> tuple[bytes, list[bytes], object]:
    pieces: list[bytes] = []
    header = encrypt_frames(encryption_client(), pipeline_source(plaintext), pieces.append, keyring=keyring,
                            encryption_context=CONTEXT, frame_length=FRAME, checksum=checksum)
    return b"".join(pieces), pieces, header


def previous_loop(keyring, plaintext: bytes, checksum) -> bytes:
    """The loop encrypt_object.py ran before encrypt_frames (kept here as the reference)."""
    out = io.BytesIO()
    with encryption_client().stream(mode="e", source=ChecksummedStream(pipeline_source(plaintext), checksum),
                                    keyring=keyring, encryption_context=CONTEXT, frame_length=FRAME,
                                    algorithm=SUITE) as encryptor:
        while chunk := encryptor.read(FRAME):
            out.write(chunk)
    return out.getvalue()


SIZES = [0, 1, FRAME - 1, FRAME, 3 * FRAME, 3 * FRAME + 517]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_through_the_decrypt_paths(raw_keyring, size):
    plaintext = os.urandom(size)
    ciphertext, _, header = encrypt(raw_keyring, plaintext)
    # One-shot decrypt, as protect_contact and object_metadata read messages.
    decrypted, decrypted_header = encryption_client().decrypt(source=ciphertext, keyring=raw_keyring,
                                                             encryption_context=CONTEXT)
    assert decrypted == plaintext
    assert decrypted_header.message_id == header.message_id
    # Streamed, frame-bounded, as decrypt_object and verification read them.
    out = io.BytesIO()
    with encryption_client().stream(mode="d", source=io.BytesIO(ciphertext), keyring=raw_keyring,
                                    encryption_context=CONTEXT, max_body_length=LARGEST_FRAME_LENGTH) as decryptor:
        while chunk := decryptor.read(FRAME):
            out.write(chunk)
    assert out.getvalue() == plaintext


def test_the_message_format_is_the_one_atrest_writes(raw_keyring):
    ciphertext, _, header = encrypt(raw_keyring, os.urandom(2 * FRAME + 5))
    parsed = read_header(ciphertext[:4096])
    assert parsed.algorithm == SUITE and header.algorithm == SUITE
    assert parsed.content_type is ContentType.FRAMED_DATA
    assert parsed.frame_length == FRAME
    assert parsed.encryption_context == CONTEXT


@pytest.mark.parametrize("size", SIZES)
def test_same_message_layout_and_checksum_as_the_previous_loop(raw_keyring, checksum_key, size):
    plaintext = os.urandom(size)
    new_checksum, old_checksum = checksum_key.new(), checksum_key.new()
    ciphertext, _, _ = encrypt(raw_keyring, plaintext, checksum=new_checksum)
    reference = previous_loop(raw_keyring, plaintext, old_checksum)
    assert len(ciphertext) == len(reference)  # same frames, same header shape (the message id differs)
    assert new_checksum.hexdigest() == old_checksum.hexdigest()
    assert new_checksum.hexdigest() == hmac.new(checksum_key._key, plaintext, hashlib.sha256).hexdigest()


def test_the_sink_gets_frame_sized_pieces(raw_keyring):
    # Memory stays flat: nothing handed on is larger than one frame's read.
    _, pieces, _ = encrypt(raw_keyring, os.urandom(5 * FRAME + 3))
    assert pieces and all(0 < len(piece) <= FRAME for piece in pieces)


def test_without_a_checksum_the_plaintext_is_read_as_given(raw_keyring):
    source = pipeline_source(os.urandom(FRAME + 1))
    encrypt_frames(encryption_client(), source, lambda _: None, keyring=raw_keyring, encryption_context=CONTEXT,
                   frame_length=FRAME)
    assert source.size == FRAME + 1


def test_the_allocator_is_set_once_and_only_on_glibc():
    first = framing.steady_allocator()
    assert framing.steady_allocator() is first
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert first is glibc


@pytest.mark.skipif(not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"), reason="glibc only")
def test_workers_taking_large_buffers_in_turn_reuse_the_memory_one_freed():
    """Four threads each allocating and freeing part-sized buffers in turn, as the encrypt
    function's workers do: with the allocator steadied, the process grows by about one set
    of buffers, not one per thread (each thread's arena kept its own before)."""
    probe = textwrap.dedent("""
        import sys
        from concurrent.futures import ThreadPoolExecutor
        from atrest.crypto import framing
        if sys.argv[1] == "steadied":
            framing.steady_allocator()
        else:  # as before the arena limit: the thresholds alone
            import ctypes
            mallopt = ctypes.CDLL(None).mallopt
            mallopt(framing._M_MMAP_THRESHOLD, framing.MMAP_THRESHOLD)
            mallopt(framing._M_TRIM_THRESHOLD, framing.TRIM_THRESHOLD)
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        def work(_):
            parts = [bytearray(8 << 20) for _ in range(3)]  # three 8 MiB parts
            for part in parts:
                part[::4096] = b"x" * len(range(0, len(part), 4096))  # every page touched
            del parts
        import threading
        meet = threading.Barrier(4)
        def start(_):
            meet.wait()  # all four threads at once: each makes its first allocation
            bytearray(1 << 20)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(start, range(4)))
            before = rss()
            for turn in range(16):
                pool.submit(work, turn).result()  # one at a time; idle threads take turns
            print(rss() - before)
    """)
    grown = {}
    for mode in ("steadied", "thresholds only"):
        result = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        grown[mode] = float(result.stdout.strip())
    # One set of three parts (24 MiB) stays for the next turn; not one set per thread.
    assert grown["steadied"] <= 30 and grown["thresholds only"] >= grown["steadied"] + 30, grown
