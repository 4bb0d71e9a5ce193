"""
App pods that wait for a migration Job: `wait-migrated` and `run --wait-migrated`
wait until every file is applied, never migrate, fail at once on drift and exit
10 naming what is pending at --timeout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg

from tests.helpers import Spawned, bootstrap_cmd, clean_env, last_error, ledger, logs, run_cli, table_exists, write


def env(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """An app pod's environment."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_LOG_FORMAT="json", **extra)


def files(sql_dir: Path) -> None:
    """Two versioned files and a repeatable."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT id FROM a;")


def test_waits_until_the_job_has_migrated(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Started before the Job: logs what is pending, goes on as soon as the Job is done, never migrates itself."""
    files(sql_dir)
    with Spawned(bootstrap_cmd("wait-migrated", "--timeout", "120"), env(fresh_url, sql_dir)) as pod:
        waiting = pod.wait_for_event("migrations_waiting")
        assert (3, ["1_a.sql", "2_b.sql", "R__v.sql"]) == (waiting["count"], waiting["pending"])
        assert not table_exists(db, "a")
        assert 0 == run_cli(["migrate"], env(fresh_url, sql_dir)).returncode
        assert 0 == pod.wait(30), pod.err
    assert "migrations_ready" in [e["event"] for e in pod.events()]
    assert 3 == len(ledger(db))


def test_times_out_with_exit_10_naming_what_is_pending(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """No Job ran: exit 10 at --timeout, naming the pending files; nothing was applied."""
    files(sql_dir)
    result = run_cli(["wait-migrated", "--timeout", "1"], env(fresh_url, sql_dir))
    assert 10 == result.returncode
    failed = last_error(result.stderr)
    assert ["1_a.sql", "2_b.sql", "R__v.sql"] == failed["pending"]
    assert "3 migrations still pending after" in failed["error"] and "1_a.sql, 2_b.sql, R__v.sql" in failed["error"]
    assert ([], False) == (ledger(db), table_exists(db, "a"))


def test_a_changed_file_fails_at_once(fresh_url: str, sql_dir: Path) -> None:
    """Drift is not something to wait out: exit 6 at once, naming the file."""
    files(sql_dir)
    assert 0 == run_cli(["migrate"], env(fresh_url, sql_dir)).returncode
    (sql_dir / "1_a.sql").write_text("CREATE TABLE a (id bigint);")
    result = run_cli(["wait-migrated", "--timeout", "1h"], env(fresh_url, sql_dir), timeout=60)  # at once
    assert 6 == result.returncode
    assert "1_a.sql (version 1) changed after it was applied" in last_error(result.stderr)["error"]


def test_future_versions_are_fine(fresh_url: str, sql_dir: Path, tmp_path: Path) -> None:
    """An older pod waits for its own files only: versions a newer release applied do not keep it waiting."""
    files(sql_dir)
    newer = tmp_path / "newer"
    files(newer)
    write(newer, "3_c.sql", "CREATE TABLE c (id int);")
    assert 0 == run_cli(["migrate"], env(fresh_url, newer)).returncode
    result = run_cli(["wait-migrated", "--timeout", "5"], env(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr


def test_run_wait_migrated_execs_after_the_job(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`run --wait-migrated`: waits, verifies, execs the app with the same PID; never migrates."""
    files(sql_dir)
    write(sql_dir, "verify/01_a.sql", "SELECT 1 FROM a;")
    app = [sys.executable, "-c", "import os; print(os.getpid())"]
    with Spawned(bootstrap_cmd("run", "--wait-migrated", "--timeout", "120", "--", *app),
                 env(fresh_url, sql_dir)) as pod:
        pod.wait_for_event("migrations_waiting")
        assert 0 == run_cli(["migrate"], env(fresh_url, sql_dir)).returncode
        assert 0 == pod.wait(30), pod.err
        names = [e["event"] for e in pod.events()]
    assert [str(pod.pid)] == pod.out.split()
    assert names.index("migrations_ready") < names.index("verify_completed") < names.index("app_exec_started")
    assert "migration_applied" not in names


def test_run_wait_migrated_never_migrates(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Nothing migrates it: exit 10 at --timeout and the app never starts."""
    files(sql_dir)
    marker = sql_dir.parent / "started"
    result = run_cli(["run", "--wait-migrated", "--timeout", "1", "--", "touch", str(marker)],
                     env(fresh_url, sql_dir))
    assert 10 == result.returncode
    assert (False, []) == (os.path.exists(marker), ledger(db))
    assert "app_exec_started" not in [e["event"] for e in logs(result.stderr)]
