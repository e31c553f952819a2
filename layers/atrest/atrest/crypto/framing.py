"""Encrypting a plaintext stream into a sink, frame by frame: the one loop the pipeline
(flows/encrypt_object.py) and the bench's crypto core (bench/peers.py) both run.

Where the time goes at 1 MiB frames (issue 17, bench/results.md "Crypto core"): per frame the
ESDK's streaming encryptor makes about five 1 MiB copies around its single AES-GCM call (its
insistent source reader's BytesIO, the frame's `struct.pack`, its output buffer, the slice it
returns and the BytesIO that slice is written into). Each copy is a fresh 1 MiB `bytes`, and
glibc serves allocations that large with mmap until a free happens to raise its (dynamic)
threshold: in that state every copy also page-faults 256 fresh zeroed pages (~740 faults
per MiB encrypted), which cut the loop to a third or less of its speed, depending on what
the process freed before. `steady_allocator` fixes the thresholds so frame-sized buffers
are always reused from the heap.

The keyed plaintext checksum is taken here too, where the ESDK pulls the plaintext
(ChecksummedStream passes each read through without copying it). It is an HMAC-SHA256, so
on a CPU without SHA extensions it, not AES-GCM, bounds the pipeline (~0.5 GB/s).
"""

from __future__ import annotations

import ctypes
import platform
import threading
from typing import Any, Callable

import aws_encryption_sdk

from atrest.crypto.checksums import ChecksummedStream, _Digest
from atrest.crypto.envelope import SUITE

# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
# (HEAP_MAX_SIZE / 2): above every frame atrest writes or reads (LARGEST_FRAME_LENGTH, 16 MiB).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD = 32 * 1024 * 1024
# Free memory at the top of the heap kept rather than returned (glibc's own rule when it
# adjusts the threshold: twice it), so the next frame's buffers do not fault their pages in again.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_allocator_lock = threading.Lock()
_allocator_steadied: bool | None = None


def steady_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds, and keep one malloc arena, once per process;
    False where that is not glibc.

    One arena: with a thread of its own, each of the encrypt function's workers would get an
    arena of its own, and each arena keeps up to TRIM_THRESHOLD of freed part and frame
    buffers: a warm function handing large objects to its workers in turn grew by ~29 MiB per
    256 MiB object (bench/results.md). With one, a freed buffer is reused by whichever worker
    asks next. glibc fixes the arena limit when it first needs a second arena, so this must
    run before the workers start (the handler calls it at import); the threads then share one
    lock, which costs little next to the ~1 MiB buffers they take."""
    global _allocator_steadied
    with _allocator_lock:
        if _allocator_steadied is None:
            _allocator_steadied = False
            if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
                try:
                    mallopt = ctypes.CDLL(None).mallopt
                except (OSError, AttributeError):
                    return False
                mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
                # Both or neither: either one alone already stops glibc adjusting the other.
                _allocator_steadied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(_M_ARENA_MAX, 1))
        return _allocator_steadied


def encrypt_frames(
    esdk: aws_encryption_sdk.EncryptionSDKClient,
    plaintext: Any,
    sink: Callable[[bytes], Any],
    *,
    keyring: Any,
    encryption_context: dict[str, str],
    frame_length: int,
    checksum: _Digest | None = None,
) -> Any:
    """Encrypt everything `plaintext.read` gives into one ESDK message (committing suite,
    `frame_length` frames), handing the ciphertext to `sink` in frame-sized pieces; feeds
    the plaintext to `checksum` on the way. Returns the message header."""
    steady_allocator()
    source = plaintext if checksum is None else ChecksummedStream(plaintext, checksum)
    with esdk.stream(mode="e", source=source, keyring=keyring, encryption_context=encryption_context,
                     frame_length=frame_length, algorithm=SUITE) as encryptor:
        # Read a frame at a time: asked for more, the ESDK builds its answer by concatenating
        # frames and re-slicing the rest (quadratic copying); frame-sized reads run ~5x faster.
        while chunk := encryptor.read(frame_length):
            sink(chunk)
        return encryptor.header
