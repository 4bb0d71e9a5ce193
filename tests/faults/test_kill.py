"""kill -9 of bootstrap at every point: a plain re-run recovers, every file applied exactly once."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import psycopg

from bootstrap.pg import advisory_key
from pgcluster import free_port
from tests.faults.conftest import GATE_SQL, Gate, env_for, migrate_cmd
from tests.helpers import Spawned, bootstrap_cmd, clean_env, ledger, poll, run_cli, table_exists, write

LOCK_KEY = advisory_key("public", "bootstrap_migrations")


def counted_files(sql_dir: Path, count: int, gate_at: int | None = None) -> None:
    """Files that each record themselves once in `applied`; one may wait at the gate."""
    write(sql_dir, "0001_applied.sql", "CREATE TABLE applied (file int NOT NULL);\nINSERT INTO applied VALUES (1);\n")
    for n in range(2, count + 1):
        body = f"CREATE TABLE t{n} (id int);\nINSERT INTO applied VALUES ({n});\n"
        if n == gate_at:
            body = f"CREATE TABLE t{n} (id int);\n{GATE_SQL}INSERT INTO applied VALUES ({n});\n"
        write(sql_dir, f"{n:04d}_t{n}.sql", body)


def assert_exactly_once(conn: psycopg.Connection, count: int) -> None:
    """Every file applied once: one row each in `applied` and in the ledger."""
    rows = conn.execute("SELECT file, count(*) FROM applied GROUP BY file ORDER BY file").fetchall()
    assert [(n, 1) for n in range(1, count + 1)] == rows
    assert list(range(1, count + 1)) == [r[0] for r in ledger(conn)]


def lock_is_free(conn: psycopg.Connection) -> bool:
    """Whether nobody holds bootstrap's advisory lock (probing takes and releases it)."""
    if conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]:
        conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        return True
    return False


def test_kill_while_waiting_for_the_database(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """kill -9 while wait-db retries a closed port; a plain run against the database then works."""
    counted_files(sql_dir, 3)
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_SQL_DIR=str(sql_dir))
    with Spawned(bootstrap_cmd("migrate"), env) as proc:
        proc.wait_for_event("database_connect_retried")
        proc.proc.send_signal(signal.SIGKILL)
        assert -9 == proc.wait(30)
    assert 0 == run_cli(["migrate"], env_for(fdb, sql_dir)).returncode
    assert_exactly_once(fconn, 3)


def test_kill_while_waiting_for_the_lock(fdb: str, sql_dir: Path, fconn: psycopg.Connection) -> None:
    """kill -9 of a runner polling for the lock leaves nothing behind."""
    counted_files(sql_dir, 3)
    holder = psycopg.connect(fdb, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    try:
        with Spawned(migrate_cmd(), env_for(fdb, sql_dir)) as proc:
            proc.wait_for_event("lock_waiting")
            proc.proc.send_signal(signal.SIGKILL)
            assert -9 == proc.wait(30)
    finally:
        holder.close()
    assert not table_exists(fconn, "applied")
    assert 0 == run_cli(["migrate"], env_for(fdb, sql_dir)).returncode
    assert_exactly_once(fconn, 3)


def test_kill_in_the_middle_of_a_file(fdb: str, sql_dir: Path, fconn: psycopg.Connection, gate: Gate) -> None:
    """kill -9 while a file runs (holding the lock): the file is rolled back, the lock freed, a re-run completes."""
    counted_files(sql_dir, 5, gate_at=3)
    with Spawned(migrate_cmd(), env_for(fdb, sql_dir)) as proc:
        gate.wait_for_waiter()
        proc.proc.send_signal(signal.SIGKILL)
        assert -9 == proc.wait(30)
    # The server notices the dead client (client_connection_check_interval) even while its backend waits.
    poll(lambda: gate.waiter_pid() is None, timeout=30, message="the orphaned backend to be ended")
    poll(lambda: lock_is_free(fconn), timeout=30, message="the lock to be released")
    assert not table_exists(fconn, "t3")
    assert [1, 2] == [r[0] for r in ledger(fconn)]
    gate.open()
    assert 0 == run_cli(["migrate"], env_for(fdb, sql_dir)).returncode
    assert_exactly_once(fconn, 5)


def test_kill_at_random_points(fast_pg, sql_dir: Path) -> None:
    """kill -9 at 15 random moments of a 30-file run (between files, inside them): each re-run completes exactly once."""
    import uuid

    from psycopg import sql

    counted_files(sql_dir, 30)
    rng = random.Random(20261125)
    for _ in range(15):
        name = f"bootstrap_kill_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(fast_pg.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            url = fast_pg.dsn(name)
            with Spawned(migrate_cmd(), env_for(url, sql_dir)) as proc:
                proc.wait_for_event("database_ready")
                # Polling for a random number of applied files, then killing: no sleeping.
                target = rng.randint(0, 29)
                with psycopg.connect(url, autocommit=True) as watch:
                    poll(lambda target=target: proc.proc.poll() is not None or applied_count(watch) >= target,
                         timeout=60, interval=0.001, message="the run to progress")
                proc.proc.send_signal(signal.SIGKILL)
                proc.wait(30)
            result = run_cli(["migrate"], env_for(url, sql_dir, BOOTSTRAP_LOCK_TIMEOUT="60"))
            assert 0 == result.returncode, result.stderr
            with psycopg.connect(url, autocommit=True) as conn:
                assert_exactly_once(conn, 30)
        finally:
            with psycopg.connect(fast_pg.dsn(), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def applied_count(conn: psycopg.Connection) -> int:
    """How many files the ledger holds so far."""
    if not table_exists(conn, "bootstrap.bootstrap_migrations"):
        return 0
    return conn.execute("SELECT count(*) FROM bootstrap.bootstrap_migrations").fetchone()[0]
