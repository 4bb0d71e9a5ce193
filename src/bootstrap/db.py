"""
Everything that talks to PostgreSQL: connect with retry, the advisory lock,
schemas, the ledger, applying files, verify scripts.

The only module that imports psycopg and tenacity. Identifiers reach SQL only
through `psycopg.sql.Identifier`; values only as query parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq, sql
from psycopg.conninfo import conninfo_to_dict

from . import __version__, redact
from .errors import (
    BootstrapError,
    ConfigError,
    DatabaseUnavailableError,
    IntegrityError,
    LockTimeoutError,
    MigrationFailedError,
)
from .migrations import Kind, Migration, ParsedMigration
from .plan import AppliedMigration
from .settings import Settings
from .sqlsplit import Script, Statement, line_col

Log = Any  # a structlog bound logger

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Waiting: the first pause is tens of milliseconds, the longest one second.
WAIT_INITIAL_S = 0.025
WAIT_MAX_S = 1.0
DEFAULT_CONNECT_TIMEOUT_S = 10
# Polling the migration lock.
LOCK_POLL_INITIAL_S = 0.05
LOCK_POLL_MAX_S = 0.5
LOCK_WAIT_LOG_EVERY_S = 10.0
# Retrying a file that could not get its locks within --ddl-lock-timeout.
DDL_RETRY_INITIAL_S = 0.5
DDL_RETRY_MAX_S = 8.0
# What a file is retried for (the error class logged with each retry).
RETRYABLE_SQLSTATES = {"55P03": "lock_timeout", "40P01": "deadlock", "40001": "serialization_failure"}
CLIENT_CHECK_INTERVAL_MS = 1000

_HOSTNAME = socket.gethostname()
_BEGIN_PREFIX = "BEGIN;\n"
_OK_STATUSES = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY})
# A ledger row: a versioned one is new (its version is unique); a repeatable one
# replaces its row by name (the partial unique index on name WHERE version IS NULL).
_LEDGER_INSERT = sql.SQL(
    "INSERT INTO {ledger} (version, name, kind, checksum, duration_ms, transactional, hostname, bootstrap_version)"
    " {values} ON CONFLICT (name) WHERE version IS NULL DO UPDATE SET checksum = EXCLUDED.checksum,"
    " duration_ms = EXCLUDED.duration_ms, transactional = EXCLUDED.transactional, applied_at = now(),"
    " applied_by = current_user, hostname = EXCLUDED.hostname, bootstrap_version = EXCLUDED.bootstrap_version"
)

# Classifying connection failures: libpq reports them as text, without SQLSTATE.
_TRANSIENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("connection refused", "connection_refused"),
    ("no such file or directory", "socket_missing"),
    ("failed to resolve host", "dns_unresolved"),
    ("could not translate host name", "dns_unresolved"),
    ("name or service not known", "dns_unresolved"),
    ("temporary failure in name resolution", "dns_unresolved"),
    ("nodename nor servname", "dns_unresolved"),
    ("no address associated", "dns_unresolved"),
    ("is starting up", "starting_up"),
    ("not yet accepting connections", "starting_up"),
    ("in recovery mode", "starting_up"),
    ("is shutting down", "shutting_down"),
    ("too many clients", "too_many_connections"),
    ("too many connections", "too_many_connections"),
    ("remaining connection slots", "too_many_connections"),
    ("timeout expired", "timeout"),
    ("timed out", "timeout"),
    ("server closed the connection", "connection_lost"),
    ("connection reset", "connection_lost"),
    ("terminating connection", "connection_lost"),
    ("could not receive data", "connection_lost"),
    ("could not send data", "connection_lost"),
    ("broken pipe", "connection_lost"),
    ("no route to host", "network_unreachable"),
    ("network is unreachable", "network_unreachable"),
    ("host is unreachable", "network_unreachable"),
)
_PERMANENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("password authentication failed", "authentication_failed"),
    ("authentication failed", "authentication_failed"),
    ("no password supplied", "password_missing"),
    ("is not permitted to log in", "login_not_permitted"),
    ("pg_hba.conf", "access_denied"),
    ("permission denied", "access_denied"),
    ("does not exist", "not_found"),
    ("ssl was required", "ssl_config"),
    ("does not support ssl", "ssl_config"),
    ("certificate", "ssl_config"),
    ("invalid ", "config"),
    ("missing \"=\"", "config"),
)


class Snapshot(NamedTuple):
    """What a read-only look at the database found."""

    ledger_exists: bool
    schemas: set[str]
    applied: list[AppliedMigration]


class Failure(NamedTuple):
    """A classified connection failure."""

    transient: bool
    kind: str
    message: str


def classify(exc: BaseException) -> Failure:
    """
    Tell a transient connection failure (retry) from a permanent one (fail fast).

    Unknown failures are treated as transient, so a server starting up with a
    localised message still gets waited for; wrong credentials and bad
    settings, which libpq reports in English, fail at once.
    """
    message = redact.redact(str(exc).strip())
    lowered = message.lower()
    for pattern, kind in _PERMANENT_PATTERNS:
        if pattern in lowered:
            return Failure(False, kind, message)
    for pattern, kind in _TRANSIENT_PATTERNS:
        if pattern in lowered:
            return Failure(True, kind, message)
    return Failure(True, "unknown", message)


class _Transient(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def startup_options(settings: Settings, params: dict[str, Any]) -> str:
    """
    libpq `options` for bootstrap's connection: the DSN's (`params`, as
    `validate_conninfo` parsed it) or PGOPTIONS, plus lock_timeout and
    statement_timeout in milliseconds. As startup values they are the
    session's defaults, so the RESET ALL after each file keeps them.
    """
    own = params.get("options")
    base = str(own) if own else settings.environ.get("PGOPTIONS", "")

    def ms(seconds: float | None) -> int:
        return max(1, round(seconds * 1000)) if seconds else 0

    ours = f"-c lock_timeout={ms(settings.ddl_lock_timeout)} -c statement_timeout={ms(settings.statement_timeout)}"
    return f"{base} {ours}".strip()


def validate_conninfo(settings: Settings) -> dict[str, Any]:
    """
    Parse the connection string with libpq's own parser.

    Raises:
        ConfigError: malformed URL or conninfo, or an unknown sslmode; the
            message names the variable it came from and never the password.
    """
    source = settings.database_url_source
    try:
        params = conninfo_to_dict(settings.database_url)
    except psycopg.ProgrammingError as exc:
        reason = redact.redact(str(exc).strip())
        raise ConfigError(
            f"{source} is not a valid PostgreSQL connection string: {reason}", variable=source
        ) from None
    sslmode = params.get("sslmode") or settings.environ.get("PGSSLMODE")
    if sslmode is not None and str(sslmode) not in SSLMODES:
        raise ConfigError(
            f"{source}: unknown sslmode {sslmode!r}; use one of {', '.join(SSLMODES)}",
            variable=source,
        )
    for key in ("port", "connect_timeout"):
        value = params.get(key)
        if value is not None and not all(part.strip().isdigit() for part in str(value).split(",")):
            raise ConfigError(f"{source}: {key} {value!r} is not a number", variable=source)
    return params


class Database:
    """
    One connection to PostgreSQL in autocommit mode, with what bootstrap does on it.

    Args:
        conn: an open connection (autocommit).
        settings: the settings (ledger name, timeouts).
        log: a structlog logger.
    """

    def __init__(self, conn: psycopg.Connection[Any], settings: Settings, log: Log) -> None:
        self.conn = conn
        self.settings = settings
        self.log = log
        self.ledger = sql.Identifier(settings.ledger_schema, settings.ledger_table)
        self.lock_key = advisory_key(settings.ledger_schema, settings.ledger_table)
        self.locked = False
        self._cur: psycopg.Cursor[Any] | None = None
        self._queued = 0
        self._taken = 0
        self._record_sql = ""
        self._notice_context: dict[str, Any] = {}
        conn.add_notice_handler(self._on_notice)

    # -- connection -----------------------------------------------------------------

    @classmethod
    def connect(cls, settings: Settings, log: Log, *, wait: bool = True) -> Database:
        """
        Connect and run `SELECT 1`, retrying transient failures with backoff and
        jitter until `settings.wait_timeout`.

        Raises:
            ConfigError: a permanent failure (authentication, bad settings).
            DatabaseUnavailableError: the timeout ran out.
        """
        params = validate_conninfo(settings)
        timeout = settings.wait_timeout if wait else 0.0
        started = time.monotonic()
        deadline = started + timeout
        target = settings.safe_target().as_log()
        options = startup_options(settings, params)
        attempts = 0
        last: Failure | None = None

        def attempt() -> psycopg.Connection[Any]:
            nonlocal attempts, last
            attempts += 1
            remaining = deadline - time.monotonic()
            connect_timeout = max(2, min(DEFAULT_CONNECT_TIMEOUT_S, int(remaining + 0.999)))
            try:
                conn = psycopg.connect(
                    settings.database_url,
                    autocommit=True,
                    prepare_threshold=None,
                    fallback_application_name="bootstrap",
                    client_encoding="UTF8",
                    connect_timeout=connect_timeout,
                    options=options,
                )
            except psycopg.Error as exc:
                last = classify(exc)
                if not last.transient:
                    raise ConfigError(
                        f"cannot connect to {settings.database_url_source}: {last.message}",
                        error_type=last.kind,
                        **target,
                    ) from None
                raise _Transient(last) from None
            try:
                conn.execute("SELECT 1")
            except psycopg.Error as exc:
                conn.close()
                last = classify(exc)
                raise _Transient(last) from None
            return conn

        try:
            # The common case needs no retry machinery: the database is up.
            conn = attempt()
        except _Transient:
            if timeout <= 0:
                conn = None
            else:
                conn = _retry_until(deadline, attempt, lambda: attempts, lambda: last,
                                    lambda: _probe_targets(params, settings.environ), log, target)
        if conn is None:
            assert last is not None
            waited = time.monotonic() - started
            raise DatabaseUnavailableError(
                f"database not available after {waited:.1f}s "
                f"({attempts} attempt{'s' if attempts != 1 else ''}): {last.message}",
                attempts=attempts,
                waited_ms=round(waited * 1000),
                error_type=last.kind,
                **target,
            ) from None
        info = conn.info
        log.info(
            "database_ready",
            attempts=attempts,
            waited_ms=round((time.monotonic() - started) * 1000),
            host=info.host,
            port=str(info.port),
            dbname=info.dbname,
            user=info.user,
            server_version=info.server_version,
        )
        return cls(conn, settings, log)

    def close(self) -> None:
        """Close the connection; the server releases the session's advisory lock."""
        self.conn.close()

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
    def _notices_about(self, **context: Any) -> Iterator[None]:
        self._notice_context = context
        try:
            yield
        finally:
            self._notice_context = {}

    # -- lock -----------------------------------------------------------------------

    def acquire_lock(self, still_needed: Callable[[], bool] | None = None) -> bool:
        """
        Take the session-level advisory lock, polling `pg_try_advisory_lock`
        with backoff; never blocks inside the server (a waiter holding a
        snapshot would make the holder's CREATE INDEX CONCURRENTLY wait forever).

        Args:
            still_needed: asked after each refused poll; when it answers False
                (another runner finished the work meanwhile), stop waiting.

        Returns:
            True when the lock is held; False when `still_needed` said it no longer is.

        Raises:
            LockTimeoutError: still held by another session after `--lock-timeout`.
        """
        timeout = self.settings.lock_timeout
        started = time.monotonic()
        delay = LOCK_POLL_INITIAL_S
        next_report = 0.0
        listening = released = False

        def not_needed() -> bool:
            if still_needed is None or still_needed():
                return False
            if listening:
                self._stop_listening()
            self.log.info("lock_not_needed", waited_ms=round((time.monotonic() - started) * 1000),
                          reason="another runner finished the work")
            return True

        while True:
            # Woken by the holder's release: it has most likely done the work, so ask
            # that first rather than have every waiter take the lock in turn to see.
            if released and not_needed():
                return False
            row = self.conn.execute("SELECT pg_try_advisory_lock(%s)", [self.lock_key]).fetchone()
            if row and row[0]:
                self.locked = True
                if listening:
                    self._stop_listening()
                waited = time.monotonic() - started
                self.log.info("lock_acquired", waited_ms=round(waited * 1000), lock_key=self.lock_key)
                return True
            if not released and not_needed():
                return False
            waited = time.monotonic() - started
            if waited >= timeout:
                holder = self.lock_holder()
                raise LockTimeoutError(
                    f"another runner held the migration lock for more than {timeout:g}s"
                    + (f" ({holder})" if holder else ""),
                    lock_key=self.lock_key,
                    holder=holder,
                )
            if waited >= next_report:
                self.log.info("lock_waiting", waited_s=round(waited, 1), holder=self.lock_holder(),
                              lock_timeout_s=timeout)
                next_report = waited + LOCK_WAIT_LOG_EVERY_S
            pause = min(delay * random.uniform(0.5, 1.0), max(0.0, timeout - waited))  # noqa: S311
            if not listening:
                # The holder notifies this channel as it releases the lock: waiters
                # poll again at once instead of at their next backoff step. LISTEN
                # holds no snapshot; a holder that dies without notifying is still
                # met by the polls.
                self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.lock_channel)))
                listening = True
            released = self._await_release(pause)
            delay = min(LOCK_POLL_MAX_S, delay * 2)

    @property
    def lock_channel(self) -> str:
        """The LISTEN/NOTIFY channel on which a lock holder announces its release."""
        return f"bootstrap_lock_{self.lock_key & 0xFFFFFFFFFFFFFFFF:x}"

    def _await_release(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early (True) when the lock holder announces its release."""
        return any(True for _notify in self.conn.notifies(timeout=seconds, stop_after=1))

    def _stop_listening(self) -> None:
        if self.conn.closed:
            return
        try:
            self.conn.execute("UNLISTEN *")
        except psycopg.Error:
            self.conn.close()

    @contextmanager
    def holding_lock(self) -> Iterator[None]:
        """Hold the migration lock for the block (see `acquire_lock`)."""
        self.acquire_lock()
        try:
            yield
        finally:
            self.release_lock()

    def lock_holder(self) -> str:
        """Describe the session holding the lock (pid, application, client), if visible."""
        key = self.lock_key & 0xFFFFFFFFFFFFFFFF
        row = self.conn.execute(
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

    def release_lock(self) -> None:
        """Release the advisory lock; on a broken connection, closing it releases the lock."""
        if self.locked and not self.conn.closed:
            self._rollback_quietly()
            try:
                # Release and wake the waiters (see acquire_lock) in one round trip.
                self.conn.execute("SELECT pg_advisory_unlock(%s), pg_notify(%s, '')",
                                  [self.lock_key, self.lock_channel])
            except psycopg.Error:
                self.conn.close()
        self.locked = False

    # -- schemas and ledger ---------------------------------------------------------

    def inspect(self) -> tuple[bool, set[str]]:
        """Whether the ledger exists, and which configured schemas exist."""
        with self.conn.cursor() as cur:
            self._inspect_query_on(cur)
            row = cur.fetchone()
        assert row is not None
        return bool(row[0]), set(row[1])

    def _inspect_query_on(self, cur: psycopg.Cursor[Any]) -> None:
        wanted = [*self.settings.schemas, self.settings.ledger_schema]
        cur.execute(
            """
            SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)) IS NOT NULL,
                   ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s))
            """,
            [self.settings.ledger_schema, self.settings.ledger_table, wanted],
        )

    def snapshot(self, *, full: bool = False) -> Snapshot:
        """
        What is there, in one round trip and without writing or locking: whether
        the ledger exists, which schemas exist, and the ledger's rows.

        Raises:
            ConfigError: the ledger table exists but is not a bootstrap ledger.
        """
        inspect_cur = self.conn.cursor()
        ledger_cur = self.conn.cursor()
        missing_ledger = False
        try:
            with self.conn.pipeline():
                self._inspect_query_on(inspect_cur)
                ledger_cur.execute(self._ledger_query(full=full))
        except pgerrors.UndefinedTable:
            missing_ledger = True
        except (pgerrors.UndefinedColumn, pgerrors.DatatypeMismatch) as exc:
            raise self._foreign_ledger(exc) from None
        row = inspect_cur.fetchone()
        assert row is not None
        ledger_exists, schemas = bool(row[0]), set(row[1])
        applied = [] if missing_ledger or not ledger_exists else self._rows(ledger_cur.fetchall())
        return Snapshot(ledger_exists=ledger_exists and not missing_ledger, schemas=schemas, applied=applied)

    def needs_preparing(self, snap: Snapshot) -> bool:
        """Whether schemas or the ledger are missing."""
        wanted = {*self.settings.schemas, self.settings.ledger_schema}
        return not snap.ledger_exists or not wanted <= snap.schemas

    def prepare(self) -> bool:
        """
        Create missing schemas and the ledger (under the lock).

        Returns:
            True when the ledger already existed.

        Raises:
            ConfigError: the role may not create them.
        """
        ledger_exists, existing = self.inspect()
        try:
            for schema in dict.fromkeys([*self.settings.schemas, self.settings.ledger_schema]):
                if schema in existing:
                    continue
                self.conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                )
                self.log.info("schema_created", schema=schema)
            if not ledger_exists:
                self.create_ledger()
        except pgerrors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"role {self.conn.info.user} may not create what bootstrap needs: "
                f"{redact.redact(exc.diag.message_primary or str(exc))}; grant it CREATE on the "
                "database (schemas) and on the ledger's schema, or create them beforehand",
                sqlstate=exc.sqlstate,
            ) from None
        return ledger_exists

    def create_ledger(self) -> None:
        """Create the ledger table (one transaction)."""
        table = self.settings.ledger_table
        with self.conn.transaction():
            self.conn.execute(
                sql.SQL(
                    """
                    CREATE TABLE {ledger} (
                        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        version bigint UNIQUE,
                        name text NOT NULL,
                        kind text NOT NULL CHECK (kind IN ('versioned', 'repeatable')),
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now(),
                        duration_ms integer,
                        transactional boolean NOT NULL DEFAULT true,
                        source text NOT NULL DEFAULT 'applied'
                            CHECK (source IN ('applied', 'baseline', 'adopted')),
                        applied_by text NOT NULL DEFAULT current_user,
                        hostname text,
                        bootstrap_version text,
                        CHECK ((kind = 'versioned') = (version IS NOT NULL))
                    )
                    """
                ).format(ledger=self.ledger)
            )
            self.conn.execute(
                sql.SQL("CREATE UNIQUE INDEX {index} ON {ledger} (name) WHERE version IS NULL").format(
                    index=sql.Identifier(f"{table}_repeatable_name_key"[:63]), ledger=self.ledger
                )
            )
            self.conn.execute(
                sql.SQL("COMMENT ON TABLE {ledger} IS {comment}").format(
                    ledger=self.ledger,
                    comment=sql.Literal("bootstrap migration ledger (layout 1): one row per applied migration"),
                )
            )
        self.log.info("ledger_created", ledger=self.settings.ledger_name)

    def _ledger_query(self, *, full: bool = True) -> sql.Composed:
        # Without the timestamps a start reads 1,000 rows in a third of the time.
        applied_at = sql.SQL("applied_at" if full else "NULL::timestamptz")
        return sql.SQL(
            "SELECT version, name, kind, checksum, {applied_at}, source FROM {ledger}"
            " ORDER BY version NULLS LAST, name"
        ).format(applied_at=applied_at, ledger=self.ledger)

    def _foreign_ledger(self, exc: psycopg.Error) -> ConfigError:
        return ConfigError(
            f"ledger table {self.settings.ledger_name} exists but is not a bootstrap ledger "
            f"({exc.diag.message_primary}); choose another BOOTSTRAP_LEDGER_TABLE",
            variable="BOOTSTRAP_LEDGER_TABLE",
        )

    @staticmethod
    def _rows(rows: list[Any]) -> list[AppliedMigration]:
        kinds = {k.value: k for k in Kind}
        return [AppliedMigration(r[0], r[1], kinds[r[2]], r[3], r[4], r[5]) for r in rows]

    def read_ledger(self) -> list[AppliedMigration]:
        """
        All ledger rows, in one round trip.

        Raises:
            ConfigError: the table exists but is not a bootstrap ledger.
        """
        try:
            rows = self.conn.execute(self._ledger_query(full=True)).fetchall()
        except (pgerrors.UndefinedColumn, pgerrors.DatatypeMismatch) as exc:
            raise self._foreign_ledger(exc) from None
        return self._rows(rows)

    def version_recorded(self, version: int) -> bool:
        """Whether the ledger holds this version (False when it does not exist yet)."""
        try:
            row = self.conn.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE version = %s)").format(self.ledger), [version]
            ).fetchone()
        except pgerrors.UndefinedTable:
            return False
        return bool(row and row[0])

    def read_ledger_if_exists(self) -> list[AppliedMigration]:
        """The ledger rows, or none when the ledger does not exist yet (read-only)."""
        return self.snapshot(full=True).applied

    # -- applying -------------------------------------------------------------------

    @property
    def _reset_sql(self) -> str:
        """
        Undo whatever session state a file set (role, search_path, any SET), back
        to the connection's defaults, which include bootstrap's lock_timeout and
        statement_timeout (given as startup options for exactly that reason).
        Constant SQL, sent in the same simple query as the file it follows.
        """
        reset = "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL"
        if self.conn.info.server_version >= 140000:
            # So a killed runner's backend stops within a second, even mid-statement.
            reset += f";SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
        return reset

    def use_migration_settings(self, queue: list[ParsedMigration] | None = None) -> None:
        """
        Before the first file: the settings the reset after each file keeps in
        place and, when files are about to be applied, their ledger rows queued.

        The queue lets each transactional file take ONE round trip: BEGIN, the
        file, the reset, its ledger row and COMMIT in a single simple query. The
        row's values travel as data (COPY into a temp table, here, in one round
        trip), never as SQL literals; the file's query takes the next queued row
        and fails (so nothing commits) unless it recorded exactly one.
        Without the TEMPORARY privilege, files fall back to three round trips.
        """
        if self.conn.info.server_version >= 140000:
            self.conn.execute(f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}")
        self._queued = 0
        todo = [p.migration for p in queue or [] if p.migration.transactional]
        if not todo:
            return
        try:
            with self.conn.transaction():
                self.conn.execute(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS bootstrap_pending (ord integer PRIMARY KEY,"
                    " version bigint, name text NOT NULL, kind text NOT NULL, checksum text NOT NULL,"
                    " transactional boolean NOT NULL, hostname text, bootstrap_version text)"
                )
                # Which queued row a file takes: a temporary sequence (O(1), unlike updating a
                # row 1,000 times, which leaves its page full of dead versions to scan).
                self.conn.execute(
                    "CREATE TEMPORARY SEQUENCE IF NOT EXISTS bootstrap_position MINVALUE 0 START 0"
                )
                self.conn.execute("SELECT pg_catalog.setval('pg_temp.bootstrap_position', 0, false)")
                self.conn.execute("TRUNCATE pg_temp.bootstrap_pending")
                with self._cursor.copy(
                    "COPY pg_temp.bootstrap_pending (ord, version, name, kind, checksum, transactional,"
                    " hostname, bootstrap_version) FROM STDIN"
                ) as copy:
                    for ord_, m in enumerate(todo):
                        copy.write_row((ord_, m.version, m.name, m.kind.value, m.checksum, True,
                                        _HOSTNAME, __version__))
                if self.conn.execute(
                    "SELECT FROM pg_catalog.pg_prepared_statements WHERE name = 'bootstrap_record'"
                ).fetchone():
                    self.conn.execute("DEALLOCATE bootstrap_record")
                # Prepared once: each file's query says EXECUTE bootstrap_record, planned once.
                # A sequence does not roll back: a file that fails puts the position back
                # (_requeue) before it is retried.
                self.conn.execute(
                    sql.SQL(
                        "PREPARE bootstrap_record AS"
                        " WITH pos AS (SELECT pg_catalog.nextval('pg_temp.bootstrap_position')::integer AS ord),"
                        " next AS (SELECT q.* FROM pg_temp.bootstrap_pending q JOIN pos USING (ord)),"
                        " recorded AS ({insert} RETURNING version, name, duration_ms)"
                        # Exactly one row, or a division by zero aborts the transaction before COMMIT.
                        " SELECT max(version), max(name), max(duration_ms), 1 / (count(*) = 1)::integer"
                        " FROM recorded"
                    ).format(insert=_LEDGER_INSERT.format(
                        ledger=self.ledger,
                        values=sql.SQL(
                            "SELECT version, name, kind, checksum,"
                            " (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - pg_catalog.now())"
                            " * 1000)::integer, transactional, hostname, bootstrap_version FROM next"
                        ),
                    ))
                )
        except (pgerrors.InsufficientPrivilege, pgerrors.ReadOnlySqlTransaction):
            return  # no temp tables for this role: three round trips per file instead
        self._queued = len(todo)
        self._taken = 0
        self._record_sql = "EXECUTE bootstrap_record"

    def _finish(self, ledger_action: Callable[[int], None], duration_ms: int, *, commit: bool) -> None:
        """
        After a file's SQL (and its reset): the ledger row, then COMMIT. Two plain
        executes on one cursor, the row's INSERT prepared: on a local server this
        costs less CPU than psycopg's pipeline for two statements (measured in bench/).
        """
        ledger_action(duration_ms)
        if commit:
            self._cursor.execute("COMMIT")

    @property
    def _cursor(self) -> psycopg.Cursor[Any]:
        if self._cur is None or self._cur.closed:
            self._cur = self.conn.cursor()
        return self._cur

    def _run_script(self, text: str) -> tuple[int, psycopg.Error | None, Any]:
        """
        Send `text` as one simple query (several statements allowed).

        Returns:
            (number of statements that completed, the error of the one that
            failed, the last result that returned rows)
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
                return done, pgerrors.error_from_result(result, encoding=self.conn.info.encoding), rows
            return done, psycopg.ProgrammingError(
                f"unexpected result status {pq.ExecStatus(result.status).name} (COPY is not supported)"
            ), rows
        return done, None, rows

    def _run_wrapped(self, parsed: ParsedMigration, *, begin: bool) -> tuple[int, psycopg.Error | None, int]:
        """
        Run a whole file in one round trip, wrapped as `[BEGIN;] <file> ; <reset>`.

        Returns:
            (statements of the file that completed, the error, the characters
            before the file's text, to shift the server's error position by)
        """
        prefix = _BEGIN_PREFIX if begin else ""
        done, error, _rows = self._run_script(prefix + parsed.text + "\n;" + self._reset_sql)
        if begin:
            done = max(0, done - 1)
        return done, error, len(prefix)

    def _forget(self, parsed: ParsedMigration, _duration_ms: int) -> None:
        """
        Remove a rolled-back version's ledger row, and the repeatables' rows: they
        have no partners and may stand on what the down file dropped, so the next
        migrate re-applies them (a round trip of rollback and migrate restores the
        database). Done with the first down file, atomically with it.
        """
        self._cursor.execute(
            sql.SQL("DELETE FROM {} WHERE version = %s OR kind = %s").format(self.ledger),
            [parsed.migration.version, Kind.REPEATABLE.value],
        )

    def _record(self, parsed: ParsedMigration, duration_ms: int) -> None:
        """Write the ledger row (a prepared statement: the same INSERT for every file)."""
        m = parsed.migration
        self._cursor.execute(
            _LEDGER_INSERT.format(
                ledger=self.ledger, values=sql.SQL("VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
            ),
            [m.version, m.name, m.kind.value, m.checksum, duration_ms, m.transactional, _HOSTNAME, __version__],
            prepare=True,
        )

    def apply(self, parsed: ParsedMigration) -> int:
        """
        Apply one migration and record it.

        A transactional file runs whole, in one transaction with its ledger
        row. A `no-transaction` file runs statement by statement in autocommit
        and is recorded after its last statement. A file (or statement) that
        cannot get its locks within `--ddl-lock-timeout` is rolled back and
        retried with backoff.

        Returns:
            Duration in milliseconds.

        Raises:
            MigrationFailedError: the file failed; what was kept is said.
        """
        if self._queued and parsed.migration.transactional:
            with self._notices_about(migration=parsed.migration.name):
                try:
                    return self._apply_in_one_trip(parsed)
                except BaseException:
                    self._rollback_quietly()
                    raise
        return self._run_file(parsed, lambda ms: self._record(parsed, ms))

    def _requeue(self) -> None:
        """After a rolled-back file: the next EXECUTE takes that file's queued row again."""
        with contextlib.suppress(psycopg.Error):
            self.conn.execute("SELECT pg_catalog.setval('pg_temp.bootstrap_position', %s, false)", [self._taken])

    def _apply_in_one_trip(self, parsed: ParsedMigration) -> int:
        """BEGIN; the file; the reset; its queued ledger row; COMMIT: one simple query."""
        m = parsed.migration
        code = len(parsed.script.code_statements)
        query = _BEGIN_PREFIX + parsed.text + "\n;" + self._reset_sql + ";" + self._record_sql + ";COMMIT"
        attempt = 0
        while True:
            attempt += 1
            try:
                # Without an error, the last rows are the ledger row's (COMMIT returns none).
                done, error, recorded = self._run_script(query)
            except psycopg.OperationalError as exc:
                raise self._connection_lost(parsed, exc) from None
            if error is None:
                self._queued -= 1
                self._taken += 1
                assert recorded is not None and recorded.nfields == 4
                duration = recorded.get_value(0, 2)
                return int(duration) if duration is not None else 0
            if self._is_disconnect(error):
                raise self._connection_lost(parsed, error) from None
            self._rollback_quietly()
            self._requeue()
            done = max(0, done - 1)  # BEGIN
            if done >= code:  # the file ran; the reset, its ledger row or COMMIT failed
                if error.sqlstate == "22012":
                    raise MigrationFailedError(
                        f"{m.path}: its ledger row could not be written (did the file drop bootstrap's "
                        "temporary table pg_temp.bootstrap_pending?); the file was rolled back; nothing "
                        "of it was kept",
                        file=str(m.path),
                    )
                raise self._commit_failure(parsed, error)
            if error.sqlstate in RETRYABLE_SQLSTATES and self._retry_pause(parsed, attempt, error):
                continue
            raise self._failure(parsed, done, error, kept=None, shift=len(_BEGIN_PREFIX))

    def unapply(self, down: ParsedMigration) -> int:
        """
        Run a `.down.sql` file and remove its version's ledger row, in one
        transaction (or after its last statement for a no-transaction file).

        Returns:
            Duration in milliseconds.
        """
        return self._run_file(down, lambda ms: self._forget(down, ms))

    def unapply_all(self, downs: list[ParsedMigration]) -> list[int]:
        """
        Run several `.down.sql` files (newest first) and remove their ledger rows
        in ONE transaction, so a refusing down file leaves every version applied.
        Only when every file is transactional; otherwise each runs on its own.

        Returns:
            Each file's duration in milliseconds.

        Raises:
            MigrationFailedError: a down file failed; nothing was rolled back.
        """
        if not all(d.migration.transactional for d in downs):
            return [self.unapply(d) for d in downs]
        attempt = 0
        while True:
            attempt += 1
            durations: list[int] = []
            failure: tuple[ParsedMigration, int, psycopg.Error] | None = None
            try:
                self.conn.execute("BEGIN")
                for down in downs:
                    started = time.monotonic()
                    with self._notices_about(migration=down.migration.name):
                        done, error, _shift = self._run_wrapped(down, begin=False)
                    if error is not None:
                        failure = (down, done, error)
                        break
                    duration_ms = round((time.monotonic() - started) * 1000)
                    self._finish(lambda ms, d=down: self._forget(d, ms), duration_ms, commit=False)  # type: ignore[misc]
                    durations.append(duration_ms)
                if failure is None:
                    self.conn.execute("COMMIT")
                    return durations
            except psycopg.OperationalError as exc:
                raise self._connection_lost(downs[len(durations)], exc) from None
            except psycopg.Error as exc:
                self._rollback_quietly()
                raise self._commit_failure(downs[min(len(durations), len(downs) - 1)], exc) from None
            except BaseException:
                self._rollback_quietly()
                raise
            self._rollback_quietly()
            down, done, error = failure
            if error.sqlstate in RETRYABLE_SQLSTATES and self._retry_pause(down, attempt, error):
                continue
            raise self._failure(
                down, done, error, kept=None,
                outcome="the rollback ran in one transaction, so nothing was rolled back",
            )

    def _run_file(self, parsed: ParsedMigration, ledger_action: Callable[[int], None]) -> int:
        m = parsed.migration
        with self._notices_about(migration=m.name):
            try:
                if m.transactional:
                    return self._apply_transactional(parsed, ledger_action)
                return self._apply_statements(parsed, ledger_action)
            except BaseException:
                # Interrupted (signal) or failed: never leave a transaction open.
                self._rollback_quietly()
                raise

    def _retry_pause(self, parsed: ParsedMigration, attempt: int, error: psycopg.Error) -> bool:
        """Sleep before retrying a lock failure; False when out of attempts."""
        if attempt > self.settings.ddl_lock_retries:
            return False
        delay = min(DDL_RETRY_MAX_S, DDL_RETRY_INITIAL_S * 2 ** (attempt - 1))
        delay *= random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not cryptography
        self.log.warning(
            "migration_lock_retried",
            migration=parsed.migration.name,
            attempt=attempt,
            delay_s=round(delay, 3),
            error_type=RETRYABLE_SQLSTATES.get(error.sqlstate or "", "unknown"),
            sqlstate=error.sqlstate,
            error=redact.redact(error.diag.message_primary or str(error)),
        )
        time.sleep(delay)
        return True

    def _apply_transactional(self, parsed: ParsedMigration, ledger_action: Callable[[int], None]) -> int:
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                # Round trip 1: BEGIN, the file, the session reset. Round trip 2: ledger row, COMMIT.
                done, error, shift = self._run_wrapped(parsed, begin=True)
                if error is None:
                    duration_ms = round((time.monotonic() - started) * 1000)
                    self._finish(ledger_action, duration_ms, commit=True)
                    return duration_ms
            except psycopg.OperationalError as exc:
                raise self._connection_lost(parsed, exc) from None
            except psycopg.Error as exc:
                # Raised by the ledger row or at COMMIT (deferred constraints).
                self._rollback_quietly()
                raise self._commit_failure(parsed, exc) from None
            if self._is_disconnect(error):
                raise self._connection_lost(parsed, error) from None
            self._rollback_quietly()
            if error.sqlstate in RETRYABLE_SQLSTATES and self._retry_pause(parsed, attempt, error):
                continue
            raise self._failure(parsed, done, error, kept=None, shift=shift)

    def _apply_statements(self, parsed: ParsedMigration, ledger_action: Callable[[int], None]) -> int:
        m = parsed.migration
        statements = parsed.script.code_statements
        started = time.monotonic()
        index = 0
        attempt = 0
        while index < len(statements):
            statement = statements[index]
            try:
                _done, error, _rows = self._run_script(statement.text)
            except psycopg.OperationalError as exc:
                raise self._connection_lost(parsed, exc, kept=index) from None
            if error is None:
                index += 1
                attempt = 0
                continue
            if self._is_disconnect(error):
                raise self._connection_lost(parsed, error, kept=index) from None
            if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                self._rollback_quietly()
            attempt += 1
            if error.sqlstate in RETRYABLE_SQLSTATES and self._retry_pause(parsed, attempt, error):
                continue
            raise self._failure(parsed, 0, error, kept=index, base=statement)
        if self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
            self._rollback_quietly()
            raise MigrationFailedError(
                f"{m.path}: the file left a transaction open (BEGIN without COMMIT); "
                "that transaction was rolled back and the ledger was not changed",
                file=str(m.path),
            )
        duration_ms = round((time.monotonic() - started) * 1000)
        try:
            self.conn.execute(self._reset_sql)
            self._finish(ledger_action, duration_ms, commit=False)
        except psycopg.OperationalError as exc:
            raise self._connection_lost(parsed, exc, kept=len(statements)) from None
        except psycopg.Error as exc:
            raise self._commit_failure(parsed, exc) from None
        return duration_ms

    def _commit_failure(self, parsed: ParsedMigration, exc: psycopg.Error) -> BootstrapError:
        """The file ran, but recording it (or its COMMIT) failed."""
        m = parsed.migration
        if isinstance(exc, pgerrors.UniqueViolation) and exc.diag.table_name == self.settings.ledger_table:
            return IntegrityError(
                f"{m.path}: version {m.version} was recorded by another runner while this one applied it; "
                "rolled back (is the ledger shared with a runner that ignores the lock?)",
                file=str(m.path),
            )
        message = redact.redact(exc.diag.message_primary or str(exc).split("\n")[0])
        detail = f"; detail: {redact.redact(exc.diag.message_detail)}" if exc.diag.message_detail else ""
        outcome = ("the file was rolled back; nothing of it was kept" if m.transactional
                   else "its statements ran and were kept, but the ledger was not changed")
        return MigrationFailedError(
            f"{m.path}: {message} (SQLSTATE {exc.sqlstate}) at COMMIT{detail}; {outcome}",
            file=str(m.path),
            sqlstate=exc.sqlstate,
        )

    def _is_disconnect(self, error: psycopg.Error) -> bool:
        """The server ended the session (terminated, shutting down) rather than the SQL failing."""
        return isinstance(error, psycopg.OperationalError) and (
            self.conn.closed or self.conn.pgconn.status == pq.ConnStatus.BAD
            or (error.sqlstate or "").startswith("57P")
        )

    def _rollback_quietly(self) -> None:
        try:
            if not self.conn.closed and self.conn.info.transaction_status != pq.TransactionStatus.IDLE:
                self.conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    def _connection_lost(
        self, parsed: ParsedMigration, exc: psycopg.Error, kept: int | None = None
    ) -> MigrationFailedError:
        m = parsed.migration
        reason = redact.redact((exc.diag.message_primary if exc.diag else None) or str(exc)).strip()
        if m.transactional:
            outcome = "the server rolled the file back; nothing of it was kept"
        else:
            outcome = _kept_phrase(parsed.script, kept or 0)
        return MigrationFailedError(
            f"{m.path}: lost the connection while applying it ({reason}); {outcome}. "
            "Run migrate again once the database is back",
            file=str(m.path),
            sqlstate=exc.sqlstate,
        )

    def _failure(
        self,
        parsed: ParsedMigration,
        done: int,
        error: psycopg.Error,
        *,
        kept: int | None,
        base: Statement | None = None,
        outcome: str | None = None,
        shift: int = 0,
    ) -> MigrationFailedError:
        """Build the error for a failed file: where, what, and what was kept."""
        m = parsed.migration
        script = parsed.script
        code = script.code_statements
        diag = error.diag
        position = _int_or_none(diag.statement_position)
        if base is None:
            failing = code[done] if done < len(code) else None
            offset_base = -shift
        else:
            failing = base
            offset_base = base.start
        if position is not None and 0 <= offset_base + position - 1 < len(script.text):
            line, col = line_col(script.text, offset_base + position - 1)
        elif failing is not None:
            line, col = line_col(script.text, failing.code_start)
        else:
            line, col = 0, 0
        where = f"{m.path}:{line}:{col}" if line else str(m.path)
        message = redact.redact(diag.message_primary or str(error).split("\n")[0])
        extras = []
        if diag.message_detail:
            extras.append(f"detail: {redact.redact(diag.message_detail)}")
        if diag.message_hint:
            extras.append(f"hint: {redact.redact(diag.message_hint)}")
        if diag.context:
            extras.append(f"context: {redact.redact(diag.context.strip().splitlines()[0])}")
        if error.sqlstate == "25001":
            extras.append("hint: put '-- bootstrap:no-transaction' on the first line of the file")
        if error.sqlstate == "55P03":
            extras.append(
                f"still locked after {self.settings.ddl_lock_retries + 1} attempts; a long transaction holds the "
                "table (raise --ddl-lock-timeout, or run when traffic is low)"
            )
        if outcome is None:
            outcome = (
                "the file was rolled back; nothing of it was kept"
                if kept is None
                else _kept_phrase(script, kept)
            )
        text = f"{where}: {message} (SQLSTATE {error.sqlstate})"
        if extras:
            text += "; " + "; ".join(extras)
        return MigrationFailedError(
            f"{text}; {outcome}",
            file=str(m.path),
            line=line or None,
            column=col or None,
            sqlstate=error.sqlstate,
        )

    # -- ledger maintenance (baseline, repair, adopt) --------------------------------------

    def record_without_running(self, entries: list[tuple[Migration, str, datetime | None]]) -> None:
        """
        Record versions as applied without running them, in one transaction.

        Args:
            entries: (migration, source, applied_at) with source `baseline` or `adopted`;
                applied_at None means now.
        """
        with self.conn.transaction():
            for migration, source, applied_at in entries:
                self.conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (version, name, kind, checksum, applied_at, duration_ms, transactional,"
                        " source, hostname, bootstrap_version)"
                        " VALUES (%s, %s, 'versioned', %s, coalesce(%s, now()), NULL, %s, %s, %s, %s)"
                    ).format(self.ledger),
                    [migration.version, migration.name, migration.checksum, applied_at,
                     migration.transactional, source, _HOSTNAME, __version__],
                )

    def rewrite_checksums(self, changes: list[tuple[int, str, str]]) -> None:
        """
        Re-record checksums (and names) of applied versions, in one transaction.

        Args:
            changes: (version, new checksum, new file name).
        """
        with self.conn.transaction():
            for version, checksum, name in changes:
                self.conn.execute(
                    sql.SQL("UPDATE {} SET checksum = %s, name = %s WHERE version = %s").format(self.ledger),
                    [checksum, name, version],
                )

    def read_foreign_ledger(self, columns: str, order_by: str, table: tuple[str, str]) -> list[tuple[Any, ...]] | None:
        """
        Rows of another tool's ledger table, or None when the table does not exist.

        Args:
            columns: the tool's SELECT list (a constant of `adoption.TOOLS`, never user input).
            order_by: the tool's ordering column (likewise).
            table: (schema, table), reaching SQL as identifiers.
        """
        exists = self.conn.execute(
            "SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
            list(table),
        ).fetchone()
        if not exists or not exists[0]:
            return None
        query = sql.SQL("SELECT {columns} FROM {table} ORDER BY {order}").format(
            columns=sql.SQL(columns), table=sql.Identifier(*table), order=sql.Identifier(order_by)
        )
        try:
            return self.conn.execute(query).fetchall()
        except (pgerrors.UndefinedColumn, pgerrors.UndefinedTable) as exc:
            raise ConfigError(
                f"{table[0]}.{table[1]} does not have the layout bootstrap expects: "
                f"{exc.diag.message_primary}",
            ) from None

    # -- verify ---------------------------------------------------------------------

    def verify(self, scripts: list[tuple[str, str]]) -> list[str]:
        """
        Run verify scripts in one transaction that is always rolled back, each
        behind a savepoint so every failure is reported.

        Args:
            scripts: (name, text) pairs in order.

        Returns:
            One message per failing script (empty when all pass).
        """
        failures: list[str] = []
        self.conn.execute("BEGIN")
        try:
            for name, text in scripts:
                self.conn.execute("SAVEPOINT bootstrap_verify")
                with self._notices_about(verify=name):
                    _done, error, _rows = self._run_script(text)
                if error is None:
                    self.conn.execute("RELEASE SAVEPOINT bootstrap_verify")
                    self.log.info("verify_passed", script=name)
                    continue
                self.conn.execute("ROLLBACK TO SAVEPOINT bootstrap_verify")
                message = redact.redact(error.diag.message_primary or str(error))
                failures.append(f"{name}: {message}")
                self.log.error("verify_failed", script=name, error=message, sqlstate=error.sqlstate)
        finally:
            self._rollback_quietly()
        return failures


def _kept_phrase(script: Script, kept: int) -> str:
    code = script.code_statements
    total = len(code)
    if kept == 0:
        return f"no statement of its {total} ran; nothing was kept and the ledger was not changed"
    first_line = line_col(script.text, code[0].code_start)[0]
    last_line = line_col(script.text, code[kept - 1].end - 1)[0]
    return (
        f"statements 1-{kept} of {total} (lines {first_line}-{last_line}) ran and were kept, "
        f"statement {kept + 1} failed, {total - kept - 1} did not run; the ledger was not changed. "
        "Make it safe to re-run (IF NOT EXISTS), fix it, and run migrate again"
    )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def advisory_key(schema: str, table: str) -> int:
    """A stable signed 64-bit advisory lock key for one ledger."""
    digest = hashlib.sha256(f"bootstrap:{schema}.{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


PROBE_INTERVAL_S = 0.02
PROBED_KINDS = frozenset({"connection_refused", "socket_missing"})


def _retry_until(
    deadline: float,
    attempt: Callable[[], psycopg.Connection[Any]],
    attempts_made: Callable[[], int],
    last_failure: Callable[[], Failure | None],
    probe_targets: Callable[[], list[tuple[int, Any]]],
    log: Log,
    target: dict[str, str],
) -> psycopg.Connection[Any] | None:
    """
    After a first attempt failed, retry with tenacity until `deadline`
    (tenacity is imported only then: a start against a live database never
    loads it).

    Pauses: exponential with jitter from WAIT_INITIAL_S to WAIT_MAX_S, starting
    over when the kind of failure changes (refused -> starting up: the server is
    nearly there). While connections are refused, a pause ends as soon as the
    port accepts TCP connections (probed every 20 ms; a refused probe costs the
    server nothing), so a server that comes up mid-pause is met at once.

    Returns:
        The connection, or None when the deadline passed.
    """
    import tenacity

    state: dict[str, Any] = {"kind": None, "step": 0}

    def next_pause() -> float:
        failure = last_failure()
        kind = failure.kind if failure else None
        if kind != state["kind"]:
            state["kind"], state["step"] = kind, 0
        base = min(WAIT_MAX_S, WAIT_INITIAL_S * 2 ** int(state["step"]))
        state["step"] += 1
        pause: float = base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography
        return max(0.0, min(pause, deadline - time.monotonic()))

    def report(pause: float) -> None:
        failure = last_failure()
        log.info(
            "database_connect_retried",
            attempt=attempts_made(),
            delay_s=round(pause, 3),
            error_type=failure.kind if failure else "unknown",
            error=failure.message if failure else "",
            **target,
        )

    def sleep(seconds: float) -> None:
        failure = last_failure()
        if failure is None or failure.kind not in PROBED_KINDS:
            time.sleep(seconds)
        else:
            _pause_until_listening(seconds, probe_targets())

    if time.monotonic() >= deadline:
        return None
    first = next_pause()
    report(first)
    sleep(first)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Transient),
        wait=lambda _state: next_pause(),
        # The last pause ends at the deadline, so the last attempt is made at --timeout.
        stop=lambda _state: time.monotonic() >= deadline,
        before_sleep=lambda retry_state: report(retry_state.upcoming_sleep),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Transient:
        return None


def _probe_targets(params: dict[str, Any], env: Mapping[str, str]) -> list[tuple[int, Any]]:
    """(family, address) pairs the server would listen on, as libpq would try them."""
    hosts = str(params.get("hostaddr") or params.get("host") or env.get("PGHOSTADDR") or env.get("PGHOST") or "")
    ports = str(params.get("port") or env.get("PGPORT") or "5432").split(",")
    out: list[tuple[int, Any]] = []
    names = hosts.split(",") if hosts else ["/var/run/postgresql", "/tmp"]  # noqa: S108 - libpq's socket dirs
    for i, host in enumerate(names):
        port = (ports[i] if i < len(ports) else ports[-1]).strip() or "5432"
        if not port.isdigit():
            continue
        if host.startswith("/"):
            out.append((socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"))
            continue
        try:
            for family, _type, _proto, _name, address in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM):
                out.append((family, address))
        except OSError:
            continue
    return out


def _listening(family: int, address: Any) -> bool:
    """Whether something accepts a TCP (or Unix socket) connection there."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.05)
        try:
            sock.connect(address)
        except OSError:
            return False
        return True


def _pause_until_listening(seconds: float, targets: list[tuple[int, Any]]) -> None:
    """Sleep up to `seconds`, ending early once any target accepts connections."""
    end = time.monotonic() + seconds
    if not targets:
        time.sleep(seconds)
        return
    while True:
        if any(_listening(family, address) for family, address in targets):
            return
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(PROBE_INTERVAL_S, left))
