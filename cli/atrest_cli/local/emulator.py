"""`Emulator`: an AWS emulator (moto server) on a loopback port, in this process.

Code reaches it the way it reaches AWS: through the standard `AWS_ENDPOINT_URL`
variable (see `Emulator.environment`). Starting the emulator changes nothing in
`os.environ`; callers apply the variables where they want them.

moto keeps its state in module globals, so every moto server in one process (and
`moto.mock_aws`) shares one AWS: `Emulator` allows one running instance per process,
and `reset()` forgets everything (it is not called on start, so as not to wipe what
another moto user in the same process created).

IAM: requests signed with credentials from an AssumeRole against the emulator are held
to that role's policies, and to KMS key policies and grants (`atrest_cli.local.iam_enforcement`); requests signed with
the test credentials (`ACCESS_KEY_ID`) are not checked: they act as the administrator.
"""

from __future__ import annotations

import logging
import socket
import threading
import urllib.request
from types import TracebackType
from typing import Any

from botocore.config import Config

from atrest.core.clients import new_session
from atrest_cli.local import dynamodb_fidelity, event_fidelity, iam_enforcement, s3_fidelity

DEFAULT_REGION = "us-east-1"
# The credentials moto accepts for its default account (123456789012).
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"

_running_lock = threading.Lock()
_running: "Emulator | None" = None


class EmulatorError(RuntimeError):
    """The emulator could not start (port taken, another emulator running in this process)."""


class Emulator:
    """An in-process moto server on `host:port` (port 0: any free port).

    Use as a context manager, or call `start()` and `stop()`. While it runs, EventBridge
    events (from S3 and from PutEvents) have the shape AWS gives them
    (`atrest_cli.local.event_fidelity`), assumed roles' identity policies are enforced
    (`atrest_cli.local.iam_enforcement`), and werkzeug's per-request log lines are silenced.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, region: str = DEFAULT_REGION) -> None:
        self.host = host
        self.requested_port = port
        self.region = region
        self._server: Any = None
        self._port: int | None = None
        self._werkzeug_level: int | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> "Emulator":
        """Start serving; returns self. Raises `EmulatorError` when the port is taken or
        another `Emulator` runs in this process."""
        global _running
        from moto.server import ThreadedMotoServer

        if self.requested_port:
            _check_port_free(self.host, self.requested_port)
        with _running_lock:
            if _running is not None:
                raise EmulatorError(
                    f"an emulator already runs in this process at {_running.endpoint}; moto shares its state "
                    "across a process, so stop that one first (or reuse it)"
                )
            werkzeug_logger = logging.getLogger("werkzeug")
            self._werkzeug_level = werkzeug_logger.level
            werkzeug_logger.setLevel(logging.WARNING)
            event_fidelity.install()
            s3_fidelity.install()
            dynamodb_fidelity.install()
            server = ThreadedMotoServer(ip_address=self.host, port=self.requested_port, verbose=False)
            server.start()
            # Before anyone learns the port (port 0) every request goes through the check.
            iam_enforcement.install(server, self.account_id)
            self._server = server
            self._port = server.get_host_and_port()[1]
            _running = self
        return self

    def stop(self) -> None:
        """Stop serving and undo the in-process patches. Safe to call twice."""
        global _running
        with _running_lock:
            if self._server is None:
                return
            self._server.stop()
            self._server = None
            event_fidelity.uninstall()
            s3_fidelity.uninstall()
            dynamodb_fidelity.uninstall()
            if self._werkzeug_level is not None:
                logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
            if _running is self:
                _running = None

    def reset(self) -> None:
        """Forget every emulated resource (moto's documented `/moto-api/reset`)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- how to reach it ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmulatorError("the emulator has not been started")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def account_id(self) -> str:
        from moto.core import DEFAULT_ACCOUNT_ID

        return DEFAULT_ACCOUNT_ID

    def environment(self) -> dict[str, str]:
        """The standard AWS SDK variables that point boto3 (and the AWS CLI) at this emulator."""
        return emulator_environment(self.endpoint, self.region)

    def client(self, service: str) -> Any:
        """A boto3 client bound to this emulator explicitly (independent of `os.environ`)."""
        return emulator_client(service, endpoint=self.endpoint, region=self.region)


def emulator_environment(endpoint: str, region: str) -> dict[str, str]:
    """The standard AWS SDK variables for an emulator at `endpoint`."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }


_clients: dict[tuple[str, str, str], Any] = {}
_clients_lock = threading.Lock()


def emulator_client(service: str, *, endpoint: str, region: str) -> Any:
    """A boto3 client for an emulator at `endpoint` (for example one another process runs).
    Clients are built once per service, endpoint and region (building one takes ~0.1 s)
    and are safe to share between threads."""
    with _clients_lock:
        client = _clients.get((service, endpoint, region))
        if client is None:
            session = new_session(
                aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region
            )
            client = session.client(
                service, endpoint_url=endpoint, config=Config(retries={"max_attempts": 3, "mode": "standard"})
            )
            _clients[(service, endpoint, region)] = client
        return client


def is_reachable(endpoint: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections at `endpoint` (http://host:port)."""
    host_port = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _check_port_free(host: str, port: int) -> None:
    # moto's ThreadedMotoServer waits forever when its server cannot bind, so check first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise EmulatorError(f"cannot listen on {host}:{port}: {error.strerror or error}") from error
