"""`bootstrap lint` and the lint `migrate` runs first, in real processes: findings, exit codes, without squawk."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psycopg

from bootstrap.errors import ExitCode
from pgcluster import free_port
from tests.helpers import clean_env, events, last_error, ledger, logs, run_cli, user_objects, write

INDEX = "CREATE INDEX t_id ON t (id);\n"  # an index without CONCURRENTLY on an existing table: a finding
TABLE = "CREATE TABLE t (id bigint);\n"


def env_for(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """bootstrap's environment for these tests."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), **extra)


def nowhere() -> str:
    """A database URL nothing answers at."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/x"


def test_lint_without_a_database_lints_every_file(sql_dir: Path) -> None:
    """CI before a deploy: no database; every file is linted, findings name file, line, rule and help; exit 11."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", "-- the index\n" + INDEX)
    result = run_cli(["lint"], env_for(nowhere(), sql_dir))
    assert ExitCode.LINT_FINDINGS == result.returncode, result.stderr
    assert [f"{sql_dir / '2_index.sql'}:2:1: require-concurrent-index-creation (warning): During normal index "
            "creation, table updates are blocked, but reads are still allowed.",
            "    help: Use `concurrently` to avoid blocking writes.", "",
            "1 lint finding in 2 files linted (all (no database))"] == result.stdout.splitlines()
    names = events(result.stderr)
    assert ["lint_offline", "lint_finding_reported", "lint_completed", "bootstrap_failed"] == names
    assert "1 lint finding in 1 file: " in last_error(result.stderr)["error"]


def test_lint_lints_the_pending_files_unless_all(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """With a database: only the pending files, squawk told the server's version; --all lints every file."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", INDEX)
    assert 0 == run_cli(["migrate", "--lint", "off"], env_for(fresh_url, sql_dir)).returncode
    write(sql_dir, "3_clean.sql", "ALTER TABLE t ADD COLUMN c text;\n")
    result = run_cli(["lint", "--json"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    server = db.info.server_version
    assert (True, "pending", server, ["3_clean.sql"], []) == (doc["clean"], doc["scope"], doc["server_version"],
                                                               doc["files"], doc["findings"])
    assert sorted(doc["excluded"]) == ["require-lock-timeout", "require-statement-timeout"]
    result = run_cli(["lint", "--all", "--json"], env_for(fresh_url, sql_dir))
    assert ExitCode.LINT_FINDINGS == result.returncode
    doc = json.loads(result.stdout)
    assert ("all", [("2_index.sql", 1, 1, "require-concurrent-index-creation")]) == (
        doc["scope"], [(f["migration"], f["line"], f["column"], f["rule"]) for f in doc["findings"]])


def test_lint_changes_nothing(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """lint reads the ledger and nothing else: no ledger, no schema is created."""
    write(sql_dir, "1_t.sql", TABLE)
    result = run_cli(["lint", "--schemas", "app"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    assert [] == user_objects(db)


def test_an_unknown_lint_ignore_rule_fails_lint_and_never_a_deploy(fresh_url: str, sql_dir: Path) -> None:
    """A rule squawk does not know: `lint` (CI) exits 3 naming it; status and migrate go on, migrate warns."""
    write(sql_dir, "1_t.sql", "-- bootstrap:lint-ignore require-concurrent-index-creaton\n" + TABLE)
    result = run_cli(["lint"], env_for(nowhere(), sql_dir))
    assert ExitCode.CONFIG == result.returncode
    assert (f"bootstrap:lint-ignore names rules squawk does not know: {sql_dir / '1_t.sql'}: "
            "require-concurrent-index-creaton (did you mean require-concurrent-index-creation?)"
            ) == last_error(result.stderr)["error"]
    for args in (["status"], ["migrate", "--lint", "off"], ["status", "--exit-code"]):
        assert ExitCode.OK == run_cli(args, env_for(fresh_url, sql_dir)).returncode, args
    write(sql_dir, "2_t.sql", "-- bootstrap:lint-ignore no-such-rule\nSELECT 1;\n")
    migrated = run_cli(["migrate"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == migrated.returncode, migrated.stderr
    assert "lint_ignore_unknown" in events(migrated.stderr)


def test_migrate_logs_findings_before_the_lock(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """migrate lints what it is about to apply, warns before taking the lock, then applies (--lint warn, the default)."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", INDEX)
    result = run_cli(["migrate"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    names = events(result.stderr)
    assert names.index("lint_completed") < names.index("lock_acquired")
    finding = next(e for e in logs(result.stderr) if e["event"] == "lint_finding_reported")
    assert ("warning", "2_index.sql", 1, "require-concurrent-index-creation", "Use `concurrently` to avoid blocking "
            "writes.") == (finding["level"], finding["migration"], finding["line"], finding["rule"], finding["help"])
    assert [1, 2] == [r[0] for r in ledger(db)]


def test_lint_error_refuses_before_anything_changes(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """BOOTSTRAP_LINT=error: findings refuse the run (exit 11) before the lock: no lock, no schema, no ledger."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", INDEX)
    result = run_cli(["migrate"], env_for(fresh_url, sql_dir, BOOTSTRAP_LINT="error", BOOTSTRAP_SCHEMAS="app"))
    assert ExitCode.LINT_FINDINGS == result.returncode, result.stderr
    assert "lock_acquired" not in events(result.stderr)
    assert "1 lint finding in 1 file, nothing was changed: " in last_error(result.stderr)["error"]
    assert [] == user_objects(db)


def test_run_with_lint_error_refuses_before_exec(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`run --lint error`: refused before migrating, so the app never starts."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", INDEX)
    result = run_cli(["run", "--lint", "error", "--", "echo", "started"], env_for(fresh_url, sql_dir))
    assert ExitCode.LINT_FINDINGS == result.returncode
    assert "" == result.stdout
    assert [] == ledger(db)


def test_silenced_findings_are_logged(fresh_url: str, sql_dir: Path) -> None:
    """A file that silences its findings says so in the log (which rules, how many); nothing is reported for it."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", "-- reviewed: t is tiny\n-- bootstrap:lint-ignore require-concurrent-index-creation\n"
          + INDEX)
    result = run_cli(["migrate", "--lint", "error"], env_for(fresh_url, sql_dir))
    assert ExitCode.OK == result.returncode, result.stderr
    silenced = [e for e in logs(result.stderr) if e["event"] == "lint_findings_silenced"]
    assert [("2_index.sql", ["require-concurrent-index-creation"], 1)] == [
        (e["migration"], e["rules"], e["findings"]) for e in silenced]
    assert "lint_finding_reported" not in events(result.stderr)


def test_lint_off_and_nothing_to_do_run_no_lint(fresh_url: str, sql_dir: Path) -> None:
    """--lint off lints nothing; a start with nothing pending does not lint either."""
    write(sql_dir, "1_t.sql", TABLE)
    write(sql_dir, "2_index.sql", INDEX)
    first = run_cli(["migrate", "--lint", "off"], env_for(fresh_url, sql_dir))
    assert [] == [e for e in events(first.stderr) if e.startswith("lint_")]
    again = run_cli(["migrate"], env_for(fresh_url, sql_dir))
    assert ["database_ready", "migrations_up_to_date", "bootstrap_completed"] == events(again.stderr)


def test_without_squawk(without_squawk: tuple[list[str], dict[str, str]], fresh_url: str, sql_dir: Path,
                        db: psycopg.Connection) -> None:
    """
    Without the lint extra: `lint` and `--lint error` exit 3 naming the install command, before
    anything changes; the default `--lint warn` logs one lint_skipped line and migrates.
    """
    argv, base = without_squawk
    write(sql_dir, "1_t.sql", TABLE)
    env = {**base, "DATABASE_URL": fresh_url, "BOOTSTRAP_SQL_DIR": str(sql_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    for args in (["lint"], ["migrate", "--lint", "error"]):
        result = run(*args)
        assert ExitCode.CONFIG == result.returncode, result.stderr
        assert "pip install squawk-cli==2.70.0" in last_error(result.stderr)["error"]
    assert [] == user_objects(db)
    result = run("migrate")
    assert ExitCode.OK == result.returncode, result.stderr
    skipped = [e for e in logs(result.stderr) if e["event"] == "lint_skipped"]
    assert 1 == len(skipped)
    assert "squawk, the linter, is not installed" in skipped[0]["reason"]
    assert [(1, "1_t.sql", "versioned")] == ledger(db)
