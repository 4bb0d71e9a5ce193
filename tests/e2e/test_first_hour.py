"""
What a new user meets in the first hour, in real processes: a database that does not exist yet, files whose
names are almost migrations, lint noise, familiar names from other tools, `--help`.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.helpers import bootstrap_cmd, clean_env, events, last_error, ledger, logs, run_cli, write


@pytest.fixture
def missing_db(admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[tuple[str, str]]:
    """The name and URL of a database that does not exist (dropped afterwards if a test created it)."""
    name = f"bootstrap_new_{uuid.uuid4().hex[:10]}"
    yield name, make_conninfo(pg_base_dsn, dbname=name)
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def exists(admin: psycopg.Connection, name: str) -> bool:
    return bool(admin.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0])


def test_a_missing_database_is_exit_3_with_the_way_to_create_it(missing_db: tuple[str, str], sql_dir: Path,
                                                                 admin: psycopg.Connection) -> None:
    """Without --create-database: exit 3 at once, naming createdb and --create-database; nothing created."""
    name, url = missing_db
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["migrate"], clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 3 == result.returncode
    error = last_error(result.stderr)["error"]
    assert f'database "{name}" does not exist' in error
    assert f"createdb {name}" in error and "--create-database (BOOTSTRAP_CREATE_DATABASE=1)" in error
    assert "database_connect_retried" not in events(result.stderr)
    assert not exists(admin, name)


def test_create_database_creates_it_then_migrates(missing_db: tuple[str, str], sql_dir: Path,
                                                  admin: psycopg.Connection) -> None:
    """`migrate --create-database` creates the database, applies the files; the next run finds it."""
    name, url = missing_db
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    first = run_cli(["migrate", "--create-database"], env)
    assert 0 == first.returncode, first.stderr
    created = [e for e in logs(first.stderr) if e["event"] == "database_created"]
    assert [name] == [e["dbname"] for e in created]
    with psycopg.connect(url) as conn:
        assert ["1_t.sql"] == [row[1] for row in ledger(conn)]
    again = run_cli(["migrate"], clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir),
                                           BOOTSTRAP_CREATE_DATABASE="1"))
    assert 0 == again.returncode, again.stderr
    assert "database_created" not in events(again.stderr)


def test_racing_runners_create_the_database_once(missing_db: tuple[str, str], sql_dir: Path) -> None:
    """Three replicas with BOOTSTRAP_CREATE_DATABASE=1 start at once: one creates it, all migrate and succeed."""
    _, url = missing_db
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_CREATE_DATABASE="1")
    procs = [subprocess.Popen(bootstrap_cmd("migrate"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [(p.wait(120), p.communicate()[1]) for p in procs]
    assert [0, 0, 0] == [code for code, _ in results], [err for _, err in results]
    assert 1 == sum(events(err).count("database_created") for _, err in results)
    with psycopg.connect(url) as conn:
        assert 1 == len(ledger(conn))


def test_create_database_without_the_right_says_to_grant_createdb(missing_db: tuple[str, str], sql_dir: Path,
                                                                  admin: psycopg.Connection,
                                                                  pg_base_dsn: str) -> None:
    """A role without CREATEDB: exit 3 naming the role, the database and the GRANT that fixes it."""
    name, _ = missing_db
    role = f"bootstrap_nocreatedb_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEDB").format(sql.Identifier(role)))
    try:
        result = run_cli(["migrate", "--create-database"],
                         clean_env(DATABASE_URL=make_conninfo(pg_base_dsn, dbname=name, user=role),
                                   BOOTSTRAP_SQL_DIR=str(sql_dir)))
    finally:
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert 3 == result.returncode
    error = last_error(result.stderr)["error"]
    assert f"role {role} may not create database {name}" in error and "grant it CREATEDB" in error
    assert not exists(admin, name)


@pytest.mark.parametrize("name", ["0002_add_col.sq", "0004_x.sql.bak", "R__views.psql", "0005_x.sql~"])
def test_a_file_named_almost_like_a_migration_is_warned_about(name: str, fresh_url: str, sql_dir: Path) -> None:
    """A mistyped extension never runs, and migrate and status say so naming the file (the rest runs)."""
    write(sql_dir, "0001_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, name, "ALTER TABLE t ADD COLUMN c int;")
    write(sql_dir, "notes.txt", "not a migration, not warned about")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    for command in (["migrate"], ["status"]):
        result = run_cli(command, env)
        assert 0 == result.returncode, result.stderr
        ignored = [e for e in logs(result.stderr) if e["event"] == "migration_file_ignored"]
        assert [str(sql_dir / name)] == [e["file"] for e in ignored], command
        assert "warning" == ignored[0]["level"] and "never runs" in ignored[0]["reason"]


def test_an_uppercase_extension_is_refused_naming_the_file(fresh_url: str, sql_dir: Path) -> None:
    """`0003_x.SQL` would be a migration on a case-insensitive file system: refused, exit 3, before any change."""
    write(sql_dir, "0001_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "0003_x.SQL", "ALTER TABLE t ADD COLUMN c int;")
    result = run_cli(["migrate"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 3 == result.returncode
    assert f"{sql_dir / '0003_x.SQL'}: not a migration file name; the extension must be lowercase .sql" == (
        last_error(result.stderr)["error"])
    assert "database_ready" not in events(result.stderr)


def test_migrate_warns_about_locks_not_style_and_lint_reports_both(fresh_url: str, sql_dir: Path) -> None:
    """An `integer` column is a style finding: `lint` reports it, `migrate` does not; a blocking index it does."""
    write(sql_dir, "0001_orders.sql", "CREATE TABLE orders (id bigint PRIMARY KEY, price_cents integer);")
    write(sql_dir, "0002_index.sql", "CREATE INDEX orders_price ON orders (price_cents);")
    migrated = run_cli(["migrate"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 0 == migrated.returncode, migrated.stderr
    warned = {e["rule"] for e in logs(migrated.stderr) if e["event"] == "lint_finding_reported"}
    assert "require-concurrent-index-creation" in warned
    assert "prefer-bigint-over-int" not in warned
    linted = run_cli(["lint", "--all", "--json"], clean_env(BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 11 == linted.returncode
    rules = {f["rule"] for f in json.loads(linted.stdout)["findings"]}
    assert {"prefer-bigint-over-int", "require-concurrent-index-creation"} <= rules


def test_familiar_names_work(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`create`, `up --url`, `down`: dbmate's and goose's verbs do what bootstrap's do."""
    env = clean_env(BOOTSTRAP_SQL_DIR=str(sql_dir))
    created = run_cli(["create", "add accounts", "--down"], env)
    assert 0 == created.returncode, created.stderr
    (up_file,) = sql_dir.glob("*_add_accounts.sql")
    up_file.write_text("CREATE TABLE accounts (id int);\n")
    (down_file,) = sql_dir.glob("*_add_accounts.down.sql")
    down_file.write_text("DROP TABLE accounts;\n")
    up = run_cli(["up", "--url", fresh_url], env)
    assert 0 == up.returncode, up.stderr
    assert [up_file.name] == [row[1] for row in ledger(db)]
    down = run_cli(["down", "--url", fresh_url], env)
    assert 0 == down.returncode, down.stderr
    assert [] == ledger(db)
    assert db.execute("SELECT to_regclass('accounts')").fetchone()[0] is None


@pytest.mark.parametrize(("typed", "pointer"), [("version", "bootstrap --version"), ("init", "bootstrap new"),
                                                ("dump", "pg_dump --schema-only")])
def test_another_tools_verb_gets_a_pointer(typed: str, pointer: str) -> None:
    """A verb bootstrap does not have, but other tools do, is exit 2 with what to use instead."""
    result = run_cli([typed], clean_env())
    assert 2 == result.returncode
    error = last_error(result.stderr)["error"]
    assert f"No such command '{typed}'" in error and pointer in error
