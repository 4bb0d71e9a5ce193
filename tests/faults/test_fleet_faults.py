"""
Fleets under faults, on real PostgreSQL: a runner killed with SIGKILL mid-fleet and run again, two runners racing
over one fleet, a tenant dropped during a run. Each tenant file records that it ran in a table outside the
tenants (its own transaction with the file), so "no tenant migrated twice, none half-done" is counted, not assumed.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from tests.helpers import Spawned, bootstrap_cmd, clean_env, poll, run_cli, write

QUERY = "SELECT name FROM public.tenants ORDER BY name"


def fleet(db: psycopg.Connection, sql_dir: Path, count: int, *, sleep: float = 0.0) -> list[str]:
    """`count` tenant schemas and two tenant files, each noting in public.ran that it ran (in its transaction)."""
    names = [f"tenant_{i:03d}" for i in range(count)]
    db.execute("CREATE TABLE public.tenants (name text PRIMARY KEY)")
    db.execute("CREATE TABLE public.ran (tenant text, file text, pid int DEFAULT pg_backend_pid())")
    for name in names:
        db.execute("INSERT INTO public.tenants VALUES (%s)", [name])
        db.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    write(sql_dir, "tenant/0001_a.sql", "-- bootstrap:vars BOOTSTRAP_TENANT\nCREATE TABLE a (id int);\n"
                                        f"SELECT pg_sleep({sleep});\n"
                                        "INSERT INTO public.ran (tenant, file) VALUES (:'BOOTSTRAP_TENANT', 'a');")
    write(sql_dir, "tenant/0002_b.sql", "-- bootstrap:vars BOOTSTRAP_TENANT\nCREATE TABLE b (id int);\n"
                                        "INSERT INTO public.ran (tenant, file) VALUES (:'BOOTSTRAP_TENANT', 'b');")
    return names


def each_ran_once(db: psycopg.Connection, names: list[str]) -> None:
    """Every tenant: both files ran exactly once, its ledger says so, and its tables are there."""
    ran = db.execute("SELECT tenant, file, count(*) FROM public.ran GROUP BY 1, 2").fetchall()
    assert {(name, f, 1) for name in names for f in ("a", "b")} == set(ran)
    for name in names:
        rows = db.execute(sql.SQL("SELECT name FROM {} ORDER BY version").format(
            sql.Identifier(name, "bootstrap_migrations"))).fetchall()
        assert [("0001_a.sql",), ("0002_b.sql",)] == rows, name
        assert db.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                          [f"{name}.a", f"{name}.b"]).fetchone()[0]


def env_for(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_TENANTS_QUERY=QUERY, **extra)


def test_a_runner_killed_mid_fleet_leaves_nothing_half_done_and_a_rerun_finishes(
        fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """SIGKILL while tenants are being migrated: the files in flight roll back; the re-run does the rest, once."""
    names = fleet(db, sql_dir, 24, sleep=0.2)
    env = env_for(fresh_url, sql_dir, BOOTSTRAP_JOBS="3")
    with Spawned(bootstrap_cmd("migrate"), env) as runner:
        poll(lambda: db.execute("SELECT count(DISTINCT tenant) FROM public.ran").fetchone()[0] >= 6,
             timeout=120, message="a few tenants migrated")
        runner.proc.send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == runner.wait(30)
    finished = {r[0] for r in db.execute("SELECT tenant FROM public.ran GROUP BY 1 HAVING count(*) = 2")}
    assert 0 < len(finished) < len(names)
    again = run_cli(["migrate", "--json"], env)
    assert 0 == again.returncode, again.stderr
    outcomes = {t["tenant"]: t["outcome"] for t in json.loads(again.stdout)["tenants"]}
    assert {name: "current" if name in finished else "applied" for name in names} == outcomes
    each_ran_once(db, names)


def test_two_runners_racing_over_one_fleet_do_each_tenant_once(fresh_url: str, sql_dir: Path,
                                                               db: psycopg.Connection) -> None:
    """Both succeed; every tenant applied by exactly one of them; the other reports it current."""
    names = fleet(db, sql_dir, 30, sleep=0.05)
    env = env_for(fresh_url, sql_dir, BOOTSTRAP_JOBS="3")
    procs = [subprocess.Popen(bootstrap_cmd("migrate", "--json"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(300), *p.communicate()) for p in procs]
    assert [0, 0] == [code for code, _out, _err in results], [err[-2000:] for _c, _o, err in results]
    docs = [{t["tenant"]: t["outcome"] for t in json.loads(out)["tenants"]} for _code, out, _err in results]
    for name in names:
        assert sorted([docs[0][name], docs[1][name]]) == ["applied", "current"], name
    assert 0 < sum(1 for o in docs[0].values() if o == "applied") < len(names)  # both did some of the work
    each_ran_once(db, names)


def test_a_tenant_dropped_during_the_run_is_reported_missing(fresh_url: str, sql_dir: Path,
                                                             db: psycopg.Connection) -> None:
    """Dropped before its turn: outcome `missing`, never re-created; every other tenant applied; exit 0."""
    names = fleet(db, sql_dir, 6, sleep=0.5)
    env = env_for(fresh_url, sql_dir, BOOTSTRAP_JOBS="1")
    with Spawned(bootstrap_cmd("migrate", "--json"), env) as runner:
        poll(lambda: db.execute("SELECT count(*) FROM public.ran").fetchone()[0] >= 1, timeout=60,
             message="the first tenant migrated")
        db.execute("DROP SCHEMA tenant_005 CASCADE")
        assert 0 == runner.wait(120), runner.err
    outcomes = {t["tenant"]: t["outcome"] for t in json.loads(runner.out)["tenants"]}
    assert {**{n: "applied" for n in names[:5]}, "tenant_005": "missing"} == outcomes
    assert db.execute("SELECT to_regnamespace('tenant_005')").fetchone()[0] is None
    each_ran_once(db, names[:5])


def test_sigterm_mid_fleet_stops_every_worker_and_keeps_nothing_half_done(fresh_url: str, sql_dir: Path,
                                                                         db: psycopg.Connection) -> None:
    """SIGTERM: exit 143 within seconds, the files in flight cancelled and rolled back, no connection left behind."""
    names = fleet(db, sql_dir, 12, sleep=30)
    env = env_for(fresh_url, sql_dir, BOOTSTRAP_JOBS="3")
    with Spawned(bootstrap_cmd("migrate"), env) as runner:
        poll(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(30)%%' "
                                "AND pid <> pg_backend_pid()").fetchone()[0] == 3, timeout=60,
             message="three tenants in flight")
        runner.proc.send_signal(signal.SIGTERM)
        assert 143 == runner.wait(20)
    assert "bootstrap_interrupted" == [e["event"] for e in runner.events()][-1]
    assert 0 == db.execute("SELECT count(*) FROM public.ran").fetchone()[0]
    for name in names:
        assert db.execute("SELECT to_regclass(%s)", [f"{name}.a"]).fetchone()[0] is None
    poll(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchone()[0] == 0, timeout=20,
         message="every worker's connection closed")


def test_a_tenant_whose_lock_another_session_keeps_fails_alone(fresh_url: str, sql_dir: Path,
                                                               db: psycopg.Connection) -> None:
    """Its lock held past --lock-timeout: that tenant is failed (named, exit 5), every other one migrated."""
    from bootstrap.pg import advisory_key

    names = fleet(db, sql_dir, 4)
    with psycopg.connect(fresh_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [advisory_key("tenant_002", "bootstrap_migrations")])
        result = run_cli(["migrate", "--json", "--lock-timeout", "2"], env_for(fresh_url, sql_dir))
    assert 5 == result.returncode
    outcomes = {t["tenant"]: (t["outcome"], t["error"]) for t in json.loads(result.stdout)["tenants"]}
    assert "failed" == outcomes["tenant_002"][0] and "held the migration lock" in outcomes["tenant_002"][1]
    assert {n: "applied" for n in names if n != "tenant_002"} == {n: o for n, (o, _e) in outcomes.items()
                                                                  if n != "tenant_002"}
    each_ran_once(db, [n for n in names if n != "tenant_002"])
