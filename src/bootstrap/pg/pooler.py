"""
How a connection pooler between bootstrap and PostgreSQL pools: per session
(PgBouncer `pool_mode = session`: one server connection per client, for its
lifetime) or per transaction (a server connection per transaction, shared
between clients).

Only asked behind a pooler (the server's `pg_backend_pid()` differs from the
pid in libpq's BackendKeyData, which a pooler makes up) and only before work
that needs a session: a direct connection never pays for it.

The probe: the session reads its server pid (a1); a second client connection
reads its own (b); the session reads again (a2). Per session, a1 == a2 and
b != a1 always. Per transaction, a quiet pool hands the second client the
server connection the session just released (b == a1), or a busy one moves the
session (a2 != a1). A second client that gets no server connection within a
few seconds (a session pool with every connection taken) is not waited for:
the probe answers "unknown" after PROBE_WAIT_S, treated as session pooling; the guards on every
write still catch a transaction pooler then.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from .session import Session

PROBE_WAIT_S = 1.0
_PID_QUERY = b"SELECT pg_catalog.pg_backend_pid()"


def pool_mode(session: Session, opener: Callable[[], psycopg.Connection[Any]] | None) -> str:
    """`transaction`, `session`, or `unknown` (the probe could not tell; treated as session)."""
    if opener is None:
        return "unknown"
    first = _pid(session.conn)
    try:
        other = opener()
    except psycopg.Error:
        return "unknown"
    try:
        theirs = _pid_within(other, PROBE_WAIT_S)
        second = _pid(session.conn)
    finally:
        other.close()
    if theirs is None:
        return "unknown"
    return "transaction" if theirs == first or second != first else "session"


def _pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(_PID_QUERY).fetchone()
    assert row is not None
    return int(row[0])


def _pid_within(conn: psycopg.Connection[Any], seconds: float) -> int | None:
    """The server pid `conn` reports, or None when no server connection answered within `seconds`."""
    pgconn = conn.pgconn
    deadline = time.monotonic() + seconds
    pgconn.send_query(_PID_QUERY)
    while pgconn.flush():  # the query is tiny: this loop ends at once unless the socket is full
        select.select([], [pgconn.socket], [], max(0.0, deadline - time.monotonic()))
    while pgconn.is_busy():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        readable, _, _ = select.select([pgconn.socket], [], [], remaining)
        if readable:
            pgconn.consume_input()
    value: int | None = None
    while (result := pgconn.get_result()) is not None:
        if result.ntuples:
            raw = result.get_value(0, 0)
            value = int(raw) if raw is not None else None
    return value
