"""S3 answers with what AWS puts in them, in the in-process moto server.

moto 5.2.5 answers CompleteMultipartUpload without the object's checksum. S3 returns it
(`ChecksumSHA256` "<base64>-<parts>" and `ChecksumType` COMPOSITE for an upload created with
`ChecksumAlgorithm=SHA256`), and the vault writer relies on that to skip reading the
checksum back with a HEAD (atrest.storage.vault). Without this patch the emulator would
charge every multipart upload a request AWS does not. moto computes the checksum when it
completes the upload (HEAD returns it), so the answer only needs it copied in.

`install()` wraps moto's handler inside the moto server (which runs in this process);
`uninstall()` puts moto's own back. docs/local.md lists the differences this removes.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

_originals: dict[str, Any] = {}
_CLOSE = "</CompleteMultipartUploadResult>"


def _key_response_post(self: Any, request: Any, body: bytes, bucket_name: str, query: dict[str, Any],
                       key_name: str) -> Any:
    status, headers, answer = _originals["post"](self, request, body, bucket_name, query, key_name)
    if status != 200 or "uploadId" not in query:
        return status, headers, answer
    key = self.backend.get_object(bucket_name, key_name, version_id=headers.get("x-amz-version-id"))
    algorithm = getattr(key, "checksum_algorithm", None)
    value = getattr(key, "checksum_value", None)
    text = answer.decode() if isinstance(answer, bytes) else answer
    if not algorithm or not value or _CLOSE not in text or "<Checksum" in text:
        return status, headers, answer
    kind = getattr(key, "checksum_type", None) or "COMPOSITE"
    parts = getattr(key, "checksum_parts", None)  # moto keeps the part count
    checksum = f"{value}-{parts}" if kind == "COMPOSITE" and isinstance(parts, int) and "-" not in value else value
    name = f"Checksum{escape(algorithm.upper())}"
    extra = f"<{name}>{escape(checksum)}</{name}><ChecksumType>{escape(kind)}</ChecksumType>"
    text = text.replace(_CLOSE, extra + _CLOSE)
    return status, headers, text.encode() if isinstance(answer, bytes) else text


def install() -> None:
    """Make the in-process moto server answer CompleteMultipartUpload as S3 does."""
    from moto.s3.responses import S3Response

    if not _originals:
        _originals["post"] = S3Response._key_response_post
        S3Response._key_response_post = _key_response_post


def uninstall() -> None:
    """Put moto's own handler back."""
    from moto.s3.responses import S3Response

    if _originals:
        S3Response._key_response_post = _originals.pop("post")
