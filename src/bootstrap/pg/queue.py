"""
The one-trip fast path's queue: the ledger rows of the transactional files
about to run, copied into a temporary table up front, each moved into the
ledger by a prepared statement inside its file's own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from .. import __version__
from ..migrations import Migration
from .session import Session


class PgRecordQueue:
    """
    The ledger rows of the transactional files about to run, in a temporary
    table; each file's query ends with `sql` (EXECUTE bootstrap_record), which
    moves the next row into the ledger inside the file's own transaction.
    """

    sql = "EXECUTE bootstrap_record"

    def __init__(self, session: Session, queued: int) -> None:
        self.session = session
        self.remaining = queued
        self._taken = 0

    @classmethod
    def fill(cls, session: Session, rows: Sequence[Migration], *, insert: psycopg.sql.Composable,
             hostname: str) -> PgRecordQueue | None:
        """
        Queue `rows` (COPY into pg_temp.bootstrap_pending) and prepare the
        statement that records the next one; None without the TEMPORARY privilege.

        Args:
            session: the runner's session (the queue is its own, temporary).
            rows: the transactional files about to run, in order.
            insert: the ledger's INSERT of one row, reading its values from `next`
                (the ledger composes it: its SQL stays in `ledger.py`).
            hostname: the runner's host name, recorded with each row.
        """
        conn = session.conn
        try:
            with conn.transaction():
                conn.execute(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS bootstrap_pending (ord integer PRIMARY KEY,"
                    " version bigint, name text NOT NULL, kind text NOT NULL, checksum text NOT NULL,"
                    " transactional boolean NOT NULL, hostname text, bootstrap_version text)"
                )
                # Which queued row a file takes: a temporary sequence (O(1), unlike updating a
                # row 1,000 times, which leaves its page full of dead versions to scan).
                conn.execute("CREATE TEMPORARY SEQUENCE IF NOT EXISTS bootstrap_position MINVALUE 0 START 0")
                conn.execute("SELECT pg_catalog.setval('pg_temp.bootstrap_position', 0, false)")
                conn.execute("TRUNCATE pg_temp.bootstrap_pending")
                with session.cursor.copy(
                    "COPY pg_temp.bootstrap_pending (ord, version, name, kind, checksum, transactional,"
                    " hostname, bootstrap_version) FROM STDIN"
                ) as copy:
                    for ord_, m in enumerate(rows):
                        copy.write_row((ord_, m.version, m.name, m.kind.value, m.checksum, True,
                                        hostname, __version__))
                if conn.execute(  # a session used before (a pooled one): prepare afresh
                    "SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE name = 'bootstrap_record'"
                ).fetchone():
                    conn.execute("DEALLOCATE bootstrap_record")
                # Prepared once: each file's query says EXECUTE bootstrap_record, planned once.
                # A sequence does not roll back: a file that fails puts the position back
                # (requeue) before it is retried.
                conn.execute(
                    sql.SQL(
                        "PREPARE bootstrap_record AS"
                        " WITH pos AS (SELECT pg_catalog.nextval('pg_temp.bootstrap_position')::integer AS ord),"
                        " next AS (SELECT q.* FROM pg_temp.bootstrap_pending q JOIN pos USING (ord)),"
                        " recorded AS ({insert} RETURNING version, name, duration_ms)"
                        # Exactly one row, or a division by zero aborts the transaction before COMMIT.
                        " SELECT max(version), max(name), max(duration_ms), 1 / (count(*) = 1)::integer"
                        " FROM recorded"
                    ).format(insert=insert)
                )
        except (pgerrors.InsufficientPrivilege, pgerrors.ReadOnlySqlTransaction):
            return None  # no temp tables for this role: three round trips per file instead
        return cls(session, len(rows))

    def taken(self) -> None:
        """A file committed with its queued row."""
        self.remaining -= 1
        self._taken += 1

    def requeue(self) -> None:
        """After a rolled-back file: the next EXECUTE takes that file's queued row again."""
        try:
            self.session.conn.execute("SELECT pg_catalog.setval('pg_temp.bootstrap_position', %s, false)",
                                      [self._taken])
        except psycopg.Error:
            pass
