"""
One connection to PostgreSQL, and the one way work runs on it.

A `Session` owns the autocommit connection and what the server keeps for it
between statements: the settings every file runs with, the reset after each
file (their SQL is `timeouts`'), the migration lock's guard, LISTEN, and,
behind a connection pooler, which server connection holds the lock.

`run_file` is the one builder of "BEGIN; the timeouts (and the lock's guard);
the work; the reset; [a ledger statement]; [COMMIT]" as one simple query, and
the one place that counts which of the work's statements completed. Apply,
rollback, rehearsal and verify all send their SQL through it, inside
`transaction` when several files share one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq, sql

from ..errors import ConfigError, DatabaseUnavailableError
from ..typing import Logger
from .timeouts import RESET, SERVER_KEEPALIVE, Timeouts, set_statements

_OK_STATUSES = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY})

POOLING_FIX = ("Point BOOTSTRAP_DATABASE_URL at PostgreSQL directly (or at a session-mode pool) and keep the "
               "pooled URL in DATABASE_URL for the app")
TRANSACTION_POOLING = (
    "a connection pooler in transaction mode was detected between bootstrap and PostgreSQL (two of bootstrap's "
    "connections were served by one server connection, or one moved between server connections): the "
    "migration lock and each file's transaction would be split across server connections, so nothing was "
    "changed. " + POOLING_FIX
)


class _LockGone(Exception):
    """The prologue's guard failed: the migration lock is no longer this session's."""


class ScriptResult(NamedTuple):
    """What one simple query did: statements completed, the error of the one that failed, the last rows."""

    done: int
    error: psycopg.Error | None
    rows: Any


class FileRun(NamedTuple):
    """
    What `run_file` did with one file.

    Attributes:
        done: the file's statements that completed; -1 when bootstrap's own prologue
            failed first (the lock's guard: the lock is no longer this session's).
        error: the error of the statement that failed, or None.
        rows: the last result with rows (the ledger statement's RETURNING).
        shift: characters sent before the file's text, to map the server's error position.
    """

    done: int
    error: psycopg.Error | None
    rows: Any
    shift: int


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
        role: `--role`: every file runs as this role; the ledger is written by the login.
    """

    def __init__(self, conn: psycopg.Connection[Any], log: Logger, *, server_pid: int | None = None,
                 timeouts: Timeouts | None = None, opener: Callable[[], psycopg.Connection[Any]] | None = None,
                 reconnect: Callable[[], tuple[psycopg.Connection[Any], int]] | None = None,
                 role: str | None = None) -> None:
        self.log = log
        self.timeouts = timeouts or Timeouts()
        self.role = role  # --role: what files run as (SET ROLE); bootstrap's own statements run as the login
        self._set_role = f"ROLE {sql.Identifier(role).as_string(None)}" if role else None
        self._search_path: str | None = None  # a tenant's files: search_path starts at its schema
        self.opener = opener
        self._reconnect = reconnect
        self.lock_key: int | None = None  # the migration lock, while this session holds it
        self.lock_pid: int | None = None  # the server backend holding it (behind a pooler: checked by the guard)
        self._notice_context: dict[str, Any] = {}
        self._attach(conn, conn.info.backend_pid if server_pid is None else server_pid)

    def _attach(self, conn: psycopg.Connection[Any], server_pid: int) -> None:
        self.conn = conn
        self.server_pid = server_pid
        # libpq's pid is from the server's BackendKeyData; a pooler sends a key of its own.
        self.pooled = conn.info.backend_pid != server_pid
        self.pool_mode: str | None = None if self.pooled else "direct"  # learned by check_writable
        if conn.info.server_version < 140000:
            self.timeouts = self.timeouts._replace(check_interval_ms=None)
        conn.add_notice_handler(self._on_notice)
        # Session settings the reset after each file would undo, set again with it: the server noticing a lost
        # client, and the string syntax bootstrap's lexer assumes (a database that defaults to
        # standard_conforming_strings = off would otherwise read 'it\'' differently from the lexer).
        pairs: list[tuple[str, object]] = list(SERVER_KEEPALIVE)
        if conn.info.parameter_status("standard_conforming_strings") == "off":
            pairs.append(("standard_conforming_strings", "on"))
        self.settings_sql = ";".join(set_statements(pairs, local=False))
        self.reset_sql = f"{RESET};{self.settings_sql}"
        conn.execute(self.settings_sql)

    def reconnect(self) -> None:
        """
        A new connection, waited for as at the start, after this one was lost while
        nothing was held (waiting for the lock or for another runner's migrations).

        Raises:
            DatabaseUnavailableError: the database did not come back within --timeout (exit 4).
        """
        if self._reconnect is None or self.lock_key is not None:
            raise DatabaseUnavailableError("lost the connection to the database; nothing is half-applied, run "
                                           "again once the database is back")
        self._attach(*self._reconnect())

    @property
    def server_version(self) -> int:
        """The server's version as an integer (150004 for 15.4)."""
        return self.conn.info.server_version

    @property
    def user(self) -> str:
        """The role bootstrap connected as."""
        return self.conn.info.user

    @property
    def can_listen(self) -> bool:
        """Whether LISTEN wake-ups reach this session (not behind a pooler that may move it)."""
        return self.pool_mode in ("direct", "session")

    def close(self) -> None:
        """
        Close the connection; the server releases the session's advisory lock. Behind
        a pooler the server connection lives on, for the app: hand it back clean
        (DISCARD ALL drops settings, LISTENs and locks).
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
            # COPY, which the lexer refuses in every file: the server may have gone on past it (to a COMMIT),
            # so what happened is not known here; closing the connection ends whatever had not.
            self.conn.close()
            return ScriptResult(done, psycopg.OperationalError(
                f"the server started a COPY ({pq.ExecStatus(result.status).name}), which bootstrap cannot take; "
                "whether the rest of the query ran is unknown: `bootstrap status` shows whether it was recorded"
            ), rows)
        return ScriptResult(done, None, rows)

    def prologue(self, *, as_role: bool = True) -> list[str]:
        """
        The statements before each file's work, inside its transaction: its timeouts and, with
        `--role`, the role it runs as (the reset after the file returns to the login, for the ledger).
        """
        pairs = set_statements(self.timeouts.pairs(), local=True)
        if self._search_path:
            pairs.append(f"SET LOCAL {self._search_path}")
        return [*pairs, f"SET LOCAL {self._set_role}"] if self._set_role and as_role else pairs

    def use_schema(self, schema: str | None) -> None:
        """A tenant's files: `search_path` starts at its schema (then public); None: the server's default."""
        self._search_path = (f"search_path = {sql.Identifier(schema).as_string(None)}, public" if schema else None)

    def lock_guard(self) -> str:
        """
        An expression that divides by zero unless this session may go on as the lock's holder: a
        shared transaction lock on the migration lock's key, granted at once to the session that
        holds it (its own lock never conflicts), refused while another session holds it (a file
        released it and another runner took it, or a pooler moved this session off the server
        connection that holds it), and kept to the end of the transaction. It sits in each file's
        ledger statement: a file never commits while another runner holds the lock.
        """
        return f"(1 / pg_catalog.pg_try_advisory_xact_lock_shared({int(self.lock_key or 0)})::integer)"

    def lock_guard_failed(self, error: psycopg.Error | None) -> bool:
        """Whether `error` is the guard's division by zero (the one division in bootstrap's own statements)."""
        return error is not None and error.sqlstate == "22012" and self.lock_key is not None

    def run_file(self, text: str, *, begin: bool = False, after: Sequence[str] = (), commit: bool = False) -> FileRun:
        """
        Send, as ONE simple query: [BEGIN;] the prologue; `text`; the reset; `after`
        (a ledger statement); [COMMIT]. Inside an open transaction, leave out begin and commit.

        Returns:
            Which of the text's statements completed (`FileRun.done`), the error, the last rows.
        """
        opening = [*(["BEGIN"] if begin else []), *self.prologue()]
        prefix = ";".join(opening) + ";\n"
        query = prefix + text + "\n;" + ";".join([self.reset_sql, *after, *(["COMMIT"] if commit else [])])
        done, error, rows = self.run_script(query)
        # A parse error anywhere in the query stops it before any statement, the prologue's included.
        return FileRun(max(0, done - len(opening)), error, rows, len(prefix))

    @contextmanager
    def transaction(self, *, rollback: bool = False, kept: str | None = None) -> Iterator[None]:
        """
        A transaction for several statements (bootstrap's own writes, a rollback of several
        files, a rehearsal): BEGIN, the prologue and, while the lock is held, its guard; then
        COMMIT, or ROLLBACK when the block raises or `rollback` (always, for rehearsals and verify).

        Args:
            kept: what the error says was kept, should the lock's guard find the lock gone.
        """
        opening = [*self.prologue(as_role=False),
                   *([f"SELECT {self.lock_guard()}"] if self.lock_key is not None else [])]
        try:
            with self.conn.transaction(force_rollback=rollback):
                _done, error, _rows = self.run_script(";".join(opening))
                if self.lock_guard_failed(error):
                    raise _LockGone
                if error is not None:
                    raise error
                yield
        except _LockGone:
            raise self.lock_lost(kept) from None

    def set_timeouts(self) -> None:
        """Before a `no-transaction` file's statements: its timeouts and role for the session (the reset ends them)."""
        self.conn.execute(";".join([*set_statements(self.timeouts.pairs(), local=False),
                                    *([f"SET {self._search_path}"] if self._search_path else []),
                                    *([f"SET {self._set_role}"] if self._set_role else [])]))

    def reset(self) -> None:
        """After a `no-transaction` file's statements: the session back to bootstrap's settings."""
        self.conn.execute(self.reset_sql)

    def rollback_quietly(self) -> None:
        """End an open or failed transaction, if any; a broken connection is left to its caller."""
        try:
            if not self.conn.closed and self.in_transaction():
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def is_disconnect(self, error: BaseException) -> bool:
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
            reason = (exc.diag.message_primary if exc.diag else None) or str(exc)
            raise DatabaseUnavailableError(
                f"lost the connection to the database: {reason.strip()}; nothing is half-applied, run again "
                "once the database is back",
                sqlstate=exc.sqlstate,
            ) from None

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
        server connections; with `--role`, check that the login may take it.

        Raises:
            ConfigError: a transaction-mode pooler, or a role the login cannot SET (exit 3), before anything changed.
        """
        if self.pool_mode is None:
            from .pooler import pool_mode

            self.pool_mode = pool_mode(self.conn, self.opener)
            self.log.info("connection_pooler_detected", pool_mode=self.pool_mode)
        if self.pool_mode == "transaction":
            raise ConfigError(TRANSACTION_POOLING, pool_mode="transaction")
        if self._set_role:  # --role: the login must be able to SET ROLE to it, before anything runs
            try:
                self.conn.execute(f"SET {self._set_role};{RESET};{self.settings_sql}")
            except psycopg.Error as exc:
                role, login = sql.Identifier(self.role or "").as_string(None), sql.Identifier(self.user).as_string(None)
                exists = self.conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s",
                                           [self.role]).fetchone()
                fix = (f"create it (CREATE ROLE {role} NOLOGIN) and GRANT {role} TO {login}" if exists is None else
                       f"GRANT {role} TO {login}{' WITH SET TRUE' if self.server_version >= 160000 else ''}")
                raise ConfigError(f"--role {self.role} (BOOTSTRAP_ROLE): the login {self.user} cannot SET ROLE to "
                                  f"it: {exc.diag.message_primary or exc}; {fix}",
                                  role=self.role, sqlstate=exc.sqlstate) from None

    def lock_lost(self, kept: str | None = None) -> ConfigError:
        """
        The error for work that found the migration lock no longer this session's: a
        pooler moved the session to another server connection, or what ran released it.

        Args:
            kept: what of the file ran and was kept (a `no-transaction` file's statements).
        """
        outcome = f"; {kept}." if kept else "; the transaction was rolled back."
        if self.pooled:
            from .pooler import free_stranded_lock

            stranded = free_stranded_lock(self.conn, self.lock_pid, self.lock_key, self.log)
            self.lock_key = self.lock_pid = None
            return ConfigError(
                "this session's work reached another server connection than the one holding the migration lock: "
                f"a connection pooler in transaction mode sits between bootstrap and PostgreSQL{outcome}{stranded} "
                + POOLING_FIX, pool_mode="transaction")
        return ConfigError(
            "this session no longer holds the migration lock: a file released it (pg_advisory_unlock_all(), "
            f"DISCARD ALL, or pg_advisory_unlock of bootstrap's key){outcome} Another runner may take it now, so "
            "bootstrap stopped before the next file; remove that statement from the file")

    # -- server notices --------------------------------------------------------------------

    def _on_notice(self, diag: pgerrors.Diagnostic) -> None:
        severity = (diag.severity_nonlocalized or diag.severity or "NOTICE").upper()
        fields = {"severity": severity, "message": diag.message_primary or "", **self._notice_context}
        if diag.message_detail:
            fields["detail"] = diag.message_detail
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
