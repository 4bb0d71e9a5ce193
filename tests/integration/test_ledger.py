"""
The ledger contract (in golang-migrate's database/testing style): what `PgLedger`
stores and reads, on a real database, without the runner around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import CapturingLogger

from bootstrap.adoption import TOOLS
from bootstrap.errors import ConfigError
from bootstrap.migrations import Kind, Migration
from bootstrap.pg import PgLedger, Session
from bootstrap.settings import load_settings
from tests.helpers import ledger as ledger_rows


def migration(version: int | None, checksum: str = "c1", *, transactional: bool = True) -> Migration:
    """A discovered file, built directly."""
    name = f"{version}_t.sql" if version is not None else "R__view.sql"
    kind = Kind.VERSIONED if version is not None else Kind.REPEATABLE
    return Migration(kind, version, "t", name, Path(name), checksum, transactional)


@pytest.fixture
def session(fresh_db: str) -> Iterator[Session]:
    """bootstrap's session on the fresh database."""
    s = Session(psycopg.connect(fresh_db, autocommit=True), CapturingLogger())
    yield s
    s.close()


@pytest.fixture
def store(session: Session) -> PgLedger:
    """The ledger, with one extra schema to create."""
    settings = load_settings({}, {"BOOTSTRAP_SCHEMAS": "app", "BOOTSTRAP_LEDGER_TABLE": "ops.migrations"})
    return PgLedger(session, settings, CapturingLogger())


def test_a_fresh_database_has_no_ledger(store: PgLedger) -> None:
    """Reading creates nothing: no ledger, no schemas, no rows, and it needs preparing."""
    snap = store.snapshot()
    assert (False, set(), []) == (snap.ledger_exists, snap.schemas, snap.applied)
    assert store.needs_preparing(snap)
    assert not store.has_version(1)


def test_ensure_creates_schemas_and_the_table_once(store: PgLedger) -> None:
    """ensure() creates what is missing and says whether the ledger was there."""
    assert store.ensure() is False
    assert store.ensure() is True
    snap = store.snapshot()
    assert (True, {"app", "ops"}) == (snap.ledger_exists, snap.schemas)
    assert not store.needs_preparing(snap)


def record(store: PgLedger, session: Session, m: Migration) -> None:
    """A file's ledger statement, in a transaction of its own."""
    with session.transaction():
        session.conn.execute(store.insert_sql(m))


def test_record_joins_the_callers_transaction(store: PgLedger, session: Session, db: psycopg.Connection) -> None:
    """A row recorded in a transaction that rolls back is not there; one that commits is, with its duration."""
    store.ensure()
    with pytest.raises(ZeroDivisionError), session.conn.transaction():
        session.conn.execute(store.insert_sql(migration(1), 5))
        raise ZeroDivisionError
    assert [] == store.read()
    with session.conn.transaction():
        assert [(5,)] == session.conn.execute(store.insert_sql(migration(1), 5)).fetchall()  # RETURNING duration_ms
    assert [(1, "1_t.sql", "versioned")] == ledger_rows(db, "ops.migrations")
    assert store.has_version(1)
    assert "applied" == store.read()[0].source


def test_values_are_literals_of_any_text(store: PgLedger, session: Session) -> None:
    """A file name with quotes and backslashes is recorded as it is (composed by psycopg.sql, never pasted)."""
    store.ensure()
    name = "1_it's \\ 'quoted'.sql"
    record(store, session, Migration(Kind.VERSIONED, 1, "t", name, Path(name), "c1", True))
    assert [name] == [r.name for r in store.read()]


def test_a_repeatable_row_is_replaced_by_name(store: PgLedger, session: Session) -> None:
    """Re-applying a repeatable keeps one row per name, with the new checksum."""
    store.ensure()
    record(store, session, migration(None, "old"))
    record(store, session, migration(None, "new"))
    assert [("R__view.sql", "new")] == [(r.name, r.checksum) for r in store.read()]


def test_forget_removes_the_version_and_the_repeatables(store: PgLedger, session: Session) -> None:
    """A rolled-back version's row goes, and the repeatables' rows with it (migrate re-applies them)."""
    store.ensure()
    for m in (migration(1), migration(2), migration(None)):
        record(store, session, m)
    with session.transaction():
        session.conn.execute(store.forget_sql(2))
    assert [1] == [r.version for r in store.read()]


def test_baseline_and_repair_writes(store: PgLedger) -> None:
    """Rows recorded without running carry their source; checksums and names can be re-recorded."""
    store.ensure()
    store.record_without_running([(migration(1), "baseline", None), (migration(2), "adopted", None)])
    store.rewrite_checksums([(2, "c2", "2_renamed.sql")])
    assert [(1, "baseline", "c1", "1_t.sql"), (2, "adopted", "c2", "2_renamed.sql")] == \
        [(r.version, r.source, r.checksum, r.name) for r in store.read()]


def test_a_table_that_is_not_a_ledger_is_refused(store: PgLedger, db: psycopg.Connection) -> None:
    """A table of that name with another layout is a configuration error naming the variable."""
    db.execute("CREATE SCHEMA ops; CREATE TABLE ops.migrations (version text)")
    with pytest.raises(ConfigError, match=r"ledger table ops\.migrations exists but is not a bootstrap ledger"):
        store.snapshot()


def test_another_tools_ledger(store: PgLedger, db: psycopg.Connection) -> None:
    """read_foreign: None when the tool's table is absent; its rows, in order, when present."""
    assert store.read_foreign(TOOLS["dbmate"], ("public", "schema_migrations")) is None
    db.execute("CREATE TABLE schema_migrations (version varchar PRIMARY KEY); "
               "INSERT INTO schema_migrations VALUES ('2'), ('1')")
    assert [("1", "1", None, "migration", True), ("2", "2", None, "migration", True)] == \
        store.read_foreign(TOOLS["dbmate"], ("public", "schema_migrations"))
