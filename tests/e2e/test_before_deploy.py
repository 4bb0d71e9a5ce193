"""migrate --dry-run, --to and --rehearse in real processes: what they print, their exit codes, what they leave."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from bootstrap.errors import ExitCode
from pgcluster import free_port
from tests.faults.test_kill import LOCK_KEY, lock_is_free
from tests.helpers import clean_env, events, last_error, ledger, logs, run_cli, table_exists, user_objects, write


def env_for(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """bootstrap's environment for these tests."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), **extra)


def release(sql_dir: Path) -> None:
    """A release: a table, an index built the blocking way, a concurrent index, a view."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id bigint);\nINSERT INTO t VALUES (1);\n")
    write(sql_dir, "2_index.sql", "CREATE INDEX t_id ON t (id);\n")
    write(sql_dir, "3_concurrently.sql", "-- bootstrap:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_id2 ON t (id);\n")
    write(sql_dir, "R__view.sql", "CREATE OR REPLACE VIEW v AS SELECT id FROM t;\n")


def held_lock(url: str) -> psycopg.Connection:
    """Another runner holding the migration lock."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
    return conn


# -- --dry-run ---------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Each file in order with kind, statements, lint; exit 8; no lock taken (another runner holds it), no write."""
    release(sql_dir)
    holder = held_lock(fresh_url)
    try:
        result = run_cli(["migrate", "--dry-run", "--schemas", "app", "--lock-timeout", "1"], env_for(fresh_url, sql_dir))
    finally:
        holder.close()
    assert ExitCode.NOT_UP_TO_DATE == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert ["ORDER  VERSION  KIND            STATEMENTS  FILE                LINT",
            "1      1        transactional   2           1_t.sql             clean",
            "2      2        transactional   1           2_index.sql         1 finding",
            "3      3        no-transaction  1           3_concurrently.sql  clean",
            "4      R        repeatable      1           R__view.sql         clean"] == lines[:5]
    assert f"{sql_dir / '2_index.sql'}:1:1: require-concurrent-index-creation (warning): " in result.stdout
    assert "would create: schema app, schema bootstrap, ledger bootstrap.bootstrap_migrations" in lines
    assert "4 files would run; 1 lint finding in 4 files linted (pending; PostgreSQL" in lines[-1]
    assert "bootstrap_completed" == events(result.stderr)[-1]
    assert [] == user_objects(db)


def test_dry_run_with_nothing_to_do_exits_0(fresh_url: str, sql_dir: Path) -> None:
    """Up to date: `nothing would run`, exit 0 (a deploy job can branch on it)."""
    release(sql_dir)
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    result = run_cli(["migrate", "--dry-run"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    assert ["", "nothing would run: every file is applied"] == result.stdout.splitlines()


def test_dry_run_json_up_to_a_version(fresh_url: str, sql_dir: Path) -> None:
    """--json prints one document; with --to only the versions up to it, then the repeatables; the rest left pending."""
    release(sql_dir)
    result = run_cli(["migrate", "--dry-run", "--json"], env_for(fresh_url, sql_dir, BOOTSTRAP_MIGRATE_TO="2"))
    assert ExitCode.NOT_UP_TO_DATE == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    assert (True, [("1_t.sql", "transactional", 2, 0), ("2_index.sql", "transactional", 1, 1),
                   ("R__view.sql", "repeatable", 1, 0)], ["3_concurrently.sql"]) == (
        doc["would_run"], [(f["name"], f["kind"], f["statements"], f["findings"]) for f in doc["files"]],
        doc["left_pending"])
    assert ["require-concurrent-index-creation"] == [f["rule"] for f in doc["lint"]["findings"]]


def test_dry_run_refuses_what_migrate_would(fresh_url: str, sql_dir: Path) -> None:
    """A changed applied file is exit 6, a pending file migrate would refuse is exit 3, as migrate gives them."""
    path = write(sql_dir, "1_t.sql", "CREATE TABLE t (id bigint);\n")
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    path.write_text("CREATE TABLE t (id int);\n")
    assert ExitCode.INTEGRITY == run_cli(["migrate", "--dry-run"], env_for(fresh_url, sql_dir)).returncode
    path.write_text("CREATE TABLE t (id bigint);\n")
    write(sql_dir, "2_bad.sql", "SELECT 1;\nCOMMIT;\n")
    result = run_cli(["migrate", "--dry-run"], env_for(fresh_url, sql_dir))
    assert ExitCode.CONFIG == result.returncode
    assert "2_bad.sql:2: COMMIT in a transactional file" in last_error(result.stderr)["error"]


def test_dry_run_with_lint_error_exits_11_after_printing(fresh_url: str, sql_dir: Path) -> None:
    """--lint error: the plan is printed, then exit 11 (what migrate would do: refuse)."""
    release(sql_dir)
    result = run_cli(["migrate", "--dry-run", "--lint", "error"], env_for(fresh_url, sql_dir))
    assert ExitCode.LINT_FINDINGS == result.returncode
    assert "2_index.sql" in result.stdout


def test_dry_run_without_a_database_fails_as_migrate(sql_dir: Path) -> None:
    """No database: the dry run waits and fails as migrate does (exit 4): it plans against the ledger."""
    release(sql_dir)
    env = env_for(f"postgresql://postgres@127.0.0.1:{free_port()}/x", sql_dir, BOOTSTRAP_WAIT_TIMEOUT="0.3")
    assert ExitCode.UNAVAILABLE == run_cli(["migrate", "--dry-run"], env).returncode


def test_usage_errors_come_before_the_database(sql_dir: Path) -> None:
    """--dry-run with --rehearse, --json alone, and --to a version with no file: exit 2 with no database at all."""
    release(sql_dir)
    env = env_for(f"postgresql://postgres@127.0.0.1:{free_port()}/x", sql_dir)
    for args, message in ((["--dry-run", "--rehearse"], "give one of them"),
                          (["--json"], "--json goes with --dry-run, --rehearse or a fleet (--tenants-query)"),
                          (["--to", "4"], "--to 4: no versioned file with version 4 in the sql directory; "
                                          "the nearest below is 3_concurrently.sql")):
        result = run_cli(["migrate", *args], env)
        assert ExitCode.USAGE == result.returncode, args
        assert message in last_error(result.stderr)["error"]
        assert "database_connect_retried" not in events(result.stderr)


# -- --to ------------------------------------------------------------------------------------


def test_to_applies_up_to_the_version_then_the_repeatables(fresh_url: str, sql_dir: Path,
                                                           db: psycopg.Connection) -> None:
    """--to 2 applies 1 and 2 and the repeatable, leaves 3 pending and says so; a later plain migrate applies 3."""
    release(sql_dir)
    result = run_cli(["migrate", "--to", "2"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    assert [(1, "1_t.sql", "versioned"), (2, "2_index.sql", "versioned"), (None, "R__view.sql", "repeatable")] == \
        ledger(db)
    left = next(e for e in logs(result.stderr) if e["event"] == "migrations_left_pending")
    assert (1, 2, "3_concurrently.sql") == (left["count"], left["to_version"], left["next"])
    again = run_cli(["migrate", "--to", "2"], env_for(fresh_url, sql_dir))
    assert "migrations_up_to_date" in events(again.stderr)
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    assert [1, 2, 3, None] == [r[0] for r in ledger(db)]


def test_to_follows_the_out_of_order_rule(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """--to an older pending version is refused (exit 6) unless --out-of-order, as any out-of-order version."""
    write(sql_dir, "2_b.sql", "CREATE TABLE b ();\n")
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    write(sql_dir, "1_a.sql", "CREATE TABLE a ();\n")
    assert ExitCode.INTEGRITY == run_cli(["migrate", "--to", "1"], env_for(fresh_url, sql_dir)).returncode
    assert 0 == run_cli(["migrate", "--to", "1", "--out-of-order"], env_for(fresh_url, sql_dir)).returncode
    assert [1, 2] == [r[0] for r in ledger(db)]


def test_rollbacks_variable_does_not_reach_migrate(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """BOOTSTRAP_ROLLBACK_TO is rollback's: a job environment carrying it does not stop migrate early."""
    release(sql_dir)
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir, BOOTSTRAP_ROLLBACK_TO="1")).returncode
    assert [1, 2, 3, None] == [r[0] for r in ledger(db)]


# -- --rehearse ------------------------------------------------------------------------------


def test_rehearsal_applies_everything_and_leaves_nothing(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Every file with its ledger row (a later file sees the earlier rows), then rolled back: no schema, ledger or lock."""
    write(sql_dir, "1_t.sql", "CREATE TABLE app.t (id bigint);\n")
    write(sql_dir, "2_sees_the_ledger.sql",
          "DO $$ BEGIN IF (SELECT count(*) FROM bootstrap.bootstrap_migrations) <> 1 THEN\n"
          "  RAISE EXCEPTION 'the first file was not recorded'; END IF; END $$;\n")
    write(sql_dir, "R__view.sql", "CREATE OR REPLACE VIEW app.v AS SELECT id FROM app.t;\n")
    result = run_cli(["migrate", "--rehearse", "--schemas", "app"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert ["ORDER", "VERSION", "RESULT", "DURATION", "FILE", "DETAIL"] == lines[0].split()
    assert [("1", "1", "passed", "1_t.sql"), ("2", "2", "passed", "2_sees_the_ledger.sql"),
            ("3", "R", "passed", "R__view.sql")] == [
        (r.split()[0], r.split()[1], r.split()[2], r.split()[5]) for r in lines[1:4]]
    assert "rolled back, nothing kept: 3 passed, 0 failed, 0 not rehearsed" == lines[-1]
    names = events(result.stderr)
    assert ["lock_acquired", "migration_rehearsed", "migration_rehearsed", "migration_rehearsed",
            "rehearsal_rolled_back", "bootstrap_completed"] == [n for n in names if not n.startswith(("lint", "data"))]
    assert [] == user_objects(db)
    assert lock_is_free(db)


def test_rehearsal_leaves_an_existing_ledger_as_it_was(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Against a migrated database: the pending files are rehearsed, the ledger's rows are exactly as before."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id bigint);\n")
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    before = db.execute("SELECT * FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    write(sql_dir, "2_c.sql", "ALTER TABLE t ADD COLUMN c text;\n")
    result = run_cli(["migrate", "--rehearse", "--json"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    assert (True, 1, [("2_c.sql", "passed")]) == (doc["rolled_back"], doc["passed"],
                                                  [(f["name"], f["outcome"]) for f in doc["files"]])
    assert isinstance(doc["files"][0]["duration_ms"], int)
    assert before == db.execute("SELECT * FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    assert ["id"] == [r[0] for r in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0").fetchall()]


def test_a_failing_file_ends_the_rehearsal_with_migrates_error(fresh_url: str, sql_dir: Path,
                                                               db: psycopg.Connection) -> None:
    """File 2 fails: exit 5 with the error migrate would give (file, line), file 3 not reached, nothing kept."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id bigint);\n")
    write(sql_dir, "2_bad.sql", "INSERT INTO t VALUES (1);\nINSERT INTO nope VALUES (1);\n")
    write(sql_dir, "3_later.sql", "CREATE TABLE later ();\n")
    result = run_cli(["migrate", "--rehearse"], env_for(fresh_url, sql_dir))
    assert ExitCode.MIGRATION_FAILED == result.returncode
    error = last_error(result.stderr)["error"]
    assert f"{sql_dir / '2_bad.sql'}:2:13: relation \"nope\" does not exist (SQLSTATE 42P01); the rehearsal was " \
           "rolled back; nothing of it was kept" == error
    rows = [line.split()[:3] for line in result.stdout.splitlines()[1:4]]
    assert [["1", "1", "passed"], ["2", "2", "failed"], ["3", "3", "not"]] == rows
    assert "not reached: 2_bad.sql failed" in result.stdout
    assert [] == user_objects(db)
    assert lock_is_free(db)


def test_rehearsal_stops_at_the_first_no_transaction_file(fresh_url: str, sql_dir: Path,
                                                          db: psycopg.Connection) -> None:
    """The no-transaction file and everything after it (the repeatables too) are listed as not rehearsed; exit 0."""
    release(sql_dir)
    result = run_cli(["migrate", "--rehearse", "--json"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    assert [("1_t.sql", "passed", None), ("2_index.sql", "passed", None),
            ("3_concurrently.sql", "not rehearsed", "no-transaction: it cannot run inside the rehearsal's transaction"),
            ("R__view.sql", "not rehearsed", "after 3_concurrently.sql, which was not rehearsed and which it may "
                                            "depend on")] == [(f["name"], f["outcome"], f["detail"]) for f in doc["files"]]
    skipped = [e["migration"] for e in logs(result.stderr) if e["event"] == "migration_rehearsal_skipped"]
    assert ["3_concurrently.sql", "R__view.sql"] == skipped
    assert [] == user_objects(db)


def test_rehearsal_up_to_a_version(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """--rehearse --to 2: versions 1 and 2, then the repeatable (rehearsable: every versioned file before it was)."""
    release(sql_dir)
    result = run_cli(["migrate", "--rehearse", "--to", "2", "--json"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    assert [("1_t.sql", "passed"), ("2_index.sql", "passed"), ("R__view.sql", "passed")] == [
        (f["name"], f["outcome"]) for f in json.loads(result.stdout)["files"]]
    assert not table_exists(db, "t")


def test_rehearsal_takes_the_migration_lock(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Never against a moving ledger: with another runner holding the lock, it waits and times out (exit 7)."""
    release(sql_dir)
    holder = held_lock(fresh_url)
    try:
        result = run_cli(["migrate", "--rehearse", "--lock-timeout", "0.5"], env_for(fresh_url, sql_dir))
    finally:
        holder.close()
    assert ExitCode.LOCK_TIMEOUT == result.returncode
    assert "migration_rehearsed" not in events(result.stderr)


def test_rehearsal_with_lint_error_refuses_before_the_lock(fresh_url: str, sql_dir: Path,
                                                           db: psycopg.Connection) -> None:
    """--lint error: findings refuse the rehearsal (exit 11) before the lock is taken."""
    release(sql_dir)
    result = run_cli(["migrate", "--rehearse", "--lint", "error"], env_for(fresh_url, sql_dir))
    assert ExitCode.LINT_FINDINGS == result.returncode
    assert "lock_acquired" not in events(result.stderr)


def test_rehearsal_with_nothing_pending(fresh_url: str, sql_dir: Path) -> None:
    """Nothing pending: nothing to rehearse, exit 0, no lock."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id bigint);\n")
    assert 0 == run_cli(["migrate"], env_for(fresh_url, sql_dir)).returncode
    result = run_cli(["migrate", "--rehearse"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode
    assert ["nothing to rehearse: every file is applied"] == result.stdout.splitlines()
    assert "lock_acquired" not in events(result.stderr)
