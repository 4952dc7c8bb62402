"""A secret in a database URL is never printed: not in errors, output, --debug tracebacks
or log records, whatever form the URL takes."""

from __future__ import annotations

import logging

import pytest
from cli_support import Invoke, one_error_line

from eventfold.cli.execution import EXIT_UNAVAILABLE
from eventfold.eventstore import masked

SECRET = "S3cr3tW0rd"

# Nothing listens on port 1: every form reaches the point where the store reports it.
URL_FORMS = {
    "user and password": f"postgresql://app:{SECRET}@127.0.0.1:1/shop",
    "password parameter": f"postgresql://app@127.0.0.1:1/shop?password={SECRET}",
    "password parameter, then others": (
        f"postgresql://app@127.0.0.1:1/shop?password={SECRET}&sslmode=disable"
    ),
    "unencoded #": f"postgresql://app:ab#{SECRET}@127.0.0.1:1/shop",
    "unencoded @ and /": f"postgresql://app:a@b/{SECRET}@127.0.0.1:1/shop",
    "unencoded ?": f"postgresql://app:a?{SECRET}@127.0.0.1:1/shop",
    "sslpassword": f"postgresql://app@127.0.0.1:1/shop?sslmode=disable&sslpassword={SECRET}",
    "passfile": f"postgresql://app@127.0.0.1:1/shop?passfile=/home/{SECRET}/.pgpass",
    "driver in the scheme": f"postgresql+asyncpg://app:{SECRET}@127.0.0.1:1/shop",
    "unknown scheme": f"mysql://root:{SECRET}@127.0.0.1/shop",
    "no scheme": f"root:{SECRET}@127.0.0.1/shop",
}

BROKER_FORMS = {
    "amqp user and password": f"amqp://guest:{SECRET}@127.0.0.1:5672/",
    "nats token": f"nats://{SECRET}@127.0.0.1:4222",
    "nats servers with passwords": f"nats://a:{SECRET}@h1:4222,nats://b:{SECRET}@h2:4222",
}


@pytest.mark.parametrize("url", [*URL_FORMS.values(), *BROKER_FORMS.values()],
                         ids=[*URL_FORMS, *BROKER_FORMS])
def test_masked_leaves_no_secret_and_keeps_the_host(url: str) -> None:
    shown = masked(url)
    assert SECRET not in shown
    assert "127.0.0.1" in shown or "h1" in shown


# SQLAlchemy, which migrations run through, hands query parameters to asyncpg as keyword
# arguments, and asyncpg takes no ``sslmode``, ``sslpassword`` or ``passfile`` keyword.
MIGRATE_FORMS = [
    name for name in URL_FORMS if name not in {
        "password parameter, then others", "sslpassword", "passfile",
    }
]
CASES = [(URL_FORMS[name], ["streams", "list"]) for name in URL_FORMS] + [
    (URL_FORMS[name], ["migrate"]) for name in MIGRATE_FORMS
]


@pytest.mark.parametrize(("url", "command"), CASES,
                         ids=[f"{name}-streams" for name in URL_FORMS]
                         + [f"{name}-migrate" for name in MIGRATE_FORMS])
def test_no_form_of_url_prints_its_secret(
    invoke: Invoke, caplog: pytest.LogCaptureFixture, url: str, command: list[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    plain = invoke("--database", url, *command)
    assert plain.exit_code == EXIT_UNAVAILABLE, plain.stderr
    one_error_line(plain)  # a typed error, never "unexpected ValueError"
    debug = invoke("--debug", "--database", url, *command)
    assert debug.exit_code == EXIT_UNAVAILABLE
    assert "Traceback" in debug.stderr
    printed = plain.stdout + plain.stderr + debug.stdout + debug.stderr
    assert SECRET not in printed
    logged = [record.getMessage() for record in caplog.records]
    assert not [line for line in logged if SECRET in line]


def test_an_unknown_scheme_lists_the_supported_ones(invoke: Invoke) -> None:
    line = one_error_line(invoke("--database", URL_FORMS["unknown scheme"], "streams", "list"))
    assert "the scheme mysql:// is not supported" in line
    assert "postgresql://" in line and "sqlite:///" in line and "memory://" in line
    assert "check that the server runs" not in line
