"""
The second line of defence behind a pooler, on a real server: a session marked
pooled (libpq's pid differs from the server's) guards every write with the
server connection that holds the lock, never takes the lock twice on one
server connection, and checks the unlock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from structlog.testing import CapturingLogger

from bootstrap.errors import ConfigError
from bootstrap.migrations import Kind, Migration, ParsedMigration
from bootstrap.pg import AdvisoryLocker, PgLedger, Session, advisory_key
from bootstrap.pg.applier import Applier
from bootstrap.settings import load_settings
from bootstrap.sqlsplit import split_statements
from tests.helpers import ledger, table_exists

KEY = advisory_key("public", "bootstrap_migrations")


@pytest.fixture
def pooled(fresh_db: str) -> Iterator[Session]:
    """A session that believes a pooler sits in front of it (the server pid it was told differs from libpq's)."""
    conn = psycopg.connect(fresh_db, autocommit=True)
    session = Session(conn, CapturingLogger(), server_pid=conn.info.backend_pid + 1)
    session.pool_mode = "session"
    yield session
    session.close()


def parsed(text: str, version: int = 1, *, transactional: bool = True) -> ParsedMigration:
    """A file about to run."""
    name = f"{version}_t.sql"
    return ParsedMigration(Migration(Kind.VERSIONED, version, "t", name, Path(name), "c" * 64, transactional),
                           split_statements(text))


def tools(session: Session) -> tuple[PgLedger, AdvisoryLocker, Applier]:
    """The ledger, locker and applier on the session."""
    log = CapturingLogger()
    store = PgLedger(session, load_settings({}, {}), log)
    return store, AdvisoryLocker(session, KEY, timeout_s=5, log=log), Applier(session, store, retries=0, log=log)


def test_a_pooled_session_applies_on_the_lock_holders_connection(pooled: Session, db: psycopg.Connection) -> None:
    """On the server connection that holds the lock, files apply as usual (one trip, guarded)."""
    store, locker, applier = tools(pooled)
    assert locker.acquire()
    store.ensure()
    todo = [parsed("CREATE TABLE a (id int);"), parsed("-- bootstrap:no-transaction\nCREATE TABLE b (id int);\n",
                                                        2, transactional=False)]
    for item in todo:
        applier.apply(item)
    locker.release()
    assert [(1, "1_t.sql", "versioned"), (2, "2_t.sql", "versioned")] == ledger(db)


@pytest.mark.parametrize("transactional", [True, False], ids=["transactional", "no-transaction"])
def test_work_on_another_server_connection_is_refused(pooled: Session, db: psycopg.Connection,
                                                      transactional: bool) -> None:
    """A file whose work reaches another server connection than the lock holder's: exit 3, nothing kept."""
    store, locker, applier = tools(pooled)
    assert locker.acquire()
    store.ensure()
    # As if a transaction pooler had moved the session: the lock is held on another server connection.
    pooled.lock_pid = pooled.server_pid + 12345
    pooled.conn.execute("SELECT pg_advisory_unlock_all()")
    db.execute("SELECT pg_advisory_lock(%s)", [KEY])
    text = "CREATE TABLE a (id int);" if transactional else "-- bootstrap:no-transaction\nCREATE TABLE a (id int);\n"
    with pytest.raises(ConfigError, match="reached another server connection than the one holding the migration lock"):
        applier.apply(parsed(text, transactional=transactional))
    assert (False, []) == (table_exists(db, "a"), ledger(db))


def test_the_lock_is_never_taken_twice_on_one_server_connection(pooled: Session) -> None:
    """Two clients on one server connection (transaction pooling): the second is refused, not told it has the lock."""
    first, second = AdvisoryLocker(pooled, KEY, timeout_s=5, log=pooled.log), \
        AdvisoryLocker(pooled, KEY, timeout_s=5, log=pooled.log)
    assert first.acquire()
    with pytest.raises(ConfigError, match="a connection pooler in transaction mode"):
        second.acquire()


def test_an_unlock_that_releases_nothing_is_an_error(pooled: Session) -> None:
    """The unlock's answer is checked: a lock no longer held by this server connection is reported (exit 3)."""
    locker = AdvisoryLocker(pooled, KEY, timeout_s=5, log=pooled.log)
    assert locker.acquire()
    pooled.conn.execute("SELECT pg_advisory_unlock_all()")  # as if the lock were on another server connection
    with pytest.raises(ConfigError, match="transaction mode") as caught:
        locker.release()
    assert "lock_release_failed" in [c.args[0] for c in pooled.log.calls]
    assert "what ran before is committed and recorded, but the unlock reached another server connection" \
        in caught.value.message
    assert "rolled back" not in caught.value.message
