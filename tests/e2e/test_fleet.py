"""
Fleets in real processes on real PostgreSQL: the tenant files applied to every tenant a query lists (schemas or
databases), failures isolated, resumable, status and wait-migrated across the fleet, progress.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.helpers import Spawned, bootstrap_cmd, clean_env, events, last_error, logs, run_cli, write

QUERY = "SELECT name FROM public.tenants WHERE active ORDER BY name"


def add_tenants(db: psycopg.Connection, *names: str, create: bool = True) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS public.tenants (name text PRIMARY KEY, active bool NOT NULL DEFAULT true)")
    for name in names:
        db.execute("INSERT INTO public.tenants (name) VALUES (%s)", [name])
        if create:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))


def fleet_env(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_TENANTS_QUERY=QUERY, **extra)


def tenant_files(sql_dir: Path) -> None:
    write(sql_dir, "0001_shared.sql", "CREATE TABLE public.plans (id int PRIMARY KEY);")
    write(sql_dir, "tenant/0001_accounts.sql", "-- bootstrap:vars BOOTSTRAP_TENANT\n"
                                               "CREATE TABLE accounts (id int, tenant text DEFAULT :'BOOTSTRAP_TENANT');")
    write(sql_dir, "tenant/0002_accounts_id.sql", "CREATE INDEX accounts_id ON accounts (id);")


def ledger_of(db: psycopg.Connection, schema: str) -> list[str]:
    return [r[0] for r in db.execute(sql.SQL("SELECT name FROM {} ORDER BY id").format(
        sql.Identifier(schema, "bootstrap_migrations")))]


def test_every_tenant_gets_its_files_in_its_schema_with_its_ledger(fresh_url: str, sql_dir: Path,
                                                                   db: psycopg.Connection) -> None:
    """Shared files once, then each tenant's, search_path at the tenant, BOOTSTRAP_TENANT filled in; JSON summary."""
    add_tenants(db, "acme", "globex", "initech")
    tenant_files(sql_dir)
    result = run_cli(["migrate", "--json", "--jobs", "2"], fleet_env(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    doc = json.loads(result.stdout)
    assert ["0001_shared.sql"] == doc["shared"]["applied"]
    assert [("acme", "applied"), ("globex", "applied"), ("initech", "applied")] == [
        (t["tenant"], t["outcome"]) for t in doc["tenants"]]
    assert {"applied": 3, "current": 0, "failed": 0, "missing": 0} == doc["summary"]
    for tenant in ("acme", "globex", "initech"):
        assert ["0001_accounts.sql", "0002_accounts_id.sql"] == ledger_of(db, tenant)
        default = db.execute("SELECT column_default FROM information_schema.columns WHERE table_schema = %s "
                             "AND table_name = 'accounts' AND column_name = 'tenant'", [tenant]).fetchone()[0]
        assert f"'{tenant}'::text" == default
    assert db.execute("SELECT to_regclass('public.accounts')").fetchone()[0] is None
    summary = logs(result.stderr)[-1]
    assert (3, 3, 0) == (summary["tenants"], summary["tenants_applied"], summary["tenants_failed"])
    assert "tenant_migrated" not in events(result.stderr)  # one line per tenant only at debug level
    add_tenants(db, "umbrella")  # added after the run: the next one picks it up
    again = run_cli(["migrate", "--json"], fleet_env(fresh_url, sql_dir))
    assert 0 == again.returncode, again.stderr
    assert {"acme": "current", "globex": "current", "initech": "current", "umbrella": "applied"} == {
        t["tenant"]: t["outcome"] for t in json.loads(again.stdout)["tenants"]}


def test_a_failing_tenant_does_not_stop_the_others_and_a_rerun_resumes(fresh_url: str, sql_dir: Path,
                                                                       db: psycopg.Connection) -> None:
    """Exit 5 naming the failed tenant and its file; the others are migrated; fixed, a re-run finishes it alone."""
    add_tenants(db, "a1", "b2", "c3", "d4")
    db.execute("CREATE TABLE b2.accounts (conflict int)")
    tenant_files(sql_dir)
    env = fleet_env(fresh_url, sql_dir)
    result = run_cli(["migrate"], env)
    assert 5 == result.returncode
    error = last_error(result.stderr)
    assert error["error"].startswith("1 of 4 tenants failed (the others were migrated or current; run again to "
                                     "resume): b2: ")
    assert "0001_accounts.sql" in error["error"] and 'relation "accounts" already exists' in error["error"]
    assert (["b2"], 1) == (error["failed_tenants"], error["tenants_failed"])
    failed_line = [e for e in logs(result.stderr) if e["event"] == "tenant_failed"]
    assert ["b2"] == [e["tenant"] for e in failed_line]
    assert [] == ledger_of(db, "b2") if db.execute("SELECT to_regclass('b2.bootstrap_migrations')").fetchone()[0] \
        else True
    for tenant in ("a1", "c3", "d4"):
        assert 2 == len(ledger_of(db, tenant))
    db.execute("DROP TABLE b2.accounts")
    again = run_cli(["migrate", "--json"], env)
    assert 0 == again.returncode, again.stderr
    assert {"a1": "current", "b2": "applied", "c3": "current", "d4": "current"} == {
        t["tenant"]: t["outcome"] for t in json.loads(again.stdout)["tenants"]}


def test_a_listed_tenant_without_a_schema_is_missing_and_never_created(fresh_url: str, sql_dir: Path,
                                                                       db: psycopg.Connection) -> None:
    """The query names a schema that does not exist: outcome `missing`, a warning; the run succeeds."""
    add_tenants(db, "real")
    add_tenants(db, "ghost", create=False)
    tenant_files(sql_dir)
    result = run_cli(["migrate", "--json"], fleet_env(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    assert {"ghost": "missing", "real": "applied"} == {t["tenant"]: t["outcome"]
                                                       for t in json.loads(result.stdout)["tenants"]}
    assert db.execute("SELECT to_regnamespace('ghost')").fetchone()[0] is None
    assert ["ghost"] == [e["tenant"] for e in logs(result.stderr) if e["event"] == "tenant_missing"]
    env = fleet_env(fresh_url, sql_dir)
    status = run_cli(["status", "--exit-code"], env)  # nothing to wait for: app pods start
    assert 0 == status.returncode, status.stdout + status.stderr
    assert "2 tenants: 1 up to date, 0 behind, 1 missing (no such schema or database)" in status.stdout
    assert 0 == run_cli(["wait-migrated", "--timeout", "5"], env).returncode


def test_a_failed_tenant_names_what_was_kept_and_dry_run_names_the_tenants_behind(
        fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """The JSON lists the files applied before the failing one; --dry-run exits 8 naming the tenants behind."""
    add_tenants(db, "ok1", "bad2")
    db.execute("CREATE TABLE bad2.other (id int)")
    db.execute("CREATE INDEX accounts_id ON bad2.other (id)")  # the tenant's second file collides with it
    tenant_files(sql_dir)
    env = fleet_env(fresh_url, sql_dir)
    planned = run_cli(["migrate", "--dry-run", "--json"], env)
    assert 8 == planned.returncode, planned.stderr
    assert ["bad2", "ok1"] == sorted(json.loads(planned.stdout)["tenants_behind"])
    result = run_cli(["migrate", "--json"], env)
    assert 5 == result.returncode
    tenants = {t["tenant"]: t for t in json.loads(result.stdout)["tenants"]}
    assert ("failed", ["0001_accounts.sql"]) == (tenants["bad2"]["outcome"], tenants["bad2"]["applied"])
    assert 'relation "accounts_id" already exists' in tenants["bad2"]["error"]
    assert ["0001_accounts.sql"] == ledger_of(db, "bad2")
    planned = run_cli(["migrate", "--dry-run"], env)
    assert 8 == planned.returncode
    assert "tenants: 1 would be migrated: bad2" in planned.stdout


def test_a_bad_tenant_file_stops_the_run_before_the_shared_files(fresh_url: str, sql_dir: Path,
                                                                 db: psycopg.Connection) -> None:
    """A misnamed tenant file, or a missing tenant directory: exit 3 naming it, and nothing applied anywhere."""
    add_tenants(db, "t1")
    tenant_files(sql_dir)
    write(sql_dir, "tenant/add_widgets.sql", "CREATE TABLE widgets (id int);")
    env = fleet_env(fresh_url, sql_dir)
    result = run_cli(["migrate"], env)
    assert 3 == result.returncode
    assert "add_widgets.sql" in last_error(result.stderr)["error"]
    assert db.execute("SELECT to_regclass('public.plans')").fetchone()[0] is None
    nowhere = run_cli(["migrate", "--tenant-sql-dir", str(sql_dir / "nowhere")], env)
    assert 3 == nowhere.returncode
    assert "(set BOOTSTRAP_TENANT_SQL_DIR or --tenant-sql-dir" in last_error(nowhere.stderr)["error"]
    assert db.execute("SELECT to_regclass('public.plans')").fetchone()[0] is None


def test_status_and_wait_migrated_cover_the_fleet(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """status counts each tenant (exit 8 when one is behind); wait-migrated waits for the fleet, then exits 0."""
    add_tenants(db, "t1", "t2")
    tenant_files(sql_dir)
    env = fleet_env(fresh_url, sql_dir)
    status = run_cli(["status", "--json", "--exit-code"], env)
    assert 8 == status.returncode
    doc = json.loads(status.stdout)
    assert doc["up_to_date"] is False
    assert {"t1", "t2"} == set(doc["tenants"])
    assert 2 == doc["tenants"]["t1"]["pending"]
    assert 0 == run_cli(["migrate", "--tenants-query", "VALUES ('t1')"], env).returncode  # the flag wins
    waited = run_cli(["wait-migrated", "--timeout", "2"], env)
    assert 10 == waited.returncode
    assert "1 of 2 tenants still behind: t2;" in last_error(waited.stderr)["error"]
    with Spawned(bootstrap_cmd("wait-migrated", "--timeout", "60"), env) as waiter:
        waiter.wait_for_event("fleet_waiting")
        assert 0 == run_cli(["migrate"], env).returncode
        assert 0 == waiter.wait(60), waiter.err
    assert "fleet_ready" in [e["event"] for e in waiter.events()]
    text = run_cli(["status"], env)
    assert "2 tenants: 2 up to date, 0 behind; their files: 4 applied" in text.stdout


def test_a_long_fleet_reports_progress_every_few_seconds(fresh_url: str, sql_dir: Path,
                                                        db: psycopg.Connection) -> None:
    """In JSON logs: a fleet_progress line every 5 s with done, total and the rate; not one line per tenant."""
    add_tenants(db, *(f"slow{i}" for i in range(4)))
    write(sql_dir, "tenant/0001_slow.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(2);\n")
    result = run_cli(["migrate", "--jobs", "1"], fleet_env(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    progress = [e for e in logs(result.stderr) if e["event"] == "fleet_progress"]
    assert 1 <= len(progress) <= 2, progress
    assert all(e["total"] == 4 and 0 <= e["done"] < 4 and e["failed"] == 0 for e in progress)
    assert "eta_s" in progress[0] and "rate_per_s" in progress[0]


@pytest.fixture
def tenant_databases(admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[list[str]]:
    """Two throwaway databases, the tenants of a database fleet."""
    names = [f"bootstrap_tenant_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield names
    for name in names:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_database_tenants_each_get_the_files_and_a_ledger_inside(tenant_databases: list[str], fresh_url: str,
                                                                 sql_dir: Path, pg_base_dsn: str) -> None:
    """--tenant-kind database with a fixed list (VALUES): each database gets the files and its own ledger."""
    write(sql_dir, "tenant/0001_accounts.sql", "CREATE TABLE accounts (id int);")
    values = ", ".join(f"('{name}')" for name in tenant_databases)
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_TENANTS_QUERY=f"VALUES {values}",
                    BOOTSTRAP_TENANT_KIND="database")
    result = run_cli(["migrate", "--json"], env)
    assert 0 == result.returncode, result.stderr
    assert ["applied", "applied"] == [t["outcome"] for t in json.loads(result.stdout)["tenants"]]
    for name in tenant_databases:
        with psycopg.connect(make_conninfo(pg_base_dsn, dbname=name)) as conn:
            assert ["0001_accounts.sql"] == [r[0] for r in conn.execute(
                "SELECT name FROM bootstrap.bootstrap_migrations")]
            assert conn.execute("SELECT to_regclass('public.accounts')").fetchone()[0] is not None


def test_on_a_terminal_the_fleet_is_one_updating_line(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """On a TTY: one line rewritten in place with tenants done/total, the rate, the ETA and failures so far."""
    import os
    import pty
    import subprocess

    add_tenants(db, "p1", "p2", "p3")
    write(sql_dir, "tenant/0001_slow.sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(0.6);\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(bootstrap_cmd("migrate", "--jobs", "1"), env=fleet_env(fresh_url, sql_dir),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert 0 == proc.wait(60)
    text = screen.decode()
    assert "migrating: 0/3 tenants" in text and "migrating: 2/3 tenants" in text, text
    assert "/s, ETA " in text and " 0 failed" in text
    assert "fleet_progress" not in text


@pytest.mark.parametrize(("query", "message"), [
    ("VALUES ('public'), ('acme')", "lists 'public', which cannot be a tenant"),
    ("VALUES ('bootstrap')", "lists 'bootstrap', which cannot be a tenant"),
    ("INSERT INTO public.tenants VALUES ('zzz') RETURNING name", "cannot execute INSERT in a read-only transaction"),
    ("SELECT name, active FROM public.tenants", "must return one column of names; it returns 2"),
], ids=["public", "ledger-schema", "writes", "two-columns"])
def test_a_query_that_cannot_list_tenants_is_exit_3_and_changes_nothing(
        query: str, message: str, fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Shared schemas are not tenants; a query that writes is refused in its read-only transaction, not committed."""
    add_tenants(db, "acme")
    tenant_files(sql_dir)
    result = run_cli(["migrate", "--tenants-query", query], fleet_env(fresh_url, sql_dir))
    assert 3 == result.returncode
    assert message in last_error(result.stderr)["error"]
    assert ["acme"] == [r[0] for r in db.execute("SELECT name FROM public.tenants")]
    assert db.execute("SELECT to_regclass('acme.accounts')").fetchone()[0] is None


def test_a_query_whose_tenants_all_do_not_exist_is_exit_3(fresh_url: str, sql_dir: Path,
                                                          db: psycopg.Connection) -> None:
    """Every listed tenant missing (a query naming the wrong column): a configuration error, not a success."""
    add_tenants(db, "acme")
    tenant_files(sql_dir)
    result = run_cli(["migrate", "--tenants-query", "SELECT 'x_' || name FROM public.tenants"],
                     fleet_env(fresh_url, sql_dir))
    assert 3 == result.returncode
    assert "none of the 1 tenants the query lists exists as a schema" in last_error(result.stderr)["error"]


def test_an_unset_variable_of_a_tenant_file_stops_the_run_before_anything(fresh_url: str, sql_dir: Path,
                                                                          db: psycopg.Connection) -> None:
    """Checked with the tenant files, before the shared files run: exit 3 naming the file, line and variable."""
    add_tenants(db, "acme")
    tenant_files(sql_dir)
    write(sql_dir, "tenant/0003_key.sql", "-- bootstrap:vars API_KEY\nSELECT :'API_KEY';\n")
    result = run_cli(["migrate"], fleet_env(fresh_url, sql_dir))
    assert 3 == result.returncode
    error = last_error(result.stderr)["error"]
    assert f"{sql_dir / 'tenant' / '0003_key.sql'}:2:8: API_KEY is not set" in error
    assert db.execute("SELECT to_regclass('public.plans')").fetchone()[0] is None
