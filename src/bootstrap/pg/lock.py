"""
The migration lock: a session-level PostgreSQL advisory lock (goose's SessionLocker).

A waiting runner polls `pg_try_advisory_lock` with backoff and never waits
inside the server (a waiter holding a snapshot would make the holder's
CREATE INDEX CONCURRENTLY wait forever). Between polls it LISTENs on the lock's
channel, which the holder NOTIFYs as it releases, so waiters go on at once.
The lock lives on the runner's session: a crashed runner never leaves it behind.
A waiter whose connection is lost (a server restart) connects again and keeps
waiting, within its timeouts.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import sql

from ..backoff import LOCK_POLL, Backoff, retry
from ..errors import ConfigError, LockTimeoutError
from ..typing import Logger
from .session import POOLING_FIX, Session

LOCK_WAIT_LOG_EVERY_S = 10.0
_HELD, _NOT_NEEDED = "held", "not needed"
T = TypeVar("T")


def advisory_key(schema: str, table: str) -> int:
    """A stable signed 64-bit advisory lock key for one ledger (old and new bootstraps share it)."""
    digest = hashlib.sha256(f"bootstrap:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_channel(key: int) -> str:
    """The LISTEN/NOTIFY channel on which a lock holder announces its release."""
    return f"bootstrap_lock_{key & 0xFFFFFFFFFFFFFFFF:x}"


class AdvisoryLocker:
    """
    The lock of a direct (or session-pooled) connection.

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
        started = time.monotonic()
        woken, report_at = [False], [0.0]

        def not_needed() -> bool:
            if still_needed is None or still_needed():
                return False
            self.log.info("lock_not_needed", waited_ms=round((time.monotonic() - started) * 1000),
                          reason="another runner finished the work")
            return True

        def attempt() -> str | None:
            # Woken by the holder's release: it has most likely done the work, so ask
            # that first rather than have every waiter take the lock in turn to see.
            if woken[0] and not_needed():
                return _NOT_NEEDED
            if self._try():
                return _HELD
            if not woken[0] and not_needed():
                return _NOT_NEEDED
            waited = time.monotonic() - started
            if waited >= report_at[0]:
                self.log.info("lock_waiting", waited_s=round(waited, 1), holder=self.holder(),
                              lock_timeout_s=self.timeout_s)
                report_at[0] = waited + LOCK_WAIT_LOG_EVERY_S
            return None

        def sleep(seconds: float) -> None:
            woken[0] = bool(self.reconnecting(lambda: self.await_release(seconds)))

        outcome = retry(lambda: self.reconnecting(attempt), again=lambda error, result: error is None and not result,
                        pauses=self.poll, deadline=started + self.timeout_s, sleep=sleep)
        self._stop_listening()
        if outcome == _NOT_NEEDED:
            return False
        if outcome != _HELD:
            holder = self.holder()
            raise LockTimeoutError(
                f"another runner held the migration lock for more than {self.timeout_s:g}s"
                + (f" ({holder})" if holder else ""), lock_key=self.key, holder=holder)
        self.session.lock_key = self.key
        self.log.info("lock_acquired", waited_ms=round((time.monotonic() - started) * 1000), lock_key=self.key)
        return True

    def reconnecting(self, attempt: Callable[[], T]) -> T | None:
        """
        One poll; a connection lost while waiting (nothing is held) is opened again, waited
        for up to --timeout (exit 4 when it does not come back), and the wait goes on.
        """
        try:
            return attempt()
        except psycopg.OperationalError as exc:
            if not self.session.is_disconnect(exc):
                raise
            self.log.warning("lock_wait_connection_lost", error=(exc.diag.message_primary or str(exc)).strip(),
                             reason="nothing is held while waiting: connecting again")
            self._listening = False
            self.session.reconnect()
            return None

    def _try(self) -> bool:
        """
        One `pg_try_advisory_lock`. Behind a pooler it also refuses a server connection
        that holds the lock already (another client's session, shared by a transaction
        pooler: the lock is re-entrant, so it would say yes) and remembers which
        server connection holds it, for the guard in every file.
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
            session.lock_key = self.key
            if not session.on_holder():  # moved at once: a transaction pooler, and nothing written yet
                raise session.lock_lost()
        return bool(row[0])

    def await_release(self, seconds: float) -> bool:
        """
        Sleep up to `seconds`, waking early (True) when a lock holder announces its
        release. The holder notifies the lock's channel as it releases the lock, so
        waiters go on at once instead of at their next backoff step. LISTEN holds no
        snapshot; a holder that dies without notifying is still met by the polls.
        """
        if not self.session.can_listen:
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
            ConfigError: the lock was no longer this session's (a file released it, or a
                transaction pooler moved the session: then the stranded lock is freed).
        """
        self._stop_listening()
        session = self.session
        held = session.lock_key is not None
        released = True
        if held and not session.closed:
            session.rollback_quietly()
            try:
                # Release and wake the waiters (see acquire) in one round trip.
                row = session.conn.execute("SELECT pg_advisory_unlock(%s), pg_notify(%s, '')",
                                           [self.key, self.channel]).fetchone()
                released = bool(row and row[0])
            except psycopg.Error:
                session.conn.close()
        if released:
            session.lock_key = session.lock_pid = None
            return
        lost = session.lock_lost(kept="what ran before is committed and recorded, but the unlock " + (
            "reached another server connection" if session.pooled else "found the lock already released"))
        session.lock_key = session.lock_pid = None
        # Not raised while another error is on its way out (release runs in `finally`): that one says more.
        raising = sys.exc_info()[0] is None
        self.log.error("lock_release_failed", lock_key=self.key, error=None if raising else lost.message,
                       reason="this session's server connection did not hold the migration lock")
        if raising:
            raise lost

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
