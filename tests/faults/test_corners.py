"""
Corners where a file's own SQL meets bootstrap's machinery: a retryable error
inside a transaction the file opened, a migration that touches session
objects, a database whose strings are not standard, and a file that releases
the migration lock. Each outcome is true: what the ledger holds ran, what ran
is said.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from tests.faults.conftest import GATE_SQL, Gate, env_for, migrate_cmd
from tests.helpers import Spawned, last_error, ledger, logs, poll, run_cli, table_exists, write

TRANSFER = """-- bootstrap:no-transaction
BEGIN;
UPDATE accounts SET balance = balance - 100 WHERE id = 1;
UPDATE accounts SET balance = balance + 100 WHERE id = 2;
COMMIT;
"""


def test_a_lock_timeout_inside_the_files_own_transaction_retries_all_of_it(fdb: str, sql_dir: Path,
                                                                         fconn: psycopg.Connection) -> None:
    """A no-transaction file's BEGIN...COMMIT is retried from its BEGIN, never one statement alone: money is kept."""
    fconn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 1000), (2, 1000)")
    write(sql_dir, "1_transfer.sql", TRANSFER)
    holder = psycopg.connect(fdb)
    holder.execute("SELECT * FROM accounts WHERE id = 2 FOR UPDATE")  # the app holds row 2
    try:
        env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="500ms", BOOTSTRAP_LOG_FORMAT="json")
        with Spawned(migrate_cmd(), env) as proc:
            retried = proc.wait_for_event("migration_lock_retried", timeout=60)
            holder.commit()  # row 2 free: the retry must run the whole transfer again
            assert 0 == proc.wait(60), proc.err
    finally:
        holder.close()
    assert "55P03" == retried["sqlstate"]
    assert [(1, 900), (2, 1100)] == fconn.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall()
    assert [(1, "1_transfer.sql", "versioned")] == ledger(fconn)


def test_a_failure_inside_the_files_own_transaction_says_the_block_was_rolled_back(
        fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """Out of retries inside BEGIN...COMMIT: exit 5, the block rolled back whole, and the message says so."""
    fconn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 1000), (2, 1000)")
    write(sql_dir, "1_transfer.sql", "-- bootstrap:no-transaction\nCREATE TABLE IF NOT EXISTS audit (id int);\n"
          + TRANSFER.split("\n", 1)[1])
    holder = psycopg.connect(fdb)
    holder.execute("SELECT * FROM accounts WHERE id = 2 FOR UPDATE")
    try:
        result = run_cli(["migrate"], env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="100ms",
                                              BOOTSTRAP_DDL_LOCK_RETRIES="1"))
    finally:
        holder.close()
    assert 5 == result.returncode
    error = last_error(result.stderr)["error"]
    assert ("statements 1-1 ran and were kept; the transaction the file opened (statements 2-5, lines 3-6) failed at "
            "statement 4 and was rolled back whole") in error
    assert [(1, 1000), (2, 1000)] == fconn.execute("SELECT id, balance FROM accounts ORDER BY id").fetchall()
    assert [] == ledger(fconn)


def test_a_migration_that_touches_session_objects_is_recorded_as_itself(fdb: str, sql_dir: Path,
                                                                        fconn: psycopg.Connection) -> None:
    """A file that advances every sequence it can see, drops temporary objects and prepared statements:
    the ledger holds exactly the files that ran, each under its own name."""
    write(sql_dir, "1_touch.sql", """
        CREATE TEMPORARY SEQUENCE mine;
        DO $$
        DECLARE s record;
        BEGIN
            FOR s IN SELECT sequence_schema, sequence_name FROM information_schema.sequences LOOP
                PERFORM nextval(format('%I.%I', s.sequence_schema, s.sequence_name));
            END LOOP;
        END $$;
        DEALLOCATE ALL;
        DISCARD TEMP;
        CREATE TABLE one (id int);
    """)
    for n, name in ((2, "two"), (3, "three"), (4, "four")):
        write(sql_dir, f"{n}_{name}.sql", f"CREATE TABLE {name} (id int);")
    result = run_cli(["migrate"], env_for(fdb, sql_dir))
    assert 0 == result.returncode, result.stderr
    said = [e["migration"] for e in logs(result.stderr) if e["event"] == "migration_applied"]
    assert ["1_touch.sql", "2_two.sql", "3_three.sql", "4_four.sql"] == said
    assert [(1, "1_touch.sql", "versioned"), (2, "2_two.sql", "versioned"), (3, "3_three.sql", "versioned"),
            (4, "4_four.sql", "versioned")] == ledger(fconn)


def test_strings_are_read_as_the_lexer_reads_them_on_a_nonstandard_database(fdb: str, sql_dir: Path,
                                                                           fconn: psycopg.Connection) -> None:
    """standard_conforming_strings off by default: a COMMIT the lexer cannot see never runs; nothing is kept."""
    fconn.execute(sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(
        sql.Identifier(fconn.info.dbname)))
    write(sql_dir, "1_hidden.sql",
          "CREATE TABLE t (s text);\nINSERT INTO t VALUES ('it\\''); COMMIT; INSERT INTO t VALUES ('x'); -- '\n")
    result = run_cli(["migrate"], env_for(fdb, sql_dir))
    assert 5 == result.returncode
    assert "nothing of it was kept" in last_error(result.stderr)["error"]
    with psycopg.connect(fdb, autocommit=True) as conn:
        assert (False, []) == (table_exists(conn, "t"), ledger(conn))


def test_a_file_that_releases_the_migration_lock_never_commits_beside_another_runner(
        fdb: str, sql_dir: Path, fconn: psycopg.Connection, gate: Gate) -> None:
    """
    A lock released where the lexer cannot see it (inside a DO block): once another runner holds
    the lock, the first one's next file is rolled back, not committed (exit 3, saying so); each
    file is applied once.
    """
    write(sql_dir, "1_release.sql", "CREATE TABLE a (id int);\nDO $$BEGIN PERFORM pg_advisory_unlock_all(); END$$;\n")
    write(sql_dir, "2_next.sql", GATE_SQL + "CREATE TABLE b (id int);\nINSERT INTO log VALUES (2);\n")
    fconn.execute("CREATE TABLE log (file int)")
    env = env_for(fdb, sql_dir, BOOTSTRAP_LOG_FORMAT="json")
    with Spawned(migrate_cmd(), env) as first:
        gate.wait_for_waiter()  # the first runner is in 2_next.sql, without the lock it released
        with Spawned(migrate_cmd(), env) as second:
            second.wait_for_event("lock_acquired")  # the lock was free: the second runner took it
            poll(lambda: len(fconn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                           ).fetchall()) == 2, message="both runners at the gate")
            gate.open()
            codes = sorted([first.wait(60), second.wait(60)])
    assert [0, 3] == codes, first.err + second.err
    lost = [e for r in (first, second) for e in r.events() if e["event"] == "bootstrap_failed"]
    assert "this session no longer holds the migration lock" in lost[0]["error"]
    assert [(2,)] == fconn.execute("SELECT file FROM log").fetchall()
    assert [(1, "1_release.sql", "versioned"), (2, "2_next.sql", "versioned")] == ledger(fconn)


def test_waiting_runners_see_the_file_recorded_as_it_ran(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """Two runners and a file touching session objects: each file applied once, under its own name."""
    write(sql_dir, "1_touch.sql", "CREATE TEMPORARY TABLE scratch (x int); DISCARD TEMP; CREATE TABLE one (id int);")
    write(sql_dir, "2_two.sql", "CREATE TABLE two (id int);")
    env = env_for(fdb, sql_dir, BOOTSTRAP_LOG_FORMAT="json")
    with Spawned(migrate_cmd(), env) as first, Spawned(migrate_cmd(), env) as second:
        assert (0, 0) == (first.wait(60), second.wait(60)), first.err + second.err
    assert [(1, "1_touch.sql", "versioned"), (2, "2_two.sql", "versioned")] == ledger(fconn)
