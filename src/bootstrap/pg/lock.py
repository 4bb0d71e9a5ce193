"""
The migration lock: a session-level PostgreSQL advisory lock (goose's SessionLocker).

A waiting runner polls `pg_try_advisory_lock` with backoff and never waits
inside the server (a waiter holding a snapshot would make the holder's
CREATE INDEX CONCURRENTLY wait forever). Between polls it LISTENs on the lock's
channel, which the holder NOTIFYs as it releases, so waiters go on at once.
The lock lives on the runner's session: a crashed runner never leaves it behind.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

from ..backoff import LOCK_POLL, Backoff
from ..errors import ConfigError, LockTimeoutError
from ..typing import Logger
from .session import POOLING_FIX, Session

LOCK_WAIT_LOG_EVERY_S = 10.0


def advisory_key(schema: str, table: str) -> int:
    """A stable signed 64-bit advisory lock key for one ledger (old and new bootstraps share it)."""
    digest = hashlib.sha256(f"bootstrap:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_channel(key: int) -> str:
    """The LISTEN/NOTIFY channel on which a lock holder announces its release."""
    return f"bootstrap_lock_{key & 0xFFFFFFFFFFFFFFFF:x}"


class AdvisoryLocker:
    """
    The `Locker` of a direct (or session-pooled) connection.

    Args:
        session: the runner's session; the lock lives on it.
        key: the advisory key (`advisory_key` of the ledger).
        timeout_s: how long to wait for another runner (`--lock-timeout`).
        log: a structlog logger.
        poll: the pause between polls.
    """

    def __init__(self, session: Session, key: int, *, timeout_s: float, log: Logger,
                 poll: Backoff = LOCK_POLL) -> None:
        self.session = session
        self.key = key
        self.channel = lock_channel(key)
        self.timeout_s = timeout_s
        self.log = log
        self.poll = poll
        self.locked = False
        self._listening = False

    def acquire(self, still_needed: Callable[[], bool] | None = None) -> bool:
        """
        Take the lock, polling with backoff until `timeout_s`.

        Args:
            still_needed: asked after each refused poll; when it answers False
                (another runner finished the work meanwhile), stop waiting.

        Returns:
            True when the lock is held; False when `still_needed` said it no longer is.

        Raises:
            LockTimeoutError: still held by another session after the timeout.
        """
        timeout = self.timeout_s
        started = time.monotonic()
        step = 0
        next_report = 0.0
        released = False

        def not_needed() -> bool:
            if still_needed is None or still_needed():
                return False
            self._stop_listening()
            self.log.info("lock_not_needed", waited_ms=round((time.monotonic() - started) * 1000),
                          reason="another runner finished the work")
            return True

        while True:
            # Woken by the holder's release: it has most likely done the work, so ask
            # that first rather than have every waiter take the lock in turn to see.
            if released and not_needed():
                return False
            if self._try():
                self.locked = True
                self._stop_listening()
                waited = time.monotonic() - started
                self.log.info("lock_acquired", waited_ms=round(waited * 1000), lock_key=self.key)
                return True
            if not released and not_needed():
                return False
            waited = time.monotonic() - started
            if waited >= timeout:
                holder = self.holder()
                raise LockTimeoutError(
                    f"another runner held the migration lock for more than {timeout:g}s"
                    + (f" ({holder})" if holder else ""),
                    lock_key=self.key,
                    holder=holder,
                )
            if waited >= next_report:
                self.log.info("lock_waiting", waited_s=round(waited, 1), holder=self.holder(),
                              lock_timeout_s=timeout)
                next_report = waited + LOCK_WAIT_LOG_EVERY_S
            pause = min(self.poll.pause(step), max(0.0, timeout - waited))
            step += 1
            released = self.await_release(pause)

    def _try(self) -> bool:
        """
        One `pg_try_advisory_lock`. Behind a pooler it also refuses a server connection
        that holds the lock already (another client's session, shared by a transaction
        pooler: the lock is re-entrant, so it would say yes) and remembers which
        server connection holds it, for the guards on every write.
        """
        session = self.session
        if not session.pooled:
            row = session.conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            return bool(row and row[0])
        key = self.key & 0xFFFFFFFFFFFFFFFF
        row = session.conn.execute(
            "SELECT CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted"
            " AND pid = pg_catalog.pg_backend_pid() AND objsubid = 1 AND classid = %s::bigint::oid"
            " AND objid = %s::bigint::oid) THEN NULL ELSE pg_try_advisory_lock(%s) END, pg_catalog.pg_backend_pid()",
            [key >> 32, key & 0xFFFFFFFF, self.key],
        ).fetchone()
        assert row is not None
        if row[0] is None:
            raise ConfigError(
                "the migration lock is already held by this very server connection: a connection pooler in "
                "transaction mode hands it to more than one client, or a session pooler handed over a connection "
                "a killed runner left its lock on (keep PgBouncer's server_reset_query = DISCARD ALL); nothing "
                "was changed. " + POOLING_FIX,
                pool_mode="transaction",
            )
        if row[0]:
            session.lock_pid = int(row[1])
        return bool(row[0])

    def await_release(self, seconds: float) -> bool:
        """
        Sleep up to `seconds`, waking early (True) when a lock holder announces its
        release. The holder notifies the lock's channel as it releases the lock, so
        waiters go on at once instead of at their next backoff step. LISTEN holds no
        snapshot; a holder that dies without notifying is still met by the polls.
        """
        if not self.session.capabilities.listen:
            # Behind a pooler that may hand each statement another server connection, a LISTEN
            # could stay behind on one the app gets: poll only.
            time.sleep(seconds)
            return False
        if not self._listening:
            self.session.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            self._listening = True
        return any(True for _notify in self.session.conn.notifies(timeout=seconds, stop_after=1))

    def _stop_listening(self) -> None:
        if not self._listening:
            return
        self._listening = False
        conn = self.session.conn
        if conn.closed:
            return
        try:
            conn.execute("UNLISTEN *")
        except psycopg.Error:
            conn.close()

    def release(self) -> None:
        """
        Release the lock and wake the waiters; on a broken connection, closing it
        releases the lock.

        Raises:
            ConfigError: the lock was not held by this session's server connection
                (a transaction pooler moved the session): it is stranded elsewhere.
        """
        self._stop_listening()
        session = self.session
        released = True
        if self.locked and not session.closed:
            session.rollback_quietly()
            try:
                # Release and wake the waiters (see acquire) in one round trip.
                row = session.conn.execute("SELECT pg_advisory_unlock(%s), pg_notify(%s, '')",
                                           [self.key, self.channel]).fetchone()
                released = bool(row and row[0])
            except psycopg.Error:
                session.conn.close()
        self.locked = False
        # Behind a pooler: the unlock reached another server connection; say which backend keeps the lock.
        stranded = (session.moved(kept="what ran before is committed and recorded, but the unlock reached another "
                                       "server connection") if not released and session.pooled else None)
        session.lock_pid = None
        if not released:
            # Not raised while another error is on its way out (release runs in `finally`): that one says more.
            raising = stranded is not None and sys.exc_info()[0] is None
            self.log.error("lock_release_failed", lock_key=self.key,
                           error=stranded.message if stranded is not None and not raising else None,
                           reason="this session's server connection did not hold the migration lock")
            if raising and stranded is not None:
                raise stranded

    def holder(self) -> str:
        """Describe the session holding the lock (pid, application, client), if visible."""
        key = self.key & 0xFFFFFFFFFFFFFFFF
        row = self.session.conn.execute(
            """
            SELECT l.pid, a.application_name, a.client_addr::text, a.backend_start
              FROM pg_catalog.pg_locks l
              LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_catalog.pg_database
                                  WHERE datname = pg_catalog.current_database())
               AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
            """,
            [key >> 32, key & 0xFFFFFFFF],
        ).fetchone()
        if not row:
            return ""
        pid, app, addr, since = row
        parts = [f"pid {pid}"]
        if app:
            parts.append(f"application {app}")
        if addr:
            parts.append(f"client {addr}")
        if since:
            parts.append(f"connected since {since:%Y-%m-%dT%H:%M:%S%z}")
        return "held by " + ", ".join(parts)
