"""
Concurrent index builds on a busy database: a build that fails, times out or
is cancelled leaves an INVALID index; bootstrap drops it before retrying and
records a `no-transaction` file only when every index it builds is valid.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.faults.conftest import env_for, migrate_cmd
from tests.helpers import Spawned, last_error, ledger, logs, poll, run_cli, write

INDEX_FILE = ("-- bootstrap:no-transaction\n"
              "CREATE TABLE IF NOT EXISTS accounts (id int, email text);\n"
              "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts (email);\n")


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    """Names of the INVALID (or not ready) indexes in the database."""
    return [r[0] for r in conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE NOT (i.indisvalid AND i.indisready) ORDER BY 1").fetchall()]


def valid(conn: psycopg.Connection, name: str) -> bool:
    """Whether the index exists, valid and ready."""
    row = conn.execute("SELECT i.indisvalid AND i.indisready FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
                       [name]).fetchone()
    return bool(row and row[0])


def open_transaction(dsn: str) -> psycopg.Connection:
    """
    Someone's report, open on ANOTHER table and holding its snapshot (REPEATABLE READ): a
    concurrent build waits for every transaction whose snapshot is older than its own.
    """
    conn = psycopg.connect(dsn)
    conn.execute("CREATE TABLE IF NOT EXISTS elsewhere (id int)")
    conn.commit()
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.execute("SELECT count(*) FROM elsewhere").fetchone()
    return conn


def test_busy_database_build_is_retried_until_valid(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """The build times out waiting for an old transaction, its invalid index is dropped, the retry builds it valid."""
    write(sql_dir, "1_index.sql", INDEX_FILE)
    fconn.execute("CREATE TABLE accounts (id int, email text); INSERT INTO accounts SELECT g, 'u' || g "
                  "FROM generate_series(1, 1000) g")
    holder = open_transaction(fdb)
    try:
        env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="200ms", BOOTSTRAP_DDL_LOCK_RETRIES="20")
        with Spawned(migrate_cmd(), env) as proc:
            proc.wait_for_event("migration_lock_retried")
            dropped = proc.wait_for_event("index_invalid_dropped")
            holder.rollback()
            assert 0 == proc.wait(), proc.err
    finally:
        holder.close()
    assert "public.accounts_email" == dropped["index"]
    assert valid(fconn, "accounts_email")
    assert [] == invalid_indexes(fconn)
    assert [(1, "1_index.sql", "versioned")] == ledger(fconn)


def test_without_retries_the_error_is_true_and_nothing_invalid_stays(fdb: str, sql_dir: Path,
                                                                    fconn: psycopg.Connection) -> None:
    """Retries off: exit 5 saying the invalid index was dropped (not "nothing was kept" over it); a re-run builds it."""
    write(sql_dir, "1_index.sql", INDEX_FILE)
    holder = open_transaction(fdb)
    try:
        result = run_cli(["migrate"], env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="200ms",
                                              BOOTSTRAP_DDL_LOCK_RETRIES="0"))
    finally:
        holder.close()
    assert 5 == result.returncode, result.stderr
    error = last_error(result.stderr)["error"]
    assert "1_index.sql:3:1: canceling statement due to lock timeout (SQLSTATE 55P03)" in error
    assert "statements 1-1 of 2 (lines 2-2) ran and were kept, statement 2 failed, 0 did not run; the ledger was " \
           "not changed; the INVALID index public.accounts_email its failed build left was dropped" in error
    assert ([], []) == (invalid_indexes(fconn), ledger(fconn))
    assert 0 == run_cli(["migrate"], env_for(fdb, sql_dir)).returncode
    assert valid(fconn, "accounts_email")


def test_a_failed_unique_build_leaves_nothing_behind(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """A UNIQUE build over duplicates fails (exit 5, not retried); its invalid index is dropped, not recorded."""
    fconn.execute("CREATE TABLE accounts (id int, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a')")
    write(sql_dir, "1_index.sql", INDEX_FILE)
    result = run_cli(["migrate"], env_for(fdb, sql_dir))
    assert 5 == result.returncode
    error = last_error(result.stderr)["error"]
    assert "could not create unique index \"accounts_email\" (SQLSTATE 23505)" in error
    assert "the INVALID index public.accounts_email its failed build left was dropped" in error
    assert ([], []) == (invalid_indexes(fconn), ledger(fconn))


def test_an_invalid_index_left_by_an_earlier_run_is_rebuilt(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """A build killed in an earlier run left its index INVALID; IF NOT EXISTS would skip it: bootstrap rebuilds it."""
    fconn.execute("CREATE TABLE accounts (id int, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a')")
    try:  # what a crashed run leaves: the build failed halfway, the index stays, INVALID
        fconn.execute("CREATE UNIQUE INDEX CONCURRENTLY accounts_email ON accounts (email)")
    except psycopg.errors.UniqueViolation:
        pass
    fconn.execute("DELETE FROM accounts WHERE id = 2")
    assert ["accounts_email"] == invalid_indexes(fconn)
    write(sql_dir, "1_index.sql", INDEX_FILE)
    result = run_cli(["migrate"], env_for(fdb, sql_dir))
    assert 0 == result.returncode, result.stderr
    assert "index_invalid_dropped" in [e["event"] for e in logs(result.stderr)]
    assert valid(fconn, "accounts_email")
    assert [(1, "1_index.sql", "versioned")] == ledger(fconn)


def test_a_reindex_that_skips_an_invalid_index_is_not_recorded(fdb: str, sql_dir: Path,
                                                               fconn: psycopg.Connection) -> None:
    """REINDEX TABLE CONCURRENTLY skips an INVALID index: exit 5 naming it and what to do; nothing recorded."""
    fconn.execute("CREATE TABLE accounts (id int, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a')")
    try:
        fconn.execute("CREATE UNIQUE INDEX CONCURRENTLY accounts_email ON accounts (email)")
    except psycopg.errors.UniqueViolation:
        pass
    write(sql_dir, "1_reindex.sql", "-- bootstrap:no-transaction\nREINDEX TABLE CONCURRENTLY accounts;\n")
    result = run_cli(["migrate"], env_for(fdb, sql_dir))
    assert 5 == result.returncode
    error = last_error(result.stderr)["error"]
    assert "1_reindex.sql:2: after statement 1 the index public.accounts_email is INVALID" in error
    assert "REINDEX INDEX CONCURRENTLY public.accounts_email" in error
    assert [] == ledger(fconn)


def test_waiting_runners_during_a_build_still_pass(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """A runner waiting for the lock holds no snapshot, so the holder's concurrent build is not kept waiting by it."""
    fconn.execute("CREATE TABLE accounts (id int, email text); INSERT INTO accounts SELECT g, 'u' || g "
                  "FROM generate_series(1, 20000) g")
    write(sql_dir, "1_index.sql", INDEX_FILE)
    env = env_for(fdb, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="1s", BOOTSTRAP_DDL_LOCK_RETRIES="0")
    procs = [Spawned(migrate_cmd(), env) for _ in range(4)]
    try:
        codes = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            p.stop()
    assert [0, 0, 0, 0] == codes, [p.err for p in procs]
    poll(lambda: valid(fconn, "accounts_email"), message="the index to be valid")
    assert [(1, "1_index.sql", "versioned")] == ledger(fconn)
