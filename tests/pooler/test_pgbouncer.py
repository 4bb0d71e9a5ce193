"""
Behind PgBouncer: session pooling works like a direct connection, transaction
pooling is refused before anything changes, nothing is left on the server
connections bootstrap hands back, and many runners against a small server all
succeed.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from race import race
from tests.helpers import (
    Spawned,
    bootstrap_cmd,
    clean_env,
    events,
    last_error,
    ledger,
    poll,
    run_cli,
    table_exists,
    write,
)
from tests.pooler.conftest import Urls


def env(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """bootstrap's environment, JSON logs."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_LOG_FORMAT="json", **extra)


def files(sql_dir: Path) -> None:
    """A realistic set: tables, a concurrent index, a repeatable, rollbacks, a verify script."""
    write(sql_dir, "1_accounts.sql", "CREATE TABLE accounts (id int PRIMARY KEY, email text);")
    write(sql_dir, "1_accounts.down.sql", "DROP TABLE accounts;")
    write(sql_dir, "2_index.sql", "-- bootstrap:no-transaction\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_email ON accounts (email);\n")
    write(sql_dir, "2_index.down.sql", "DROP INDEX accounts_email;")
    write(sql_dir, "3_seed.sql", "INSERT INTO accounts VALUES (1, 'a@example.com');")
    write(sql_dir, "3_seed.down.sql", "DELETE FROM accounts;")
    write(sql_dir, "R__views.sql", "CREATE OR REPLACE VIEW emails AS SELECT email FROM accounts;")
    write(sql_dir, "verify/01_seed.sql", "DO $$BEGIN PERFORM 1 FROM accounts; END$$;")


def test_session_pooling_works_like_a_direct_connection(urls: Urls, sql_dir: Path, direct: psycopg.Connection) -> None:
    """Every command through PgBouncer in session mode, as on a direct connection."""
    files(sql_dir)
    pooled = env(urls.session, sql_dir)
    for args in (["wait-db"], ["migrate"], ["status", "--exit-code"], ["verify"], ["wait-migrated"],
                 ["rollback", "--steps", "1"], ["migrate"], ["repair", "--dry-run"], ["run", "--", "true"]):
        result = run_cli(args, pooled)
        assert 0 == result.returncode, (args, result.stderr)
    assert [1, 2, 3, None] == [r[0] for r in ledger(direct)]
    assert "connection_pooler_detected" in events(run_cli(["rollback", "--steps", "1"], pooled).stderr)
    doc = json.loads(run_cli(["status", "--json"], pooled).stdout)
    assert {"applied": 2, "pending": 2} == {k: v for k, v in doc["summary"].items() if v}  # 3 and the view


def test_timeouts_are_in_force_inside_the_files(urls: Urls, sql_dir: Path, direct: psycopg.Connection) -> None:
    """--ddl-lock-timeout and --statement-timeout reach every file, transactional or not, through the pooler."""
    write(sql_dir, "1_seen.sql", "CREATE TABLE seen AS SELECT 'tx' AS file, current_setting('lock_timeout') AS lt,"
          " current_setting('statement_timeout') AS st;")
    write(sql_dir, "2_seen.sql", "-- bootstrap:no-transaction\nINSERT INTO seen SELECT 'no-tx',"
          " current_setting('lock_timeout'), current_setting('statement_timeout');\n")
    result = run_cli(["migrate"], env(urls.session, sql_dir, BOOTSTRAP_DDL_LOCK_TIMEOUT="250ms",
                                      BOOTSTRAP_STATEMENT_TIMEOUT="30s"))
    assert 0 == result.returncode, result.stderr
    assert [("no-tx", "250ms", "30s"), ("tx", "250ms", "30s")] == direct.execute(
        "SELECT * FROM seen ORDER BY file").fetchall()


def test_nothing_is_left_on_the_server_connection(urls: Urls, sql_dir: Path) -> None:
    """The next client of the one server connection finds no queue, prepared statement, setting, LISTEN or lock."""
    files(sql_dir)
    assert 0 == run_cli(["migrate"], env(urls.single, sql_dir)).returncode
    with psycopg.connect(urls.single, autocommit=True) as app:  # the same server connection, next in line
        left = app.execute(
            "SELECT (SELECT count(*) FROM pg_prepared_statements),"
            " (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()),"
            " (SELECT count(*) FROM pg_listening_channels()),"
            " (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),"
            " current_setting('lock_timeout'), current_setting('statement_timeout'),"
            " current_setting('client_connection_check_interval')").fetchone()
    assert (0, 0, 0, 0, "0", "0", "0") == left


def test_transaction_pooling_is_refused_before_anything_changes(urls: Urls, sql_dir: Path,
                                                                direct: psycopg.Connection) -> None:
    """Transaction mode: exit 3 at once naming the fix; no lock, no ledger, no schema, no table."""
    files(sql_dir)
    for args in (["migrate"], ["run", "--", "true"], ["baseline", "--version", "1"], ["rollback", "--to", "0"]):
        result = run_cli([*args, "--schemas", "app"], env(urls.transaction, sql_dir), timeout=60)
        assert 3 == result.returncode, (args, result.stderr)
        error = last_error(result.stderr)["error"]
        assert "a connection pooler in transaction mode was detected" in error
        assert "Point BOOTSTRAP_DATABASE_URL at PostgreSQL directly (or at a session-mode pool)" in error
    assert (False, False, []) == (table_exists(direct, "accounts"), table_exists(direct, "bootstrap.bootstrap_migrations"),
                                  direct.execute("SELECT nspname FROM pg_namespace WHERE nspname = 'app'").fetchall())
    assert [] == direct.execute("SELECT * FROM pg_locks WHERE locktype = 'advisory'").fetchall()


def test_read_only_commands_work_through_transaction_pooling(urls: Urls, sql_dir: Path) -> None:
    """Migrated over a direct URL, the app's pooled URL serves status, a no-op migrate, wait-db, verify, wait-migrated."""
    files(sql_dir)
    assert 0 == run_cli(["migrate"], env(urls.direct, sql_dir)).returncode
    pooled = env(urls.transaction, sql_dir)
    for args in (["status", "--exit-code"], ["wait-db"], ["verify"], ["wait-migrated"], ["run", "--", "true"]):
        result = run_cli(args, pooled)
        assert 0 == result.returncode, (args, result.stderr)
    assert ["database_ready", "migrations_up_to_date", "bootstrap_completed"] == events(
        run_cli(["migrate"], pooled).stderr)


def test_the_direct_url_recipe(urls: Urls, sql_dir: Path, direct: psycopg.Connection) -> None:
    """BOOTSTRAP_DATABASE_URL direct, DATABASE_URL pooled (transaction mode) for the app: run migrates and execs."""
    files(sql_dir)
    app = ["python3", "-c", "import os; print(os.environ['DATABASE_URL'].split('@')[1])"]
    result = run_cli(["run", "--", *app], clean_env(BOOTSTRAP_DATABASE_URL=urls.direct, DATABASE_URL=urls.transaction,
                                                     BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 0 == result.returncode, result.stderr
    assert urls.transaction.split("@")[1] == result.stdout.strip()
    assert 4 == len(ledger(direct))


def test_a_refused_startup_parameter_fails_at_once(urls: Urls, sql_dir: Path) -> None:
    """A pooler refusing the user's own `options`: exit 3 at once, naming the parameter (not 60 s of retries)."""
    write(sql_dir, "1_a.sql", "SELECT 1;")
    result = run_cli(["migrate", "--timeout", "1h"], env(urls.session + "?options=-c%20search_path%3Dpublic", sql_dir),
                     timeout=60)
    assert 3 == result.returncode
    failed = last_error(result.stderr)
    assert "unsupported startup parameter: options" in failed["error"]
    assert "startup_parameter_refused" == failed["error_type"]
    assert "database_connect_retried" not in events(result.stderr)


@pytest.mark.parametrize("via", ["direct", "session"])
def test_racing_runners_apply_each_file_exactly_once(urls: Urls, via: str) -> None:
    """8 runners, 10 rounds, directly and through session pooling: 0 double applies, 0 failures."""
    result = race(getattr(urls, via), rounds=10, runners=8, files=20)
    assert [] == result.problems
    assert (0, 0, 0) == (result.failures, result.double_applies, result.missing_applies)


@pytest.mark.parametrize("via", ["direct", "session"])
def test_fifty_runners_against_twenty_connections(urls: Urls, sql_dir: Path, direct: psycopg.Connection,
                                                  via: str) -> None:
    """50 runners at once against max_connections = 20 (directly, or queued by the pooler): all succeed, once each."""
    write(sql_dir, "1_log.sql", "CREATE TABLE log (file int);\nINSERT INTO log VALUES (1);")
    for n in range(2, 11):
        write(sql_dir, f"{n}_t{n}.sql", f"CREATE TABLE t{n} (id int);\nINSERT INTO log VALUES ({n});")
    runners = [Spawned(bootstrap_cmd("migrate", "--timeout", "120"), env(getattr(urls, via), sql_dir))
               for _ in range(50)]
    try:
        codes = [r.wait(240) for r in runners]
    finally:
        for r in runners:
            r.stop()
    assert [0] * 50 == codes, next((r.err for r in runners if r.proc.returncode), "")
    assert list(range(1, 11)) == [r[0] for r in direct.execute("SELECT file FROM log ORDER BY file").fetchall()]


def test_waiting_through_transaction_pooling_leaves_no_listen(urls: Urls, sql_dir: Path,
                                                              direct: psycopg.Connection) -> None:
    """
    wait-migrated behind a transaction pooler polls the ledger, never LISTENs: a
    waiter killed mid-wait (its pod deleted) leaves no LISTEN on a server
    connection that the app is handed next.
    """
    files(sql_dir)
    assert 0 == run_cli(["migrate"], env(urls.direct, sql_dir)).returncode
    write(sql_dir, "4_more.sql", "CREATE TABLE more (id int);")  # pending: the wait goes on
    with Spawned(bootstrap_cmd("wait-migrated", "--timeout", "120"), env(urls.transaction, sql_dir)) as waiter:
        # The second report comes 10 s after the first: dozens of polls (and waits) lie between.
        poll(lambda: [e for e in waiter.events() if e.get("event") == "migrations_waiting"][1:], timeout=60,
             message="a second migrations_waiting")
        waiter.proc.kill()
        waiter.wait()
    # Five clients in open transactions hold all five server connections of the pool at once.
    apps = [psycopg.connect(urls.transaction) for _ in range(5)]
    try:
        channels = [app.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() for app in apps]
        pids = {app.execute("SELECT pg_backend_pid()").fetchone() for app in apps}
    finally:
        for app in apps:
            app.close()
    assert (5, [(0,)] * 5) == (len(pids), channels)


def test_racing_runners_behind_transaction_pooling_are_all_refused_and_leave_no_lock(
        urls: Urls, sql_dir: Path, direct: psycopg.Connection) -> None:
    """8 runners at once through transaction pooling, 10 rounds: every one exit 3, nothing applied, no lock left."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "2_b.sql", "-- bootstrap:no-transaction\nCREATE TABLE IF NOT EXISTS b (id int);\n")
    for _round in range(10):
        runners = [Spawned(bootstrap_cmd("migrate", "--lock-timeout", "20"), env(urls.transaction, sql_dir))
                   for _ in range(8)]
        try:
            codes = [r.wait(120) for r in runners]
        finally:
            for r in runners:
                r.stop()
        assert [3] * 8 == codes, next((r.err for r in runners if r.proc.returncode != 3), "")
        assert [] == direct.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory'").fetchall()
    assert (False, False, []) == (table_exists(direct, "a"), table_exists(direct, "b"), ledger(direct))
