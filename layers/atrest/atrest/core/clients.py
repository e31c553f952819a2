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
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.loaders import Loader

_RETRIES = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=60)

_loader: Loader | None = None
_loader_lock = threading.Lock()
_botocore_create_loader = botocore.loaders.create_loader  # the loaders module's own, never replaced


class _SearchPaths(list):
    """A loader's search path that ignores a path it already holds: boto3 appends its own data
    path to the loader of every session it wraps, and with one loader for the process (boto3
    sessions built outside `new_session` included) the list would otherwise grow with each."""

    def append(self, path: Any) -> None:
        if path not in self:
            super().append(path)


def shared_loader() -> Loader:
    """The process's one service model loader (built on first use)."""
    global _loader
    with _loader_lock:
        if _loader is None:
            _loader = _botocore_create_loader()
            _loader._search_paths = _SearchPaths(_loader.search_paths)  # what `search_paths` returns
        return _loader


def _create_loader(search_path_string: str | None = None) -> Loader:
    # What every botocore session in the process builds its data loader with (see below).
    # A session given its own data path (AWS_DATA_PATH) keeps a loader of its own.
    return _botocore_create_loader(search_path_string) if search_path_string else shared_loader()


# Sessions atrest does not build share the loader too: the X-Ray SDK that Powertools' Tracer
# loads builds a botocore session of its own for its sampling client, and with a loader of its
# own that session parsed endpoints.json (1.2 MB of JSON) and the rest again: ~16 MiB more
# resident for the life of a Lambda environment (bench/rss_probe.py). botocore looks the
# factory up in its session module at each session's first data load, so this reaches every
# session created after atrest.core.clients is imported (handlers import it before Tracer()).
botocore.session.create_loader = _create_loader


def new_session(**options: Any) -> boto3.session.Session:
    """A boto3 session of its own (credentials, region) whose service models come from one
    loader per process. Each session would otherwise parse every service's JSON model again
    (about 0.1 s of CPU per client): backfill threads, each with its own `AwsClients`, and a
    process that runs many functions locally paid that again and again. `options`: boto3
    Session's own (credentials, region)."""
    loader = shared_loader()
    core = botocore.session.get_session()
    core.register_component("data_loader", loader)
    return boto3.session.Session(botocore_session=core, **options)


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
