"""`AwsClients`: the one place boto3 clients are built.

Region and endpoint come from the standard variables (AWS_REGION / AWS_DEFAULT_REGION,
AWS_ENDPOINT_URL), so the same code talks to AWS or to the local emulator.
Every client counts its calls per service, which feeds metrics and benchmarks.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader, create_loader

_RETRIES = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=60)

_loader: Loader | None = None
_loader_lock = threading.Lock()


def new_session(**options: Any) -> boto3.session.Session:
    """A boto3 session of its own (credentials, region) whose service models come from one
    loader per process. Each session would otherwise parse every service's JSON model again
    (about 0.1 s of CPU per client): backfill threads, each with its own `AwsClients`, and a
    process that runs many functions locally paid that again and again. `options`: boto3
    Session's own (credentials, region)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = create_loader()
        loader = _loader
    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    session = boto3.session.Session(botocore_session=core, **options)
    # boto3 appends its own data path to the loader of every session it wraps: with one
    # loader for all, keep a single copy, or the search path grows with every session.
    with _loader_lock:
        loader.search_paths[:] = list(dict.fromkeys(loader.search_paths))
    return session


@dataclass
class AwsClients:
    """Lazily built, counted boto3 clients sharing one session.

    Not shared across threads for KMS work: the MPL's KMS components are not
    thread-safe, so each thread or process builds its own `AwsClients`.
    """

    session: boto3.session.Session = field(default_factory=new_session)
    calls: Counter = field(default_factory=Counter)
    _clients: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, service: str) -> Any:
        with self._lock:
            existing = self._clients.get(service)
            if existing is None:
                existing = self.session.client(service, config=_RETRIES)
                existing.meta.events.register(f"before-call.{existing.meta.service_model.service_id.hyphenize()}", self._count)
                self._clients[service] = existing
            return existing

    def _count(self, model: Any = None, **_: Any) -> None:
        service = model.service_model.service_name if model is not None else "unknown"
        with self._lock:  # the vault writer uploads parts from worker threads: keep the count exact
            self.calls[service] += 1

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @property
    def kms(self) -> Any:
        return self.client("kms")

    @property
    def region(self) -> str:
        return self.session.region_name or "us-east-1"
