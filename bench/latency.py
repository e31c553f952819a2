"""The "region" bench profile: per-request latency modelled on AWS's typical in-region figures.

The emulator answers in well under a millisecond plus whatever moto's Python costs, so on it
a request is nearly free and a peer's requests per object barely weigh. In a region each
request costs a round trip to the service and each byte a transfer at the per-connection
rate S3 sustains. `RegionLatency` is WSGI middleware in front of the emulator: on the
server's request thread (werkzeug serves each request on a thread of its own, so concurrent
clients overlap as they would against AWS) it sleeps
- before handing the request on: the operation's first-byte latency, plus the upload time of
  the request body at the per-request rate (PutObject, UploadPart);
- while the response body streams out: its download time at the same rate (GetObject).
Every figure, and where it comes from, is in `SOURCES` (the report prints both).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

PROFILES = ("emulator", "region")
MB = 1_000_000


@dataclass(frozen=True)
class Figures:
    # S3: small requests' median latency is "in the range of tens of milliseconds" (SOURCES["s3"]);
    # 30 ms is used for every S3 request (GET/PUT/HEAD/UploadPart/multipart control/list/delete).
    s3_first_byte_s: float = 0.030
    # One S3 connection moves 85-90 MB/s (SOURCES["s3_rate"]); the lower end is used.
    s3_mb_per_s: float = 85.0
    # DynamoDB single-item reads and writes: "single-digit millisecond" (SOURCES["dynamodb"]).
    dynamodb_item_s: float = 0.005
    # Query, Scan, Batch*, Transact*: several items per request (assumed twice a single item).
    dynamodb_multi_s: float = 0.010
    # KMS: no published typical latency was found (SOURCES["kms"]); assumed 10 ms per call.
    kms_s: float = 0.010


FIGURES = Figures()

SOURCES: dict[str, str] = {
    "s3": "AWS whitepaper *Best Practices Design Patterns: Optimizing Amazon S3 Performance*, "
          "\"Timeouts and Retries for Latency-Sensitive Applications\" "
          "(https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/"
          "timeouts-and-retries-for-latency-sensitive-applications.html): for small requests (under 512 KB) "
          "\"median latencies are often in the range of tens of milliseconds\". The 100-200 ms first-byte figure "
          "often quoted (e.g. course notes such as https://knowledgebase.atakan-erdonmez.com/AWS-CSA/S3/S3-Performance) "
          "is not on an AWS page found for this bench; it would weigh S3 requests 3-7x more.",
    "s3_rate": "Same whitepaper, \"Horizontal Scaling and Request Parallelization for High Throughput\" "
               "(https://docs.aws.amazon.com/whitepapers/latest/s3-optimizing-performance-best-practices/"
               "horizontal-scaling-and-request-parallelization-for-high-throughput.html): \"Make one concurrent request "
               "for each 85-90 MB/s of desired network throughput\" (in-region, to EC2), i.e. about 85-90 MB/s per "
               "connection.",
    "dynamodb": "AWS's description of DynamoDB, \"single-digit millisecond performance at any scale\" "
                "(Amazon DynamoDB Developer Guide, https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                "Introduction.html); the phrase applies to single-item GetItem/PutItem/UpdateItem/DeleteItem by key.",
    "kms": "No AWS page giving a typical KMS API latency was found (the KMS developer guide publishes request "
           "quotas, https://docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html, not latencies). "
           "10 ms is an assumption, in line with third-party reports of under 10 ms per symmetric call.",
}

_CREDENTIAL = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
_DYNAMODB_SINGLE = {"GetItem", "PutItem", "UpdateItem", "DeleteItem"}


def service_and_operation(environ: dict[str, Any]) -> tuple[str, str]:
    """Which service and operation class a request is for, from what SigV4 and the protocols put
    on every request: the credential scope names the service; JSON protocols name the operation in
    X-Amz-Target; S3 says it with the method and query."""
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    match = _CREDENTIAL.search(authorization) or _CREDENTIAL.search(
        "Credential=" + environ.get("QUERY_STRING", "").partition("X-Amz-Credential=")[2].replace("%2F", "/"))
    service = match.group(1) if match else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rpartition(".")[2]
    if service != "s3":
        return service, ""
    method, query = environ.get("REQUEST_METHOD", ""), environ.get("QUERY_STRING", "")
    if method == "PUT" and "partNumber=" in query:
        return service, "UploadPart"
    return service, {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject", "POST": "Post",
                     "DELETE": "DeleteObject"}.get(method, method)


def first_byte_seconds(service: str, operation: str, figures: Figures = FIGURES) -> float:
    if service == "s3":
        return figures.s3_first_byte_s
    if service == "dynamodb":
        return figures.dynamodb_item_s if operation in _DYNAMODB_SINGLE else figures.dynamodb_multi_s
    if service == "kms":
        return figures.kms_s
    return 0.0  # STS, SQS, EventBridge, IAM: not on the path the bench measures


class RegionLatency:
    """WSGI middleware: the modelled latency of each request, slept on the thread serving it."""

    def __init__(self, app: Callable[..., Any], figures: Figures = FIGURES,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.app = app
        self.figures = figures
        self.sleep = sleep

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        service, operation = service_and_operation(environ)
        delay = first_byte_seconds(service, operation, self.figures)
        if service == "s3":
            # aws-chunked uploads carry the payload size apart from the (framed) Content-Length.
            sent = int(environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH") or environ.get("CONTENT_LENGTH") or 0)
            delay += sent / (self.figures.s3_mb_per_s * MB)
        if delay:
            self.sleep(delay)
        body = self.app(environ, start_response)
        if service == "s3" and operation == "GetObject":
            return self._paced(body)
        return body

    def _paced(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """The response body at the per-connection rate, chunk by chunk as it streams out."""
        try:
            for chunk in body:
                if chunk:
                    self.sleep(len(chunk) / (self.figures.s3_mb_per_s * MB))
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def install_latency(server: Any, profile: str) -> None:
    """Put `RegionLatency` in front of a running `ThreadedMotoServer` for the "region" profile."""
    if profile == "region":
        wsgi_server = server._server
        wsgi_server.app = RegionLatency(wsgi_server.app)


def figures_table(figures: Figures = FIGURES) -> list[tuple[str, str, str]]:
    """(requests, modelled latency, source key) rows for the report."""
    return [
        ("S3, every request (GET, PUT, HEAD, UploadPart, multipart control, list, delete): first byte",
         f"{figures.s3_first_byte_s * 1000:g} ms", "s3"),
        ("S3 request and response bodies (PutObject, UploadPart, GetObject)", f"{figures.s3_mb_per_s:g} MB/s per request",
         "s3_rate"),
        ("DynamoDB GetItem, PutItem, UpdateItem, DeleteItem", f"{figures.dynamodb_item_s * 1000:g} ms", "dynamodb"),
        ("DynamoDB Query, Scan, Batch*, Transact* (assumed 2x a single item)", f"{figures.dynamodb_multi_s * 1000:g} ms",
         "dynamodb"),
        ("KMS (GenerateDataKey, Decrypt, Encrypt, ...)", f"{figures.kms_s * 1000:g} ms", "kms"),
    ]
