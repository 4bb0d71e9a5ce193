"""
The ledger on PostgreSQL (goose's Store): all of bootstrap's ledger SQL is here.

One row per applied versioned file and one per repeatable. Reads are one round
trip and take no lock; writes join the caller's transaction, so a file and
its ledger row commit together. Identifiers reach SQL only through
`sql.Identifier`; values only as parameters or as `sql.Literal`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql
from psycopg.adapt import Transformer

from .. import __version__
from ..errors import ConfigError, TenantMissingError
from ..migrations import Kind, Migration
from ..options import LEGACY_LEDGER
from ..settings import Settings
from ..typing import AppliedMigration, Logger, Snapshot
from .session import Session

if TYPE_CHECKING:
    from ..adoption import Tool

_HOSTNAME = socket.gethostname()
# A ledger row: a versioned one is new (its version is unique); a repeatable one
# replaces its row by name (the partial unique index on name WHERE version IS NULL).
_INSERT = sql.SQL(
    "INSERT INTO {ledger} (version, name, kind, checksum, duration_ms, transactional, hostname, bootstrap_version)"
    " VALUES ("
)
_COMMA, _HOST, _VERSION = sql.SQL(", "), sql.Literal(_HOSTNAME), sql.Literal(__version__)
_SERVER_DURATION = sql.SQL(  # from when the file's query arrived to its ledger statement, on the server's clock
    "(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - pg_catalog.statement_timestamp()) * 1000)::integer")
_ON_CONFLICT = sql.SQL(
    ") ON CONFLICT (name) WHERE version IS NULL DO UPDATE SET checksum = EXCLUDED.checksum,"
    " duration_ms = EXCLUDED.duration_ms, transactional = EXCLUDED.transactional, applied_at = now(),"
    " applied_by = current_user, hostname = EXCLUDED.hostname, bootstrap_version = EXCLUDED.bootstrap_version"
    " RETURNING duration_ms"
)
_LAYOUT_COMMENT = "bootstrap migration ledger (layout 1): one row per applied migration"


class PgLedger:
    """
    The `Ledger` in a PostgreSQL table.

    Args:
        session: the runner's session.
        settings: the ledger's name and the schemas to create.
        log: a structlog logger.
    """

    def __init__(self, session: Session, settings: Settings, log: Logger) -> None:
        self.session = session
        self.settings = settings
        self.log = log
        self._at(settings.ledger_schema, settings.ledger_table)
        # The default ledger may still be where the default was before 0.2; checked on each look until found.
        self._legacy: tuple[str, str] | None = LEGACY_LEDGER if settings.ledger_default else None

    def _at(self, schema: str, table: str) -> None:
        self.schema, self.table_name = schema, table
        self.name = f"{schema}.{table}"
        self.table = sql.Identifier(schema, table)
        self._insert = _INSERT.format(ledger=self.table)
        self._transformer = Transformer(self.session.conn)

    # -- reading -------------------------------------------------------------------------

    def _inspect_query_on(self, cur: psycopg.Cursor[Any]) -> None:
        legacy = self._legacy or (self.schema, self.table_name)
        cur.execute(
            """
            SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)) IS NOT NULL,
                   ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)),
                   pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)) IS NOT NULL
            """,
            [self.schema, self.table_name, [*self.settings.schemas, self.schema], *legacy],
        )

    def _found(self, row: Any) -> bool:
        """Whether the ledger exists; the default one found at its legacy place is used there from now on."""
        if row[0] or self._legacy is None or not row[2]:
            return bool(row[0])
        self._at(*self._legacy)
        self._legacy = None
        self.log.info("ledger_found", ledger=self.name,
                      reason="where the default ledger was before bootstrap 0.2; kept there. Once no older image "
                             "runs, it can move: CREATE SCHEMA bootstrap; ALTER TABLE public.bootstrap_migrations "
                             "SET SCHEMA bootstrap")
        return True

    def _inspect(self) -> tuple[bool, set[str]]:
        """Whether the ledger exists, and which configured schemas exist."""
        with self.session.conn.cursor() as cur:
            self._inspect_query_on(cur)
            row = cur.fetchone()
        assert row is not None
        if not row[0] and self._found(row):  # the default ledger, at its legacy place: look there
            return self._inspect()
        return bool(row[0]), set(row[1])

    def _rows_query(self, *, full: bool) -> sql.Composed:
        # Without the timestamps a start reads 1,000 rows in a third of the time. For a
        # repeatable: the newest version applied before its row was (re)written, from the
        # server's own clock (one subquery per repeatable row, none for versioned ones).
        applied_at = sql.SQL("l.applied_at" if full else "NULL::timestamptz")
        return sql.SQL(
            "SELECT l.version, l.name, l.kind, l.checksum, {applied_at}, l.source,"
            " CASE WHEN l.kind = 'repeatable' THEN (SELECT max(v.version) FROM {ledger} v"
            " WHERE (v.applied_at, v.id) < (l.applied_at, l.id)) END"
            " FROM {ledger} l ORDER BY l.version NULLS LAST, l.name"
        ).format(applied_at=applied_at, ledger=self.table)

    def snapshot(self, *, full: bool = False) -> Snapshot:
        """
        What is there, in one round trip and without writing or locking: whether
        the ledger exists, which schemas exist, and the ledger's rows.

        Raises:
            ConfigError: the ledger table exists but is not a bootstrap ledger.
        """
        conn = self.session.conn
        inspect_cur = conn.cursor()
        ledger_cur = conn.cursor()
        missing_ledger = False
        try:
            with conn.pipeline():
                self._inspect_query_on(inspect_cur)
                ledger_cur.execute(self._rows_query(full=full))
        except pgerrors.UndefinedTable:
            missing_ledger = True
        except (pgerrors.UndefinedColumn, pgerrors.DatatypeMismatch) as exc:
            raise self._foreign_ledger(exc) from None
        except pgerrors.InsufficientPrivilege as exc:
            raise self._unreadable(exc) from None
        row = inspect_cur.fetchone()
        assert row is not None
        if not row[0] and self._found(row):  # the default ledger, at its legacy place: read it there
            return self.snapshot(full=full)
        ledger_exists, schemas = bool(row[0]), set(row[1])
        applied = [] if missing_ledger or not ledger_exists else _rows(ledger_cur.fetchall())
        return Snapshot(ledger_exists=ledger_exists and not missing_ledger, schemas=schemas, applied=applied)

    def read(self) -> list[AppliedMigration]:
        """Every row with its time of application; none when the ledger does not exist yet (read-only)."""
        return self.snapshot(full=True).applied

    def has_version(self, version: int) -> bool:
        """Whether the ledger holds this version (False when it does not exist yet)."""
        try:
            row = self.session.conn.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE version = %s)").format(self.table), [version]
            ).fetchone()
        except pgerrors.UndefinedTable:
            return False
        except pgerrors.InsufficientPrivilege as exc:
            raise self._unreadable(exc) from None
        return bool(row and row[0])

    def needs_preparing(self, snap: Snapshot) -> bool:
        """Whether schemas or the ledger are missing."""
        wanted = {*self.settings.schemas, self.schema}
        return not snap.ledger_exists or not wanted <= snap.schemas

    def _unreadable(self, exc: psycopg.Error) -> ConfigError:
        return ConfigError(
            f"role {self.session.user} may not read the ledger {self.name}: "
            f"{exc.diag.message_primary or exc}; GRANT USAGE ON SCHEMA "
            f"{self.schema} TO {self.session.user}; GRANT SELECT ON {self.name} TO "
            f"{self.session.user} (an app role that runs `status`, `wait-migrated` or `run --wait-migrated` "
            "needs to read it)",
            sqlstate=exc.sqlstate,
        )

    def _foreign_ledger(self, exc: psycopg.Error) -> ConfigError:
        return ConfigError(
            f"ledger table {self.name} exists but is not a bootstrap ledger "
            f"({exc.diag.message_primary}); choose another BOOTSTRAP_LEDGER_TABLE",
            variable="BOOTSTRAP_LEDGER_TABLE",
        )

    # -- creating ------------------------------------------------------------------------

    def ensure(self, *, announce: bool = True) -> bool:
        """
        Create missing schemas and the ledger (under the lock), in a transaction of
        their own or, when one is open (a rehearsal), inside it.

        Args:
            announce: log `schema_created` and `ledger_created` (not in a rehearsal, which rolls them back).

        Returns:
            True when the ledger already existed.

        Raises:
            ConfigError: the role may not create them.
        """
        ledger_exists, existing = self._inspect()
        missing = [schema for schema in dict.fromkeys([*self.settings.schemas, self.schema])
                   if schema not in existing]
        if self.settings.tenant is not None and self.settings.tenant_kind == "schema" and self.schema in missing:
            raise TenantMissingError(f"tenant {self.schema}: no such schema (dropped, or listed by the tenants "
                                     "query without existing); bootstrap never creates a tenant", tenant=self.schema)
        if ledger_exists and not missing:
            return True
        conn = self.session.conn
        try:
            with self.session.transaction():
                for schema in missing:  # --role owns the schemas its files fill; the ledger's stays the login's
                    owner = self.session.role if schema in self.settings.schemas and schema != self.schema else None
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}{}").format(
                        sql.Identifier(schema),
                        sql.SQL(" AUTHORIZATION {}").format(sql.Identifier(owner)) if owner else sql.SQL("")))
                if not ledger_exists:
                    self._create()
        except pgerrors.InsufficientPrivilege as exc:
            raise ConfigError(
                f"role {self.session.user} may not create what bootstrap needs: "
                f"{exc.diag.message_primary or exc}; grant it CREATE on the "
                "database (schemas) and on the ledger's schema, or create them beforehand",
                sqlstate=exc.sqlstate,
            ) from None
        if not announce:
            return ledger_exists
        for schema in missing:
            self.log.info("schema_created", schema=schema)
        if not ledger_exists:
            self.log.info("ledger_created", ledger=self.name)
        return ledger_exists

    def _create(self) -> None:
        """Create the ledger table (inside the caller's transaction)."""
        conn = self.session.conn
        conn.execute(
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
            ).format(ledger=self.table)
        )
        conn.execute(
            sql.SQL("CREATE UNIQUE INDEX {index} ON {ledger} (name) WHERE version IS NULL").format(
                index=sql.Identifier(f"{self.table_name}_repeatable_name_key"[:63]),
                ledger=self.table,
            )
        )
        conn.execute(
            sql.SQL("COMMENT ON TABLE {ledger} IS {comment}").format(
                ledger=self.table, comment=sql.Literal(_LAYOUT_COMMENT)
            )
        )

    # -- writing: statements that run inside the file's own transaction -----------------

    def insert_sql(self, migration: Migration, duration_ms: int | None = None) -> str:
        """
        The statement recording one applied file: its values composed as literals, so it
        travels in the file's own query (one round trip, nothing left in the session).

        Args:
            duration_ms: the file's duration; None: measured by the server, from when the
                query arrived to this statement (`RETURNING` gives it back).
        """
        m = migration
        duration = [sql.Literal(duration_ms) if duration_ms is not None else _SERVER_DURATION]
        if self.session.lock_key is not None:  # the lock's guard: no commit while another runner holds it
            duration += [sql.SQL(" * "), sql.SQL(self.session.lock_guard())]
        # Composed piece by piece, and every literal through one Transformer (each Literal would make its
        # own, and SQL.format parses its template each time): this runs once per file.
        return sql.Composed([
            self._insert, sql.Literal(m.version), _COMMA, sql.Literal(m.name), _COMMA, sql.Literal(m.kind.value),
            _COMMA, sql.Literal(m.checksum), _COMMA, *duration, _COMMA, sql.Literal(m.transactional), _COMMA,
            _HOST, _COMMA, _VERSION, _ON_CONFLICT]).as_string(self._transformer)

    def forget_sql(self, version: int | None) -> str:
        """
        The statement removing a rolled-back version's row, and the repeatables' rows:
        they have no partners and may stand on what the down file dropped, so the next
        migrate re-applies them (a round trip of rollback and migrate restores the
        database). Runs with the down file, atomically with it.
        """
        return sql.SQL("DELETE FROM {} WHERE version = {} OR kind = {}").format(
            self.table, sql.Literal(version), sql.Literal(Kind.REPEATABLE.value)).as_string(self.session.conn)

    # -- maintenance: baseline, repair, adopt --------------------------------------------

    def record_without_running(self, entries: Sequence[tuple[Migration, str, datetime | None]]) -> None:
        """
        Record versions as applied without running them, in one transaction.

        Args:
            entries: (migration, source, applied_at) with source `baseline` or `adopted`;
                applied_at None means now.
        """
        conn = self.session.conn
        with self.session.transaction():
            for migration, source, applied_at in entries:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (version, name, kind, checksum, applied_at, duration_ms, transactional,"
                        " source, hostname, bootstrap_version)"
                        " VALUES (%s, %s, 'versioned', %s, coalesce(%s, now()), NULL, %s, %s, %s, %s)"
                    ).format(self.table),
                    [migration.version, migration.name, migration.checksum, applied_at,
                     migration.transactional, source, _HOSTNAME, __version__],
                )

    def rewrite_checksums(self, changes: Sequence[tuple[int, str, str]], retired: Sequence[str] = ()) -> None:
        """
        Re-record checksums (and names) of applied versions, and remove the rows of
        retired repeatables, in one transaction.

        Args:
            changes: (version, new checksum, new file name).
            retired: names of repeatables whose file was deleted.
        """
        conn = self.session.conn
        with self.session.transaction():
            for version, checksum, name in changes:
                conn.execute(
                    sql.SQL("UPDATE {} SET checksum = %s, name = %s WHERE version = %s").format(self.table),
                    [checksum, name, version],
                )
            for name in retired:
                conn.execute(sql.SQL("DELETE FROM {} WHERE version IS NULL AND name = %s").format(self.table), [name])

    def read_foreign(self, tool: Tool, table: tuple[str, str]) -> list[tuple[Any, ...]] | None:
        """Rows of another tool's ledger table, or None when it does not exist (see `foreign.read_foreign`)."""
        from .foreign import read_foreign

        return read_foreign(self.session, tool, table)


def _rows(rows: list[Any]) -> list[AppliedMigration]:
    kinds = {k.value: k for k in Kind}
    return [AppliedMigration(r[0], r[1], kinds[r[2]], r[3], r[4], r[5], r[6]) for r in rows]
