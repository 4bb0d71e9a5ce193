"""migrate against a real PostgreSQL: order, atomicity, integrity, no-transaction files."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bootstrap.backoff import Backoff
from bootstrap.errors import ConfigError, IntegrityError, LockTimeoutError, MigrationFailedError
from bootstrap.pg import advisory_key
from tests.helpers import Spawned, bootstrap_cmd, clean_env, ledger, poll, table_exists, write


def test_applies_in_version_order_then_repeatables(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Versioned files run by integer version, repeatables after them, each recorded once."""
    write(sql_dir, "1_log.sql", "CREATE TABLE applied_order (n text);")
    for name in ("10_c.sql", "2_b.sql"):
        write(sql_dir, name, f"INSERT INTO applied_order VALUES ('{name}');")
    write(sql_dir, "R__view.sql", "INSERT INTO applied_order VALUES ('R'); CREATE OR REPLACE VIEW v AS SELECT 1 AS one;")
    outcome = runner.migrate()
    assert ["2_b.sql", "10_c.sql", "R"] == [r[0] for r in db.execute("SELECT n FROM applied_order").fetchall()]
    assert [(1, "1_log.sql", "versioned"), (2, "2_b.sql", "versioned"), (10, "10_c.sql", "versioned"),
            (None, "R__view.sql", "repeatable")] == ledger(db)
    assert (["1_log.sql", "2_b.sql", "10_c.sql"], ["R__view.sql"]) == (outcome.applied, outcome.repeatables)


def test_ledger_row_has_the_incident_details(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Each row carries checksum, time, duration, role, host and how it was applied."""
    write(sql_dir, "1_a.sql", "SELECT 1;")
    runner.migrate()
    row = db.execute(
        "SELECT checksum, applied_at IS NOT NULL, duration_ms >= 0, applied_by, hostname IS NOT NULL,"
        " transactional, source FROM bootstrap.bootstrap_migrations").fetchone()
    assert 64 == len(row[0])
    assert (True, True, "postgres", True, True, "applied") == row[1:]


def test_failed_file_keeps_nothing(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A failing file leaves no table and no ledger row; earlier files stay applied."""
    write(sql_dir, "1_ok.sql", "CREATE TABLE ok (id int);")
    write(sql_dir, "2_bad.sql", "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nINSERT INTO nope VALUES (1);\n")
    write(sql_dir, "3_later.sql", "CREATE TABLE later (id int);")
    with pytest.raises(MigrationFailedError) as info:
        runner.migrate()
    assert (True, False, False) == (table_exists(db, "ok"), table_exists(db, "half"), table_exists(db, "later"))
    assert [(1, "1_ok.sql", "versioned")] == ledger(db)
    message = str(info.value)
    assert "2_bad.sql:3:13: relation \"nope\" does not exist (SQLSTATE 42P01)" in message
    assert "nothing of it was kept" in message
    assert "migration_failed" not in runner.names()  # the CLI logs bootstrap_failed once


def test_error_without_position_names_the_statement_line(runner, sql_dir: Path) -> None:
    """A runtime error the server gives no position for points at the failing statement's line."""
    write(sql_dir, "1_div.sql", "CREATE TABLE t (n int);\n\n-- boom\nSELECT 1 / 0;\nSELECT 2;\n")
    with pytest.raises(MigrationFailedError, match=r"1_div\.sql:4:1: division by zero \(SQLSTATE 22012\)"):
        runner.migrate()


def test_second_run_changes_nothing(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """With nothing pending, migrate applies nothing and leaves the ledger as it was."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS one;")
    runner.migrate()
    before = db.execute("SELECT * FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    outcome = runner.migrate()
    assert ([], []) == (outcome.applied, outcome.repeatables)
    assert before == db.execute("SELECT * FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    assert ["database_ready", "migrations_up_to_date"] == runner.names()  # one read, no lock, no write


def test_changed_file_is_refused(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Editing an applied file stops migrate (exit 6) before anything new runs."""
    path = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    runner.migrate()
    path.write_text("CREATE TABLE a (id bigint);")
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    with pytest.raises(IntegrityError, match=r"1_a\.sql \(version 1\) changed after it was applied"):
        runner.migrate()
    assert not table_exists(db, "b")
    assert "changed" == runner.status().entries[0].state


def test_cosmetic_line_ending_change_is_not_drift(runner, sql_dir: Path) -> None:
    """Converting an applied file to CRLF (or adding a BOM) is not a change."""
    path = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);\nSELECT 1;\n")
    runner.migrate()
    path.write_bytes(b"\xef\xbb\xbfCREATE TABLE a (id int);\r\nSELECT 1;\r\n")
    assert [] == runner.migrate().applied


def test_missing_file_is_refused(runner, sql_dir: Path) -> None:
    """Deleting an applied file stops migrate (exit 6) naming it."""
    path = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    runner.migrate()
    path.unlink()
    with pytest.raises(IntegrityError, match=r"1_a\.sql \(version 1\) was applied but its file is missing"):
        runner.migrate()


def test_out_of_order_is_refused_unless_allowed(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A new file older than the newest applied one is refused; --out-of-order applies it."""
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    runner.migrate()
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    with pytest.raises(IntegrityError, match=r"1_a\.sql \(version 1\) is pending but version 2 is already applied"):
        runner.migrate()
    assert not table_exists(db, "a")
    assert ["1_a.sql"] == runner.migrate(OUT_OF_ORDER="1").applied
    assert table_exists(db, "a")


def test_bad_pending_file_stops_before_anything_is_written(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Every pending file is checked before the database is written to: no schema, no ledger, no file."""
    write(sql_dir, "1_ok.sql", "CREATE TABLE ok (id int);")
    write(sql_dir, "2_bad.sql", "CREATE TABLE b (id int);\nCOMMIT;\n")
    with pytest.raises(ConfigError, match=r"2_bad\.sql:2: COMMIT in a transactional file"):
        runner.migrate(BOOTSTRAP_SCHEMAS="extra")
    assert not table_exists(db, "ok")
    assert not table_exists(db, "bootstrap.bootstrap_migrations")
    assert db.execute("SELECT to_regnamespace('extra')").fetchone()[0] is None
    key = advisory_key("public", "bootstrap_migrations")
    assert db.execute("SELECT pg_try_advisory_lock(%s)", [key]).fetchone()[0]  # and the lock is not left behind


def test_no_transaction_file_runs_create_index_concurrently(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A no-transaction file runs statement by statement, so CREATE INDEX CONCURRENTLY works."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (a int, b text);")
    write(sql_dir, "2_idx.sql",
          "-- bootstrap:no-transaction\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);\n")
    runner.migrate()
    valid = db.execute("SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass AND indisvalid").fetchone()[0]
    assert 2 == valid
    assert (2, False) == db.execute(
        "SELECT version, transactional FROM bootstrap.bootstrap_migrations WHERE version = 2").fetchone()


def test_transactional_file_with_concurrently_gets_a_hint(runner, sql_dir: Path) -> None:
    """CREATE INDEX CONCURRENTLY in a transactional file fails with the fix in the message."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n")
    with pytest.raises(MigrationFailedError, match="put '-- bootstrap:no-transaction' on the first line"):
        runner.migrate()


def test_no_transaction_failure_says_what_was_kept(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A no-transaction file failing halfway names the statements kept and not run; a fixed re-run completes."""
    path = write(sql_dir, "1_t.sql",
                 "-- bootstrap:no-transaction\n"
                 "CREATE TABLE IF NOT EXISTS a (id int);\n"
                 "CREATE TABLE IF NOT EXISTS b (id int);\n"
                 "INSERT INTO missing VALUES (1);\n"
                 "CREATE TABLE IF NOT EXISTS c (id int);\n")
    with pytest.raises(MigrationFailedError) as info:
        runner.migrate()
    message = str(info.value)
    assert "1_t.sql:4:13: relation \"missing\" does not exist" in message
    assert "statements 1-2 of 4 (lines 2-3) ran and were kept, statement 3 failed, 1 did not run" in message
    assert (True, True, False) == (table_exists(db, "a"), table_exists(db, "b"), table_exists(db, "c"))
    assert [] == ledger(db)
    path.write_text(path.read_text().replace("INSERT INTO missing VALUES (1);", "SELECT 1;"))
    assert ["1_t.sql"] == runner.migrate().applied
    assert table_exists(db, "c")


def test_no_transaction_file_may_not_leave_a_transaction_open(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """BEGIN without COMMIT in a no-transaction file is rolled back and the file not recorded."""
    write(sql_dir, "1_t.sql", "-- bootstrap:no-transaction\nBEGIN;\nCREATE TABLE a (id int);\n")
    with pytest.raises(MigrationFailedError, match="left a transaction open"):
        runner.migrate()
    assert (False, []) == (table_exists(db, "a"), ledger(db))


def test_repeatable_reapplied_when_changed(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A repeatable runs again when its checksum changes, keeping one ledger row."""
    path = write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS n;")
    runner.migrate()
    assert [] == runner.migrate().repeatables
    path.write_text("CREATE OR REPLACE VIEW v AS SELECT 2 AS n;")
    assert ["R__v.sql"] == runner.migrate().repeatables
    assert 2 == db.execute("SELECT n FROM v").fetchone()[0]
    assert 1 == db.execute("SELECT count(*) FROM bootstrap.bootstrap_migrations").fetchone()[0]


def test_schemas_created_first(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """BOOTSTRAP_SCHEMAS are created before the first migration, which may use them."""
    write(sql_dir, "1_t.sql", "CREATE TABLE financial.t (id int);")
    runner.migrate(BOOTSTRAP_SCHEMAS="financial,audit")
    assert table_exists(db, "financial.t")
    assert ["audit", "financial"] == [r[0] for r in db.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname IN ('financial', 'audit') ORDER BY 1")]
    created = [e["schema"] for e in runner.events if e["event"] == "schema_created"]
    assert ["financial", "audit", "bootstrap"] == created  # the default ledger's schema last
    runner.migrate(BOOTSTRAP_SCHEMAS="financial,audit")
    assert "schema_created" not in runner.names()


def test_custom_ledger_table(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """BOOTSTRAP_LEDGER_TABLE puts the ledger elsewhere, creating its schema."""
    write(sql_dir, "1_t.sql", "SELECT 1;")
    runner.migrate(BOOTSTRAP_LEDGER_TABLE="ops.migrations")
    assert [(1, "1_t.sql", "versioned")] == ledger(db, "ops.migrations")
    assert not table_exists(db, "bootstrap.bootstrap_migrations")


def test_foreign_ledger_is_refused(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Pointing the ledger at another tool's table is a configuration error, not corruption."""
    db.execute("CREATE TABLE schema_migrations (version varchar PRIMARY KEY)")
    write(sql_dir, "1_t.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match="exists but is not a bootstrap ledger"):
        runner.migrate(BOOTSTRAP_LEDGER_TABLE="schema_migrations")


def test_session_state_does_not_leak_between_files(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """search_path, settings and role set by one file are reset before the next."""
    db.execute("CREATE SCHEMA other; CREATE ROLE bootstrap_test_other")
    try:
        write(sql_dir, "1_a.sql", "SET search_path = other; SET statement_timeout = '1ms'; SET ROLE bootstrap_test_other;")
        write(sql_dir, "2_b.sql", "SELECT pg_sleep(0.01); CREATE TABLE where_am_i (id int);")
        runner.migrate()
        assert table_exists(db, "public.where_am_i")
        assert "postgres" == db.execute("SELECT applied_by FROM bootstrap.bootstrap_migrations WHERE version = 2").fetchone()[0]
    finally:
        db.execute("DROP ROLE bootstrap_test_other")


def test_lock_timeout_names_the_holder(runner, sql_dir: Path, fresh_db: str) -> None:
    """When another session holds the lock past --lock-timeout: exit 7 naming the holder's pid."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    with psycopg.connect(fresh_db, autocommit=True, application_name="other-runner") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [advisory_key("public", "bootstrap_migrations")])
        with pytest.raises(LockTimeoutError) as info:
            runner.migrate(BOOTSTRAP_LOCK_TIMEOUT="0.3")
        assert f"held by pid {holder.info.backend_pid}, application other-runner" in str(info.value)
        assert not table_exists(holder, "t")


def test_waits_for_the_lock_then_applies(runner, sql_dir: Path, fresh_db: str, db: psycopg.Connection) -> None:
    """A runner waits (polling) while another holds the lock, then applies once it is released."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    key = advisory_key("public", "bootstrap_migrations")
    holder = psycopg.connect(fresh_db, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s)", [key])
    errors: list[BaseException] = []

    def work() -> None:
        try:
            runner.migrate()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        poll(lambda: db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE '%%pg_try_advisory_lock%%' AND pid <> %s", [holder.info.backend_pid]).fetchone()[0],
            message="the runner to poll the lock")
        assert not table_exists(db, "t")
    finally:
        holder.close()
        thread.join(30)
    assert [] == errors
    assert table_exists(db, "t")


def test_waiter_is_woken_by_the_release(runner, sql_dir: Path, fresh_db: str, db: psycopg.Connection) -> None:
    """
    A waiting runner proceeds as soon as the holder releases the lock (it announces
    the release), not at its next backoff step: here that step is an hour away.
    """
    write(sql_dir, "1_t.sql", "SELECT pg_advisory_xact_lock_shared(777);\nCREATE TABLE t (id int);")
    gate = psycopg.connect(fresh_db, autocommit=True)
    gate.execute("SELECT pg_advisory_lock(777)")  # the holder's file waits on this
    holder = Spawned(bootstrap_cmd("migrate"), clean_env(DATABASE_URL=fresh_db, BOOTSTRAP_SQL_DIR=str(sql_dir),
                                                         BOOTSTRAP_LOG_FORMAT="json"))
    try:
        holder.wait_for_event("lock_acquired")
        runner.lock_poll = Backoff(3600.0, 3600.0)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                runner.migrate(BOOTSTRAP_LOCK_TIMEOUT="7200")
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        waiter = threading.Thread(target=work, daemon=True)
        waiter.start()
        poll(lambda: db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle' AND query LIKE 'LISTEN %%'").fetchone()[0],
            message="the waiter to sleep until the release")
        assert not table_exists(db, "t")
        gate.execute("SELECT pg_advisory_unlock(777)")
        assert 0 == holder.wait()
        waiter.join(30)
        assert not waiter.is_alive(), "the waiter slept on after the lock was released"
    finally:
        gate.close()
        if holder.proc.poll() is None:
            holder.proc.kill()
    assert [] == errors
    assert "lock_not_needed" in runner.names()
    assert [(1, "1_t.sql", "versioned")] == ledger(db)


def test_error_at_commit_is_a_failed_migration(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A deferred constraint failing at COMMIT is exit 5 for that file, which keeps nothing."""
    write(sql_dir, "1_t.sql", "CREATE TABLE parent (id int PRIMARY KEY);\n"
          "CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);")
    write(sql_dir, "2_orphan.sql", "CREATE TABLE marker (id int);\nINSERT INTO child VALUES (42);\n")
    with pytest.raises(MigrationFailedError, match=r"2_orphan\.sql: .*violates foreign key constraint.* at COMMIT"):
        runner.migrate()
    assert (False, [(1, "1_t.sql", "versioned")]) == (table_exists(db, "marker"), ledger(db))


def test_missing_privilege_is_a_configuration_error(runner, sql_dir: Path, db: psycopg.Connection, fresh_db: str) -> None:
    """A migrator role that may not create the ledger gets exit 3 saying what to grant."""
    from psycopg.conninfo import make_conninfo

    db.execute("CREATE ROLE bootstrap_test_weak LOGIN")
    try:
        db.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        write(sql_dir, "1_t.sql", "SELECT 1;")
        runner.dsn = make_conninfo(fresh_db, user="bootstrap_test_weak")
        with pytest.raises(ConfigError, match=r"role bootstrap_test_weak may not create what bootstrap needs: "
                                               r"permission denied for database .*; grant it CREATE on the database"):
            runner.migrate()
    finally:
        db.execute("DROP OWNED BY bootstrap_test_weak; DROP ROLE bootstrap_test_weak")


def test_a_role_that_may_not_read_the_ledger_is_told_what_to_grant(runner, sql_dir: Path, db: psycopg.Connection,
                                                                  fresh_db: str) -> None:
    """An app role running `status` on a ledger it may not read: exit 3 naming the GRANT, not an internal error."""
    from psycopg.conninfo import make_conninfo

    role = f"bootstrap_test_reader_{uuid.uuid4().hex[:8]}"
    write(sql_dir, "1_t.sql", "SELECT 1;")
    runner.migrate()
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        runner.dsn = make_conninfo(fresh_db, user=role)
        with pytest.raises(ConfigError, match=f"role {role} may not read the ledger bootstrap.bootstrap_migrations: "
                                              f"permission denied .*; GRANT USAGE ON SCHEMA bootstrap TO {role}; "
                                              f"GRANT SELECT ON bootstrap.bootstrap_migrations TO {role}") as caught:
            runner.status()
        assert 3 == caught.value.exit_code
    finally:
        db.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


@pytest.mark.parametrize(("content", "message"), [
    ("BEGIN;\nSELECT 1;\nROLLBACK;\n", "verify/01_check.sql:1: BEGIN in a verify script"),
    ("-- bootstrap:no-transaction\nCOMMIT;\nCREATE TABLE persisted (id int);\n",
     "remove the '-- bootstrap:no-transaction' line"),
], ids=["begin-rollback", "no-transaction"])
def test_verify_scripts_cannot_escape_the_rollback(sql_dir: Path, content: str, message: str) -> None:
    """A verify script that would end bootstrap's transaction is refused before it runs (exit 3)."""
    from bootstrap.migrations import Kind
    from bootstrap.parsing import load_scripts

    write(sql_dir, "verify/01_check.sql", content)
    with pytest.raises(ConfigError, match=message):
        load_scripts(sql_dir, Kind.VERIFY, {})
