"""A rehearsal cut short: killed, stopped by a signal, its connection dropped; it leaves nothing behind."""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest

from tests.faults.conftest import GATE_SQL, Gate, env_for
from tests.faults.test_kill import lock_is_free
from tests.helpers import Spawned, bootstrap_cmd, poll, run_cli, user_objects, write


def release(sql_dir: Path) -> None:
    """Three files in a schema of their own; the second waits at the gate in the middle."""
    write(sql_dir, "1_t.sql", "CREATE TABLE app.t (id bigint);\nINSERT INTO app.t VALUES (1);\n")
    write(sql_dir, "2_gated.sql", f"CREATE TABLE app.u (id bigint);\n{GATE_SQL}INSERT INTO app.u VALUES (1);\n")
    write(sql_dir, "3_v.sql", "CREATE TABLE app.v (id bigint);\n")


def rehearse_cmd() -> list[str]:
    """`python -m bootstrap migrate --rehearse`."""
    return bootstrap_cmd("migrate", "--rehearse")


def assert_nothing_left(gate: Gate, fconn: psycopg.Connection) -> None:
    """The server ended the rehearsal's backend, released the lock, and kept no schema, table or ledger."""
    poll(lambda: gate.waiter_pid() is None, timeout=30, message="the rehearsal's backend to be ended")
    poll(lambda: lock_is_free(fconn), timeout=30, message="the lock to be released")
    assert [] == user_objects(fconn)


def test_rehearsal_killed_mid_file_leaves_nothing(fdb: str, sql_dir: Path, fconn: psycopg.Connection,
                                                  gate: Gate) -> None:
    """kill -9 while file 2 runs inside the rehearsal: the server rolls it all back and frees the lock; a re-run passes."""
    release(sql_dir)
    env = env_for(fdb, sql_dir, BOOTSTRAP_SCHEMAS="app")
    with Spawned(rehearse_cmd(), env) as proc:
        gate.wait_for_waiter()
        proc.proc.send_signal(signal.SIGKILL)
        assert -9 == proc.wait(30)
    assert_nothing_left(gate, fconn)
    gate.open()
    result = run_cli(["migrate", "--rehearse"], env)
    assert 0 == result.returncode, result.stderr
    assert [] == user_objects(fconn)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_rehearsal_stopped_by_a_signal_leaves_nothing(fdb: str, sql_dir: Path, fconn: psycopg.Connection,
                                                      gate: Gate, sig: signal.Signals, code: int) -> None:
    """A signal mid-file: 128+N at once, the query cancelled and rolled back, the lock released."""
    release(sql_dir)
    with Spawned(rehearse_cmd(), env_for(fdb, sql_dir, BOOTSTRAP_SCHEMAS="app")) as proc:
        gate.wait_for_waiter()
        proc.proc.send_signal(sig)
        assert code == proc.wait(20)
        assert "bootstrap_interrupted" == proc.events()[-1]["event"]
    assert gate.waiter_pid() is None  # cancelled, not left waiting
    assert_nothing_left(gate, fconn)


def test_rehearsal_whose_connection_drops_leaves_nothing(fdb: str, sql_dir: Path, fconn: psycopg.Connection,
                                                         gate: Gate) -> None:
    """pg_terminate_backend mid-file: exit 5 naming the file; the server rolled the rehearsal back."""
    release(sql_dir)
    with Spawned(rehearse_cmd(), env_for(fdb, sql_dir, BOOTSTRAP_SCHEMAS="app")) as proc:
        fconn.execute("SELECT pg_terminate_backend(%s)", [gate.wait_for_waiter()])
        assert 5 == proc.wait(30)
        failed = next(e for e in proc.events() if e["event"] == "bootstrap_failed")
    assert "2_gated.sql: lost the connection while applying it" in failed["error"]
    assert_nothing_left(gate, fconn)
