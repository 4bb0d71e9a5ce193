"""
Rolling updates and rollbacks: an older image starts against a database a newer
release migrated. Future versions are left alone, and so are the repeatables
the newer release wrote; `status` shows them as `future`.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.helpers import clean_env, events, last_error, ledger, logs, run_cli, write

NEW_VIEW = "CREATE OR REPLACE VIEW v AS SELECT id, email FROM accounts;"
OLD_VIEW = "CREATE OR REPLACE VIEW v AS SELECT id FROM accounts;"


@pytest.fixture
def releases(tmp_path: Path) -> tuple[Path, Path]:
    """The sql/ of release 1 (files 1-2 and a view) and of release 2 (adds 3 and widens the view)."""
    old, new = tmp_path / "release1", tmp_path / "release2"
    for folder in (old, new):
        write(folder, "1_accounts.sql", "CREATE TABLE accounts (id int);")
        write(folder, "2_seed.sql", "INSERT INTO accounts VALUES (1);")
    write(old, "R__views.sql", OLD_VIEW)
    write(new, "3_email.sql", "ALTER TABLE accounts ADD COLUMN email text;")
    write(new, "R__views.sql", NEW_VIEW)
    return old, new


def env(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """bootstrap's environment for one release."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_LOG_FORMAT="json", **extra)


def view_columns(db: psycopg.Connection) -> list[str]:
    """The view's columns, as the last repeatable left it."""
    return [r[0] for r in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'v'::regclass AND attnum > 0 ORDER BY attnum").fetchall()]


def test_an_older_image_starts_against_a_newer_database(fresh_url: str, releases: tuple[Path, Path],
                                                        db: psycopg.Connection) -> None:
    """`rollout undo`: release 1 migrates (exit 0), warns about version 3, leaves release 2's view as it is."""
    old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    before = db.execute("SELECT id, version, checksum, applied_at FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    result = run_cli(["migrate"], env(fresh_url, old))
    assert 0 == result.returncode, result.stderr
    lines = {e["event"]: e for e in logs(result.stderr)}
    assert (1, 3) == (lines["migrations_future"]["count"], lines["migrations_future"]["newest"])
    assert "warning" == lines["migrations_future"]["level"]
    assert ("R__views.sql", 3) == (lines["repeatable_skipped"]["migration"], lines["repeatable_skipped"]["after_version"])
    assert ["id", "email"] == view_columns(db)
    assert before == db.execute("SELECT id, version, checksum, applied_at FROM bootstrap.bootstrap_migrations ORDER BY id").fetchall()
    assert 0 == run_cli(["run", "--", "true"], env(fresh_url, old)).returncode


def test_status_shows_future_and_stays_up_to_date(fresh_url: str, releases: tuple[Path, Path]) -> None:
    """status: `future` for version 3 and the view; --exit-code does not count them (exit 0)."""
    old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    result = run_cli(["status", "--json", "--exit-code"], env(fresh_url, old))
    assert 0 == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    assert {"1_accounts.sql": "applied", "2_seed.sql": "applied", "3_email.sql": "future",
            "R__views.sql": "future"} == {m["name"]: m["state"] for m in doc["migrations"]}
    assert (True, 2) == (doc["up_to_date"], doc["summary"]["future"])
    table = run_cli(["status"], env(fresh_url, old)).stdout
    assert "future   3_email.sql" in table and "applied by a newer release; left as it is" in table


def test_future_versions_can_be_refused(fresh_url: str, releases: tuple[Path, Path], db: psycopg.Connection) -> None:
    """--refuse-future (or BOOTSTRAP_REFUSE_FUTURE=1): exit 6 naming the version, nothing changed."""
    old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    result = run_cli(["migrate", "--refuse-future"], env(fresh_url, old))
    assert 6 == result.returncode
    assert "3_email.sql (version 3) was applied by a newer release" in last_error(result.stderr)["error"]
    assert 6 == run_cli(["migrate"], env(fresh_url, old, BOOTSTRAP_REFUSE_FUTURE="1")).returncode
    assert 8 == run_cli(["status", "--exit-code", "--refuse-future"], env(fresh_url, old)).returncode
    assert ["id", "email"] == view_columns(db)


def test_a_gap_below_the_newest_file_is_still_an_error(fresh_url: str, releases: tuple[Path, Path]) -> None:
    """A version missing below the newest local file is not future: exit 6 as before."""
    _old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    (new / "2_seed.sql").unlink()
    result = run_cli(["migrate"], env(fresh_url, new))
    assert 6 == result.returncode
    assert "2_seed.sql (version 2) was applied but its file is missing" in last_error(result.stderr)["error"]


def test_same_versions_reapply_the_images_repeatable(fresh_url: str, releases: tuple[Path, Path],
                                                     db: psycopg.Connection) -> None:
    """Two images with the same versions: the one that starts re-applies its repeatable (nothing is future)."""
    old, _new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, old)).returncode
    (old / "R__views.sql").write_text(NEW_VIEW.replace("id, email", "id, id AS n"))
    result = run_cli(["migrate"], env(fresh_url, old))
    assert 0 == result.returncode
    assert "repeatable_applied" in events(result.stderr) and "migrations_future" not in events(result.stderr)
    assert ["id", "n"] == view_columns(db)
    assert [(1, "1_accounts.sql", "versioned"), (2, "2_seed.sql", "versioned"), (None, "R__views.sql", "repeatable")] \
        == ledger(db)


def test_a_release_that_changes_only_a_repeatable_is_warned(fresh_url: str, releases: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    """
    Release 3 widens the view but brings no versioned file: an older image could not
    tell it is older, so migrate says so (and applies it); with a no-op versioned
    file the warning goes, and an older image skips the view.
    """
    _old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    third = tmp_path / "release3"
    for name in ("1_accounts.sql", "2_seed.sql", "3_email.sql"):
        write(third, name, (new / name).read_text())
    write(third, "R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT id, email, 1 AS n FROM accounts;")
    result = run_cli(["migrate"], env(fresh_url, third))
    assert 0 == result.returncode, result.stderr
    warned = {e["event"]: e for e in logs(result.stderr)}["repeatables_without_version"]
    assert (["R__views.sql"], "warning") == (warned["migrations"], warned["level"])
    write(third, "R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT id, email, 2 AS n FROM accounts;")
    write(third, "4_release3.sql", "SELECT 1;")
    result = run_cli(["migrate"], env(fresh_url, third))
    assert "repeatables_without_version" not in events(result.stderr)
    assert "repeatable_skipped" in events(run_cli(["migrate"], env(fresh_url, new)).stderr)


def test_a_repeatable_applied_for_the_first_time_is_not_warned(fresh_url: str, tmp_path: Path) -> None:
    """After a baseline (or a rollback, which forgets the repeatables), a first apply is no release-only change."""
    sql_dir = tmp_path / "sql"
    write(sql_dir, "1_accounts.sql", "CREATE TABLE accounts (id int);")
    write(sql_dir, "R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS id;")
    assert 0 == run_cli(["baseline", "--version", "1"], env(fresh_url, sql_dir)).returncode
    result = run_cli(["migrate"], env(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    assert "repeatable_applied" in events(result.stderr)
    assert "repeatables_without_version" not in events(result.stderr)


def test_an_empty_sql_directory_against_applied_versions_is_a_configuration_error(
        fresh_url: str, releases: tuple[Path, Path], tmp_path: Path, db: psycopg.Connection) -> None:
    """No versioned file while the ledger holds versions: exit 3 naming the directory (not 'all future', exit 0)."""
    _old, new = releases
    assert 0 == run_cli(["migrate"], env(fresh_url, new)).returncode
    empty = tmp_path / "empty"
    empty.mkdir()
    for args in (["migrate"], ["run", "--", "true"], ["status", "--exit-code"], ["wait-migrated"]):
        result = run_cli(args, env(fresh_url, empty))
        assert 3 == result.returncode, (args, result.stderr)
        assert f"the migrations directory {empty} holds no versioned file" in last_error(result.stderr)["error"]
    other = tmp_path / "other-db"
    other.mkdir()
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE empty_dir_against_empty_ledger")
    try:
        assert 0 == run_cli(["migrate"], env(fresh_url.rsplit("/", 1)[0] + "/empty_dir_against_empty_ledger",
                                            other)).returncode
    finally:
        with psycopg.connect(fresh_url, autocommit=True) as conn:
            conn.execute("DROP DATABASE empty_dir_against_empty_ledger WITH (FORCE)")
