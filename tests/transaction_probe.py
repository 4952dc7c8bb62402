"""What a database has open, seen from another connection (for the tests that prove no
subscriber waits with a transaction open)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg


def open_transactions(kind: str, url: str) -> Callable[[], list[str]]:
    """A look, from outside, at what a database has open: on SQLite whether another
    connection can take the write lock at once, on PostgreSQL the other sessions in a
    transaction (or holding an xid). The tests of "never wait with a transaction open"
    call it while a subscriber waits."""
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")

        def sqlite_open() -> list[str]:
            conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as exc:
                return [f"the write lock is held: {exc}"]
            finally:
                conn.close()
            return []

        return sqlite_open

    def postgres_open() -> list[str]:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, state, backend_xid::text, query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (state LIKE 'idle in transaction%' OR backend_xid IS NOT NULL)"
            ).fetchall()
        return [f"pid {pid} {state} xid {xid}: {query}" for pid, state, xid, query in rows]

    return postgres_open
