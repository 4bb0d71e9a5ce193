"""
How a connection pooler between bootstrap and PostgreSQL pools: per session
(PgBouncer `pool_mode = session`: one server connection per client, for its
lifetime) or per transaction (a server connection per transaction, shared
between clients); and freeing a lock a transaction pooler stranded.

Only asked behind a pooler (the server's `pg_backend_pid()` differs from the
pid in libpq's BackendKeyData, which a pooler makes up) and only before work
that needs a session: a direct connection never pays for it.

The probe, in rounds: the session reads its server pid (a1); a second client
connection reads its own (b); the session reads again (a2). Per session, a1 ==
a2 and b != a1 always. Per transaction, a quiet pool hands the second client the
server connection the session just released (b == a1), or a busy one moves the
session (a2 != a1); a round can miss both by chance, so several are run. A
second client that gets no server connection within PROBE_WAIT_S (a session
pool with every connection taken) is not waited for: "unknown", treated as
session pooling. No probe can be certain, so the guard in every file's prologue
(session.py) catches a move, and `free_stranded_lock` ends the server backend the
lock was left on, so no lock outlives the run.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

import psycopg

from ..typing import Logger

PROBE_WAIT_S = 1.0
PROBE_ROUNDS = 3
_PID_QUERY = b"SELECT pg_catalog.pg_backend_pid()"


def pool_mode(conn: psycopg.Connection[Any], opener: Callable[[], psycopg.Connection[Any]] | None) -> str:
    """`transaction`, `session`, or `unknown` (the probe could not tell; treated as session)."""
    if opener is None:
        return "unknown"
    try:
        other = opener()
    except psycopg.Error:
        return "unknown"
    try:
        for _round in range(PROBE_ROUNDS):
            first = _pid(conn)
            theirs = _pid_within(other, PROBE_WAIT_S)
            if theirs is None:
                return "unknown"
            if theirs == first or _pid(conn) != first:
                return "transaction"
    finally:
        other.close()
    return "session"


def free_stranded_lock(conn: psycopg.Connection[Any], pid: int | None, key: int | None, log: Logger) -> str:
    """
    The lock is on a server connection this session no longer reaches (a transaction
    pooler moved it): end that backend, which frees the lock, rather than leave it
    blocking every deploy until the pool recycles the connection.

    Returns:
        What the error message adds about the lock.
    """
    if pid is None or key is None:
        return ""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    try:
        row = conn.execute(
            "SELECT pg_catalog.pg_terminate_backend(l.pid) FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory'"
            " AND l.granted AND l.pid = %s AND l.objsubid = 1 AND l.classid = %s::bigint::oid"
            " AND l.objid = %s::bigint::oid", [pid, unsigned >> 32, unsigned & 0xFFFFFFFF]).fetchone()
    except psycopg.Error as exc:
        return (f" The migration lock is left on server backend {pid} and could not be freed "
                f"({exc.diag.message_primary or exc}): SELECT pg_terminate_backend({pid}) frees it.")
    if row is None:
        return ""
    log.warning("lock_stranded_freed", server_pid=pid, freed=bool(row[0]),
                reason="the migration lock was left on a server connection of the pooler")
    if not row[0]:
        return f" The migration lock is left on server backend {pid}: SELECT pg_terminate_backend({pid}) frees it."
    return f" The migration lock it left on server backend {pid} was freed (that backend was ended)."


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
