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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq

from .. import redact
from ..errors import ConfigError, DatabaseUnavailableError
from ..typing import Logger

# So a killed runner's backend stops within a second, even mid-statement (PostgreSQL >= 14).
CLIENT_CHECK_INTERVAL_MS = 1000
_OK_STATUSES = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY})


POOLING_FIX = ("Point BOOTSTRAP_DATABASE_URL at PostgreSQL directly (or at a session-mode pool) and keep the "
               "pooled URL in DATABASE_URL for the app")
TRANSACTION_POOLING = (
    "a connection pooler in transaction mode was detected between bootstrap and PostgreSQL (two of bootstrap's "
    "connections were served by one server connection, or one moved between server connections): the "
    "migration lock and each file's transaction would be split across server connections, so nothing was "
    "changed. " + POOLING_FIX
)


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
# Behind a pooler not probed yet (or that the probe could not tell): no LISTEN wake-ups.
UNPROBED = Capabilities(listen=False)
NOTHING = Capabilities(*(False,) * len(Capabilities._fields))


class ScriptResult(NamedTuple):
    """What one simple query did: statements completed, the error of the one that failed, the last rows."""

    done: int
    error: psycopg.Error | None
    rows: Any


class Timeouts(NamedTuple):
    """
    The settings every migration statement runs with, in milliseconds (0: no limit).

    They travel inside the work itself (`SET LOCAL` in each file's transaction,
    `SET` before a `no-transaction` file's statements), never as startup options,
    which connection poolers refuse; the reset after each file removes them.
    """

    lock_ms: int = 0
    statement_ms: int = 0
    check_interval_ms: int | None = CLIENT_CHECK_INTERVAL_MS  # None: the server is older than 14

    def statements(self, *, local: bool) -> list[str]:
        """The SET statements (constant SQL made of whole numbers)."""
        verb = "SET LOCAL" if local else "SET"
        out = [f"{verb} lock_timeout = {int(self.lock_ms)}", f"{verb} statement_timeout = {int(self.statement_ms)}"]
        if self.check_interval_ms is not None:
            out.append(f"{verb} client_connection_check_interval = {int(self.check_interval_ms)}")
        return out


class Session:
    """
    One autocommit connection with bootstrap's session plumbing.

    Args:
        conn: an open connection (autocommit).
        log: a structlog logger (server notices are logged on it).
        server_pid: the pid the server itself reported (`pg_backend_pid()`); when
            it differs from libpq's, a connection pooler sits in between.
        timeouts: what migration statements run with.
        opener: opens another connection like this one (the pooler probe needs one).
    """

    def __init__(self, conn: psycopg.Connection[Any], log: Logger, *, server_pid: int | None = None,
                 timeouts: Timeouts | None = None, opener: Callable[[], psycopg.Connection[Any]] | None = None) -> None:
        self.conn = conn
        self.log = log
        self.server_pid = conn.info.backend_pid if server_pid is None else server_pid
        # libpq's pid is from the server's BackendKeyData; a pooler sends a key of its own.
        self.pooled = conn.info.backend_pid != self.server_pid
        self.pool_mode: str | None = "direct" if not self.pooled else None  # learned by check_writable
        # Behind a pooler of unknown mode, nothing that needs the session to stay on one server
        # connection is counted on until check_writable finds out (read-only commands never ask).
        self.capabilities = DIRECT if not self.pooled else UNPROBED
        if timeouts is None:
            timeouts = Timeouts()
        if conn.info.server_version < 140000:
            timeouts = timeouts._replace(check_interval_ms=None)
        self.timeouts = timeouts
        self.opener = opener
        self.lock_pid: int | None = None  # the server backend holding the migration lock, when pooled
        self._cur: psycopg.Cursor[Any] | None = None
        self._notice_context: dict[str, Any] = {}
        conn.add_notice_handler(self._on_notice)

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
        """
        Close the connection; the server releases the session's advisory lock. Behind
        a pooler the server connection lives on, for the app: hand it back clean
        (DISCARD ALL drops the queue, prepared statements, settings, LISTENs and locks).
        """
        if self.pooled and not self.conn.closed and not self.in_transaction():
            try:
                self.conn.execute("DISCARD ALL")
            except psycopg.Error:
                pass
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

    # Undo whatever session state a file set (role, search_path, any SET, bootstrap's own
    # timeouts), back to the connection's defaults. Sent in the same query as the file.
    reset_sql = "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL"

    def before_file(self) -> list[str]:
        """
        The statements that open each file's transaction, after BEGIN: the guard
        (behind a pooler: fail unless on the server connection holding the lock),
        then the timeouts as SET LOCAL.
        """
        guard = self.guard_sql
        return [*([guard] if guard else []), *self.timeouts.statements(local=True)]

    @property
    def guard_sql(self) -> str | None:
        """Behind a pooler, with the lock held: a statement that fails (22012) on any other server connection."""
        if not self.pooled or self.lock_pid is None:
            return None
        return f"SELECT 1 / (pg_catalog.pg_backend_pid() = {int(self.lock_pid)})::integer"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction for bootstrap's own writes, guarded and with the timeouts."""
        with self.conn.transaction():
            self.begun()
            yield

    def begun(self) -> None:
        """Just after BEGIN: the guard and the timeouts (see `before_file`)."""
        done, error, _rows = self.run_script(";".join(self.before_file()))
        if error is not None:
            if self.guard_sql is not None and done == 0:
                raise self.moved() from None
            raise error

    def set_timeouts(self) -> None:
        """Before a `no-transaction` file's statements: the timeouts for the session (the reset removes them)."""
        self.conn.execute(";".join(self.timeouts.statements(local=False)))

    def on_holder(self) -> bool:
        """Behind a pooler: whether this session is still on the server connection that holds the lock."""
        if self.pooled and self.lock_pid is not None:
            row = self.conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
            return row is not None and row[0] == self.lock_pid
        return True

    # -- connection poolers ----------------------------------------------------------------

    def check_writable(self) -> None:
        """
        Before the lock and any write: behind a pooler, find out how it pools
        (a probe with a second connection, done once) and refuse transaction
        pooling, which would split the session lock and the transactions across
        server connections.

        Raises:
            ConfigError: a transaction-mode pooler (exit 3), before anything changed.
        """
        if not self.pooled:
            return
        if self.pool_mode is None:
            from .pooler import pool_mode

            self.pool_mode = pool_mode(self, self.opener)
            self.log.info("connection_pooler_detected", pool_mode=self.pool_mode)
            # Session pooling keeps every mechanism; "unknown" (the probe got no second server
            # connection in time: a busy session pool) keeps all but LISTEN, and the guards stay on.
            self.capabilities = {"session": DIRECT, "unknown": UNPROBED}.get(self.pool_mode, NOTHING)
        if self.pool_mode == "transaction":
            raise ConfigError(TRANSACTION_POOLING, pool_mode="transaction")

    def moved(self, kept: str | None = None) -> ConfigError:
        """
        The error for work that reached another server connection than the lock holder's.

        Args:
            kept: what of the file ran and was kept (a `no-transaction` file's statements).
        """
        stranded = (f" The migration lock may be left on server backend {self.lock_pid}: "
                    f"SELECT pg_terminate_backend({self.lock_pid}) frees it." if self.lock_pid else "")
        outcome = f"; {kept}." if kept else "; the transaction was rolled back."
        return ConfigError(
            "this session's work reached another server connection than the one holding the migration lock: "
            f"a connection pooler in transaction mode sits between bootstrap and PostgreSQL{outcome}{stranded} "
            + POOLING_FIX,
            pool_mode="transaction",
        )

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
