"""Migrations must not take production down: lock_timeout + retry instead of queueing readers behind DDL."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from tests.faults.conftest import env_for, migrate_cmd
from tests.helpers import Spawned, ledger, poll, run_cli, write


class Reader(threading.Thread):
    """The app: reads the table over and over; any read blocked for 2 s fails (statement_timeout)."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.reads = 0
        self.blocked: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, options="-c statement_timeout=2000") as conn:
            while not self.stop.is_set():
                try:
                    conn.execute("SELECT count(*) FROM accounts").fetchone()
                    self.reads += 1
                except psycopg.errors.QueryCanceled as exc:
                    self.blocked.append(str(exc))
                self.stop.wait(0.02)


def setup_table(conn: psycopg.Connection, sql_dir: Path) -> None:
    """A busy table and a migration that needs an ACCESS EXCLUSIVE lock on it."""
    conn.execute("CREATE TABLE accounts (id int); INSERT INTO accounts SELECT generate_series(1, 100)")
    write(sql_dir, "1_add_column.sql", "ALTER TABLE accounts ADD COLUMN email text;")


def start_long_transaction(dsn: str) -> psycopg.Connection:
    """A long transaction that has read the table (holds ACCESS SHARE until it ends)."""
    blocker = psycopg.connect(dsn)
    blocker.execute("SELECT count(*) FROM accounts").fetchone()
    return blocker


def test_blocked_ddl_retries_while_readers_keep_being_served(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """A file that cannot get its lock gives up after --ddl-lock-timeout and retries; readers are never queued for long."""
    setup_table(fconn, sql_dir)
    blocker = start_long_transaction(fdb)
    reader = Reader(fdb)
    reader.start()
    try:
        env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="200ms", BOOTSTRAP_DDL_LOCK_RETRIES="50")
        with Spawned(migrate_cmd(), env) as proc:
            retries_seen = poll(lambda: len([e for e in proc.events() if e["event"] == "migration_lock_retried"]) >= 3
                                and len([e for e in proc.events() if e["event"] == "migration_lock_retried"]),
                                timeout=60, message="three retries")
            reads_before = reader.reads
            blocker.commit()  # the long transaction ends: the next attempt gets the lock
            assert 0 == proc.wait(60), proc.err
        retried = [e for e in proc.events() if e["event"] == "migration_lock_retried"]
        assert retries_seen >= 3
        assert all((e["sqlstate"], e["error_type"]) == ("55P03", "lock_timeout") for e in retried)
        assert all(isinstance(e["attempt"], int) and e["delay_s"] > 0 for e in retried)
    finally:
        reader.stop.set()
        reader.join(10)
        blocker.close()
    assert [] == reader.blocked
    assert reads_before > 0
    assert [1] == [r[0] for r in ledger(fconn)]


def test_without_ddl_lock_timeout_readers_queue_behind_the_migration(fdb: str, sql_dir: Path,
                                                                    fconn: psycopg.Connection) -> None:
    """The control: with no lock_timeout the waiting ALTER blocks every reader (what the default prevents)."""
    setup_table(fconn, sql_dir)
    blocker = start_long_transaction(fdb)
    reader = Reader(fdb)
    try:
        with Spawned(migrate_cmd(), env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="none")) as proc:
            poll(lambda: fconn.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass"
                                       ).fetchone()[0], message="the ALTER to queue for its lock")
            reader.start()
            poll(lambda: reader.blocked, timeout=30, message="a reader to be blocked")
            blocker.commit()
            assert 0 == proc.wait(60)
    finally:
        reader.stop.set()
        reader.join(10)
        blocker.close()
    assert "canceling statement due to statement timeout" in reader.blocked[0]


def test_retries_are_bounded(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """When the lock never comes: exit 5 after --ddl-lock-retries, naming the file; nothing kept."""
    setup_table(fconn, sql_dir)
    blocker = start_long_transaction(fdb)
    try:
        env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="100ms", BOOTSTRAP_DDL_LOCK_RETRIES="1")
        result = run_cli(["migrate"], env)
    finally:
        blocker.close()
    assert 5 == result.returncode
    assert "1_add_column.sql:1:1: canceling statement due to lock timeout (SQLSTATE 55P03)" in result.stderr
    assert "still locked after 2 attempts" in result.stderr
    assert [] == ledger(fconn)


def test_statement_timeout(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """--statement-timeout cancels a statement that runs too long: exit 5, not retried."""
    write(sql_dir, "1_slow.sql", "CREATE TABLE slow (id int);\nSELECT pg_sleep(5);\n")
    result = run_cli(["migrate", "--statement-timeout", "200ms"], env_for(fdb, sql_dir))
    assert 5 == result.returncode
    assert "canceling statement due to statement timeout (SQLSTATE 57014)" in result.stderr
    assert "migration_lock_retried" not in result.stderr
    assert [] == ledger(fconn)


def test_retried_file_keeps_its_own_ledger_row(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """A file retried after a lock timeout is recorded once, under its own name, between its neighbours."""
    setup_table(fconn, sql_dir)
    (sql_dir / "1_add_column.sql").rename(sql_dir / "2_add_column.sql")
    write(sql_dir, "1_first.sql", "CREATE TABLE first (id int);")
    write(sql_dir, "3_third.sql", "CREATE TABLE third (id int);")
    blocker = start_long_transaction(fdb)
    try:
        env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="100ms", BOOTSTRAP_DDL_LOCK_RETRIES="50")
        with Spawned(migrate_cmd(), env) as proc:
            proc.wait_for_event("migration_lock_retried")
            blocker.commit()
            assert 0 == proc.wait(60), proc.err
    finally:
        blocker.close()
    rows = fconn.execute("SELECT version, name, checksum FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    assert [(1, "1_first.sql"), (2, "2_add_column.sql"), (3, "3_third.sql")] == [r[:2] for r in rows]
    from bootstrap.migrations import discover_migrations

    assert [m.checksum for m in discover_migrations(sql_dir)] == [r[2] for r in rows]
