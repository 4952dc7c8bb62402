"""Printing URLs without their secrets, and reading database URLs with typed errors.

Every URL eventfold prints (errors, command-line output, logs, ``--debug`` tracebacks,
brokers' names) goes through ``masked`` first. It works on the text, not on a parsed URL,
so it also masks URLs that do not parse: a password with an unencoded ``#``, ``@`` or
``/``, a password given as a query parameter (``?password=``, ``sslpassword``,
``passfile``), a NATS token in place of a user. It masks too much rather than too little.

This module imports nothing of the backends, so they and ``connect`` can all use it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from eventfold.eventstore.errors import DatabaseMissing, InvalidDatabaseURL, StoreUnavailable

MASK = "***"
"""What a secret is replaced with."""

_NO_SUCH_DATABASE = "3D000"
"""PostgreSQL's SQLSTATE for "database does not exist" (invalid_catalog_name)."""

_TOKEN_SCHEMES = frozenset({"nats", "tls"})
"""Schemes whose user part alone (``nats://TOKEN@host``) is a secret."""

# A query parameter whose name says it holds a secret (password, sslpassword, passfile,
# token, secret, ...). Its value runs to the next ``&name=`` or the end: a secret with an
# unencoded ``&`` or ``#`` is masked whole.
_SECRET_PARAMETER = re.compile(
    r"(?P<name>(?:^|[?&;\s])[A-Za-z_]*(?:pass|secret|token)[A-Za-z_]*=)"
    r"(?P<value>.*?)(?=[&;\s][A-Za-z_]+=|$)",
    re.IGNORECASE | re.DOTALL,
)

# Where one server of a comma-separated list ends and the next (with a scheme) begins.
_SERVERS = re.compile(r",(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def masked(url: str) -> str:
    """``url`` with every secret replaced by ``***``: safe to print and log."""
    # ``nats://a:x@h1,nats://b:y@h2``: several servers, each with its own credentials.
    return ",".join(_masked_one(part) for part in _SERVERS.split(url))


def _masked_one(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    # The user part ends at the last ``@``: a password may hold unencoded ``@``, ``/``,
    # ``?`` or ``#``, which a parser would take for the end of the user part.
    userinfo, at, host_and_more = rest.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if colon:
            userinfo = f"{user}:{MASK}"
        elif scheme.split("+", 1)[0].lower() in _TOKEN_SCHEMES:
            userinfo = MASK
        rest = f"{userinfo}@{_masked_parameters(host_and_more)}"
    else:
        rest = _masked_parameters(rest)
    return f"{scheme}{separator}{rest}"


def _masked_parameters(text: str) -> str:
    return _SECRET_PARAMETER.sub(lambda match: f"{match['name']}{MASK}", text)


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case, without a driver (``postgresql+asyncpg`` ->
    ``postgresql``); empty when there is none."""
    scheme, separator, _ = url.partition(":")
    return scheme.split("+", 1)[0].lower() if separator else ""


def unsupported_scheme(url: str) -> InvalidDatabaseURL:
    """The error for a URL whose scheme names no database eventfold opens."""
    scheme = scheme_of(url)
    problem = f"the scheme {scheme}:// is not supported" if scheme else "it has no scheme"
    return InvalidDatabaseURL(masked(url), problem)


def parse_database_url(url: str) -> URL:
    """The SQLAlchemy URL of a store URL; ``InvalidDatabaseURL`` (never the secret) when it
    does not parse, e.g. a password with an unencoded ``#``, ``/`` or ``@``."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise InvalidDatabaseURL(
            masked(url),
            "it does not parse; percent-encode special characters in the user and password "
            "(# as %23, @ as %40, / as %2F, ? as %3F)",
        ) from None


def missing_database(url: str, error: BaseException) -> DatabaseMissing | None:
    """``DatabaseMissing`` with a ``createdb`` command for ``url`` when ``error`` (or what
    it wraps) is PostgreSQL's "database does not exist" (SQLSTATE 3D000), else None."""
    cause: BaseException | None = error
    while cause is not None and getattr(cause, "sqlstate", None) != _NO_SUCH_DATABASE:
        cause = getattr(cause, "orig", None) or cause.__cause__
    if cause is None:
        return None
    parsed = parse_database_url(url)
    database = parsed.database or ""
    createdb = ["createdb"]
    for option, value in (("-h", parsed.host), ("-p", parsed.port), ("-U", parsed.username)):
        if value:
            createdb += [option, str(value)]
    return DatabaseMissing(masked(url), database, shlex.join([*createdb, database]))


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL, or None for an in-memory database or a SQLite
    URI (``file:...``, which says for itself how to open the file).

    Raises ``StoreUnavailable`` when the file's directory does not exist: SQLite could not
    create the file there, and the driver would fail in its own thread."""
    database = parse_database_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    if not path.parent.is_dir():
        raise StoreUnavailable(
            masked(url),
            f"the directory {str(path.parent)!r} of the SQLite file does not exist: create "
            f"it (mkdir -p {shlex.quote(str(path.parent))}), then run `eventfold migrate` "
            "with this URL",
        )
    return path


def same_database(first: str, second: str) -> bool:
    """Whether two database URLs name the same database: the same PostgreSQL server and
    database, or the same SQLite file (drivers, users and secrets aside). In-memory
    databases are never the same: each connection has its own."""
    try:
        identity = _identity(make_url(first))
        return identity is not None and identity == _identity(make_url(second))
    except (ArgumentError, ValueError):
        return False


def _identity(url: URL) -> tuple[str, ...] | None:
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return (backend, str(Path(database).resolve()))
    if backend in {"postgresql", "postgres"}:
        return ("postgresql", url.host or "localhost", str(url.port or 5432), url.database or "")
    return None
