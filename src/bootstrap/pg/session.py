"""
One connection to PostgreSQL and the session-bound mechanisms bootstrap relies on.

A `Session` owns the autocommit connection and everything that depends on
the server keeping state for this session between statements: the advisory
lock, LISTEN, the temporary queue of ledger rows, SQL-level PREPARE, session
settings and their reset, startup options, protocol-level prepares. Which of
them this session may rely on is decided once, in `Capabilities`; the locker,
the ledger and the applier ask it rather than decide for themselves (a
connection pooler in transaction mode keeps none of them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq

from .. import redact
from ..errors import DatabaseUnavailableError
from ..typing import Logger

# So a killed runner's backend stops within a second, even mid-statement (PostgreSQL >= 14).
CLIENT_CHECK_INTERVAL_MS = 1000
_OK_STATUSES = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY})


class Capabilities(NamedTuple):
    """
    The seven session-bound mechanisms, each True when this session may rely on it.

    Attributes:
        advisory_lock: a session-level `pg_try_advisory_lock` stays held between statements.
        listen: `LISTEN` wake-ups reach this session.
        temp_objects: a temporary table and sequence survive between transactions.
        sql_prepare: `PREPARE`d statements survive between transactions.
        session_settings: `SET` (and the `RESET ALL` after each file) apply to this session only.
        startup_options: the server honours libpq's `options` startup parameter.
        protocol_prepare: protocol-level prepared statements survive between transactions.
    """

    advisory_lock: bool = True
    listen: bool = True
    temp_objects: bool = True
    sql_prepare: bool = True
    session_settings: bool = True
    startup_options: bool = True
    protocol_prepare: bool = True


DIRECT = Capabilities()


class ScriptResult(NamedTuple):
    """What one simple query did: statements completed, the error of the one that failed, the last rows."""

    done: int
    error: psycopg.Error | None
    rows: Any


class Session:
    """
    One autocommit connection with bootstrap's session plumbing.

    Args:
        conn: an open connection (autocommit).
        log: a structlog logger (server notices are logged on it).
        capabilities: what the session may rely on (`DIRECT` for a plain connection).
    """

    def __init__(self, conn: psycopg.Connection[Any], log: Logger, capabilities: Capabilities = DIRECT) -> None:
        self.conn = conn
        self.log = log
        self.capabilities = capabilities
        self._cur: psycopg.Cursor[Any] | None = None
        self._notice_context: dict[str, Any] = {}
        conn.add_notice_handler(self._on_notice)

    @property
    def pooled(self) -> bool:
        """Whether a pooler sits between bootstrap and the server (some mechanisms may be missing)."""
        return self.capabilities != DIRECT

    @property
    def server_version(self) -> int:
        """The server's version as an integer (150004 for 15.4)."""
        return self.conn.info.server_version

    @property
    def user(self) -> str:
        """The role bootstrap connected as."""
        return self.conn.info.user

    @property
    def cursor(self) -> psycopg.Cursor[Any]:
        """A cursor kept for the session's small statements (saves creating one per file)."""
        if self._cur is None or self._cur.closed:
            self._cur = self.conn.cursor()
        return self._cur

    def close(self) -> None:
        """Close the connection; the server releases the session's advisory lock."""
        self.conn.close()

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self.conn.closed

    def in_transaction(self) -> bool:
        """Whether a transaction is open (or failed) on the connection."""
        return self.conn.info.transaction_status != pq.TransactionStatus.IDLE

    # -- running SQL -----------------------------------------------------------------------

    def run_script(self, text: str) -> ScriptResult:
        """
        Send `text` as one simple query (several statements allowed), and tell
        which statement failed: the one use of psycopg's low-level generators.

        Returns:
            (statements that completed, the error of the one that failed, the
            last result that returned rows)
        """
        pgconn = self.conn.pgconn
        pgconn.send_query(text.encode("utf-8"))
        results = self.conn.wait(generators.execute(pgconn))
        done, rows = 0, None
        for result in results:
            if result.status in _OK_STATUSES:
                if result.status == pq.ExecStatus.TUPLES_OK:
                    rows = result
                if result.status != pq.ExecStatus.EMPTY_QUERY:
                    done += 1
                continue
            if result.status == pq.ExecStatus.FATAL_ERROR:
                return ScriptResult(done, pgerrors.error_from_result(result, encoding=self.conn.info.encoding), rows)
            return ScriptResult(done, psycopg.ProgrammingError(
                f"unexpected result status {pq.ExecStatus(result.status).name} (COPY is not supported)"
            ), rows)
        return ScriptResult(done, None, rows)

    def rollback_quietly(self) -> None:
        """End an open or failed transaction, if any; a broken connection is left to its caller."""
        try:
            if not self.conn.closed and self.in_transaction():
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def is_disconnect(self, error: psycopg.Error) -> bool:
        """The server ended the session (terminated, shutting down) rather than the SQL failing."""
        return isinstance(error, psycopg.OperationalError) and (
            self.conn.closed or self.conn.pgconn.status == pq.ConnStatus.BAD
            or (error.sqlstate or "").startswith("57P")
        )

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Report a connection lost outside a migration file as the database being unavailable (exit 4)."""
        try:
            yield
        except psycopg.OperationalError as exc:
            reason = redact.redact((exc.diag.message_primary if exc.diag else None) or str(exc)).strip()
            raise DatabaseUnavailableError(
                f"lost the connection to the database: {reason}; nothing is half-applied, run again "
                "once the database is back",
                sqlstate=exc.sqlstate,
            ) from None

    # -- session settings ------------------------------------------------------------------

    @property
    def reset_sql(self) -> str:
        """
        Undo whatever session state a file set (role, search_path, any SET), back
        to the connection's defaults, which include bootstrap's lock_timeout and
        statement_timeout (given as startup options for exactly that reason).
        Constant SQL, sent in the same simple query as the file it follows.
        """
        reset = "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL"
        if self.server_version >= 140000:
            reset += f";SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
        return reset

    def use_migration_settings(self) -> None:
        """Before the first file: the settings the reset after each file keeps in place."""
        if self.server_version >= 140000:
            self.conn.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}")

    # -- server notices --------------------------------------------------------------------

    def _on_notice(self, diag: pgerrors.Diagnostic) -> None:
        severity = (diag.severity_nonlocalized or diag.severity or "NOTICE").upper()
        fields = {
            "severity": severity,
            "message": redact.redact(diag.message_primary or ""),
            **self._notice_context,
        }
        if diag.message_detail:
            fields["detail"] = redact.redact(diag.message_detail)
        if severity == "WARNING":
            self.log.warning("server_notice", **fields)
        elif severity == "NOTICE":
            self.log.info("server_notice", **fields)
        else:
            self.log.debug("server_notice", **fields)

    @contextmanager
    def notices(self, **context: Any) -> Iterator[None]:
        """Log the server's notices raised in the block with `context` (the file's name)."""
        self._notice_context = context
        try:
            yield
        finally:
            self._notice_context = {}
