"""SIGTERM and SIGINT in each phase: exit 128+N promptly, the lock released, nothing half applied."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from pgcluster import free_port
from tests.faults.conftest import Gate, env_for, migrate_cmd
from tests.faults.test_kill import LOCK_KEY, counted_files, lock_is_free
from tests.helpers import Spawned, ledger, poll, table_exists

SIGNALS = [(signal.SIGTERM, 143), (signal.SIGINT, 130)]


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["TERM", "INT"])
def test_signal_while_waiting_for_the_database(sql_dir: Path, sig: signal.Signals, code: int) -> None:
    """Waiting for the database: 128+N at once."""
    counted_files(sql_dir, 2)
    env = env_for(f"postgresql://postgres@127.0.0.1:{free_port()}/x", sql_dir)
    with Spawned(migrate_cmd(), env) as proc:
        proc.wait_for_event("database_connect_retried")
        proc.proc.send_signal(sig)
        assert code == proc.wait(20)


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["TERM", "INT"])
def test_signal_while_waiting_for_the_lock(fdb: str, sql_dir: Path, fconn: psycopg.Connection,
                                           sig: signal.Signals, code: int) -> None:
    """Polling for another runner's lock: 128+N at once, nothing created."""
    counted_files(sql_dir, 2)
    holder = psycopg.connect(fdb, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    try:
        with Spawned(migrate_cmd(), env_for(fdb, sql_dir)) as proc:
            proc.wait_for_event("lock_waiting")
            proc.proc.send_signal(sig)
            assert code == proc.wait(20)
    finally:
        holder.close()
    assert (False, []) == (table_exists(fconn, "applied"), ledger(fconn))


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["TERM", "INT"])
def test_signal_in_the_middle_of_a_file(fdb: str, sql_dir: Path, fconn: psycopg.Connection, gate: Gate,
                                        sig: signal.Signals, code: int) -> None:
    """Holding the lock inside a file: 128+N at once, the query cancelled, the file rolled back, the lock free."""
    counted_files(sql_dir, 4, gate_at=3)
    with Spawned(migrate_cmd(), env_for(fdb, sql_dir)) as proc:
        gate.wait_for_waiter()
        proc.proc.send_signal(sig)
        assert code == proc.wait(20)
        interrupted = [e for e in proc.events() if e["event"] == "bootstrap_interrupted"]
        assert sig.name == interrupted[0]["signal"]
    assert gate.waiter_pid() is None  # cancelled, not left waiting
    poll(lambda: lock_is_free(fconn), timeout=10, message="the lock to be free")
    assert (False, [1, 2]) == (table_exists(fconn, "t3"), [r[0] for r in ledger(fconn)])
