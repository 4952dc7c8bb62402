"""A broker outage is quiet: one line when the broker goes down, one when it is back, no
traceback unless debug logging is on, and attempts spaced by a jittered backoff. A broker
whose client library is missing refuses to start with one line naming the extra."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from messaging_support import NATS_URL, RABBITMQ_URL

from eventfold.eventstore.backoff import Backoff
from eventfold.messaging import BrokerUnavailable, Message
from eventfold.messaging.kafka import KafkaPublisher
from eventfold.messaging.nats import JetStreamPublisher
from eventfold.messaging.rabbitmq import RabbitMQPublisher

ROOT = Path(__file__).resolve().parents[2]
QUICK = Backoff(initial=0.01, cap=0.05, jitter=True)
MESSAGE = Message(message_id="0190f7e4-8c1d-7000-8000-000000000001", event_type="Tested",
                  category="Outage", body=b"{}")


def _down(url: str) -> str:
    """The same broker URL on a port nothing listens on: the broker is down."""
    host_port = url.rsplit("@", 1)[-1].split("/", 1)[0]
    return url.replace(host_port, "127.0.0.1:1", 1)


Outaged = RabbitMQPublisher | JetStreamPublisher | KafkaPublisher


def _publishers(kind: str, request: pytest.FixtureRequest) -> tuple[Outaged, str]:
    if kind == "kafka":
        return KafkaPublisher("127.0.0.1:1", topic="eventfold-outage-test", ack_timeout=10,
                              reconnect=QUICK), request.getfixturevalue("kafka_url")
    if kind == "rabbitmq":
        rabbitmq = RabbitMQPublisher(_down(RABBITMQ_URL), exchange="eventfold-outage-test",
                                     connect_timeout=2, confirm_timeout=10, reconnect=QUICK)
        return rabbitmq, RABBITMQ_URL
    return JetStreamPublisher(_down(NATS_URL), stream="EVENTFOLD_OUTAGE_TEST",
                              subject_prefix="outagetest", connect_timeout=1, ack_timeout=10,
                              reconnect=QUICK), NATS_URL


async def _fail_attempts(publisher: Outaged, attempts: int) -> None:
    """Publish until ``attempts`` real connection attempts failed (a bounded loop)."""
    deadline = time.monotonic() + 120
    while publisher.health.failures < attempts:
        assert time.monotonic() < deadline, "the publisher never retried"
        with pytest.raises(BrokerUnavailable):
            await publisher.publish([MESSAGE])


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "kafka"])
async def test_an_outage_is_one_line_down_and_one_line_up(
    kind: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.INFO)
    publisher, live_url = _publishers(kind, request)
    try:
        await _fail_attempts(publisher, 4)
        down = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(down) == 1, [r.getMessage() for r in down]
        assert "is down" in down[0].getMessage() and down[0].exc_info is None
        # The broker comes back: point the publisher at the running one.
        if isinstance(publisher, RabbitMQPublisher):
            publisher.url = live_url
        else:
            publisher.servers = live_url
        deadline = time.monotonic() + 60
        while True:
            try:
                await publisher.publish([MESSAGE])
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 2 and "is up again after 4 failed attempts" in lines[1], lines
        assert not any(r.exc_info for r in caplog.records)
        assert "Traceback" not in caplog.text
    finally:
        await publisher.close()


@pytest.mark.parametrize("kind", ["rabbitmq", "nats", "kafka"])
async def test_debug_logging_shows_the_traceback_of_the_outage(
    kind: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    caplog.set_level(logging.DEBUG)
    publisher, _ = _publishers(kind, request)
    try:
        await _fail_attempts(publisher, 2)
    finally:
        await publisher.close()
    [down] = [r for r in caplog.records if "is down" in r.getMessage()]
    assert down.exc_info is not None


@pytest.mark.parametrize(("kind", "url", "module", "extra"), [
    ("rabbitmq", "amqp://guest:guest@127.0.0.1:1/", "aio_pika", "rabbitmq"),
    ("nats", "nats://127.0.0.1:1", "nats", "nats"),
    ("kafka", "kafka://127.0.0.1:1", "aiokafka", "kafka"),
])
def test_a_missing_client_library_refuses_the_shop_at_start(
    kind: str, url: str, module: str, extra: str, tmp_path: Path
) -> None:
    """``python -m examples.shop --broker`` without the extra: one line, at once."""
    program = (
        f"import sys; sys.modules[{module!r}] = None\n"  # the library is not installed
        "from examples.shop.__main__ import main\n"
        f"sys.exit(main(['--database', 'memory://', '--broker', {url!r}]))\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"pip install 'eventfold[{extra}]'" in result.stderr
    assert result.stdout == ""  # refused before the day began
    assert time.monotonic() - started < 60


def test_a_missing_client_library_refuses_eventfold_run(tmp_path: Path) -> None:
    """An App whose relay needs aio-pika: ``eventfold run`` stops with one line."""
    (tmp_path / "relayed.py").write_text(
        "from eventfold import App\n"
        "from eventfold.messaging.rabbitmq import rabbitmq_relay\n"
        "app = App(subscribers=[rabbitmq_relay('out', 'amqp://guest:guest@127.0.0.1:1/')])\n"
    )
    program = (
        "import sys; sys.modules['aio_pika'] = None\n"
        "from eventfold.cli import main; main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "--database", "memory://", "--app", "relayed:app", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "pip install 'eventfold[rabbitmq]'" in result.stderr
