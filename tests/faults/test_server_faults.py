"""The server misbehaves: a terminated connection, restarts while waiting and while migrating."""

from __future__ import annotations

from pathlib import Path

import psycopg

from bootstrap.pg import advisory_key
from tests.faults.conftest import Gate, env_for, migrate_cmd
from tests.faults.test_kill import assert_exactly_once, counted_files
from tests.helpers import Spawned, ledger, run_cli, table_exists


def test_terminated_connection_mid_migration(fdb: str, sql_dir: Path, fconn: psycopg.Connection, gate: Gate) -> None:
    """pg_terminate_backend during a file: exit 5 naming the file, nothing of it kept; a re-run completes."""
    counted_files(sql_dir, 4, gate_at=3)
    with Spawned(migrate_cmd(), env_for(fdb, sql_dir)) as proc:
        pid = gate.wait_for_waiter()
        fconn.execute("SELECT pg_terminate_backend(%s)", [pid])
        assert 5 == proc.wait(30)
        failed = next(e for e in proc.events() if e["event"] == "bootstrap_failed")
    assert "0003_t3.sql: lost the connection while applying it" in failed["error"]
    assert "terminating connection due to administrator command" in failed["error"]
    assert "nothing of it was kept" in failed["error"]
    assert (False, [1, 2]) == (table_exists(fconn, "t3"), [r[0] for r in ledger(fconn)])
    gate.open()
    assert 0 == run_cli(["migrate"], env_for(fdb, sql_dir)).returncode
    assert_exactly_once(fconn, 4)


def test_server_restart_while_waiting(new_cluster, sql_dir: Path) -> None:
    """The server goes down before bootstrap starts and comes back while it waits: the run completes."""
    cluster = new_cluster()
    cluster.start()
    cluster.wait_ready()
    cluster.stop()
    counted_files(sql_dir, 3)
    with Spawned(migrate_cmd(), env_for(cluster.dsn(), sql_dir)) as proc:
        proc.wait_for_event("database_connect_retried")
        cluster.start(wait=False)
        assert 0 == proc.wait(60), proc.err
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        assert_exactly_once(conn, 3)


def test_server_restart_while_migrating(new_cluster, sql_dir: Path) -> None:
    """The server restarts in the middle of a file: exit 5, that file rolled back; a re-run completes."""
    cluster = new_cluster()
    cluster.start()
    cluster.wait_ready()
    counted_files(sql_dir, 4, gate_at=3)
    gate = Gate(cluster.dsn())
    try:
        with Spawned(migrate_cmd(), env_for(cluster.dsn(), sql_dir)) as proc:
            gate.wait_for_waiter()
            cluster.stop("fast")
            assert 5 == proc.wait(30)
            failed = next(e for e in proc.events() if e["event"] == "bootstrap_failed")
            assert "0003_t3.sql: lost the connection while applying it" in failed["error"]
    finally:
        gate.conn.close()  # the restart ended its session, and with it the gate
    cluster.start()
    cluster.wait_ready()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        assert (False, [1, 2]) == (table_exists(conn, "t3"), [r[0] for r in ledger(conn)])
    result = run_cli(["migrate"], env_for(cluster.dsn(), sql_dir))
    assert 0 == result.returncode, result.stderr
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        assert_exactly_once(conn, 4)


def test_a_waiter_whose_connection_is_lost_connects_again_and_waits_on(new_cluster, sql_dir: Path) -> None:
    """A replica waiting for the lock when the server restarts connects again, takes the lock, migrates: exit 0."""
    cluster = new_cluster()
    cluster.start()
    cluster.wait_ready()
    counted_files(sql_dir, 2)
    holder = psycopg.connect(cluster.dsn(), autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [advisory_key("public", "bootstrap_migrations")])
    try:
        with Spawned(migrate_cmd(), env_for(cluster.dsn(), sql_dir, BOOTSTRAP_LOCK_TIMEOUT="120")) as proc:
            proc.wait_for_event("lock_waiting")
            cluster.stop("fast")  # the holder's session ends with it, and the waiter's connection
            cluster.start(wait=False)
            assert 0 == proc.wait(90), proc.err
            names = [e["event"] for e in proc.events()]
    finally:
        holder.close()
    assert names.index("lock_wait_connection_lost") < names.index("lock_acquired")
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        assert_exactly_once(conn, 2)
