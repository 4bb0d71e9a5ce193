"""
The api-gateway and a Prisma service on one PostgreSQL database (issue 20): the
gateway exactly as the README starts it (`BOOTSTRAP_SCHEMAS=financial python -m
bootstrap run -- CMD`, this repository's sql/, the default ledger), the users
service's real `prisma migrate deploy` (examples/prisma-users), in every start
order, with one URL, with separate roles, and through Prisma's later migrations.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import events
from tests.prisma.services import (
    EXAMPLE,
    INIT,
    PRISMA_PARAMS,
    Finished,
    Gateway,
    PrismaService,
    connect,
    foreign_keys_to_users,
    ledger_versions,
    prisma_migrations,
    schema_snapshot,
    tables_in,
    url_of,
    versioned_files,
)

pytestmark = pytest.mark.prisma

LEDGER = "bootstrap.bootstrap_migrations"  # the default ledger, out of Prisma's schema
EARLIER_RELEASE = Path(__file__).parent / "release_before_fix"
# A routine Prisma migration that rebuilds users' primary key, as `prisma migrate dev` writes it.
REBUILD_PKEY = ("20261202000000_rebuild_users_pkey", '-- AlterTable\nALTER TABLE "users" DROP CONSTRAINT "users_pkey",\n'
                'ADD CONSTRAINT "users_pkey" PRIMARY KEY ("id");\n')
ORDERS = ["gateway-first", "users-first"]


def ok(result: Finished) -> Finished:
    """The process succeeded (else: fail showing what it printed)."""
    assert 0 == result.returncode, str(result)
    return result


def start_in_order(order: str, gateway: Gateway, prisma: PrismaService, gateway_url: str, prisma_url: str) -> None:
    """Start the gateway and the users service one after the other, each to its end; both must succeed."""
    steps = {"gateway": lambda: gateway.run(gateway_url), "prisma": lambda: prisma.deploy(prisma_url)}
    for name in (["gateway", "prisma"] if order == "gateway-first" else ["prisma", "gateway"]):
        ok(steps[name]())


def start_together(gateway: Gateway, prisma: PrismaService, gateway_url: str, prisma_url: str,
                   prisma_first: bool = False) -> list[Finished]:
    """Start both at the same moment (one launched right after the other); both run to their end."""
    if prisma_first:
        users = prisma.start(prisma_url)
        gate = gateway.start(gateway_url)
    else:
        gate = gateway.start(gateway_url)
        users = prisma.start(prisma_url)
    return [gate.finish(), users.finish()]


def assert_both_own_their_part(conn: psycopg.Connection) -> None:
    """No FK to users, public holds Prisma's tables only, Prisma's migration finished, the gateway's files applied."""
    assert [] == foreign_keys_to_users(conn)
    assert ["_prisma_migrations", "users"] == tables_in(conn, "public")
    assert [(INIT, True)] == prisma_migrations(conn)
    assert versioned_files() == ledger_versions(conn, LEDGER)


@pytest.mark.parametrize("order", ORDERS)
def test_both_start_in_either_order_and_restart_cleanly(order: str, gateway: Gateway, prisma: PrismaService,
                                                        fresh_db: str, fresh_url: str) -> None:
    """Gateway first or users service first: both succeed, and a restart of each changes nothing."""
    start_in_order(order, gateway, prisma, fresh_url, f"{fresh_url}?schema=public")

    with connect(fresh_db) as conn:
        assert_both_own_their_part(conn)
        before = schema_snapshot(conn)
    restarted = ok(gateway.run(fresh_url))
    assert "migration_applied" not in events(restarted.stderr)
    assert "No pending migrations to apply." in ok(prisma.deploy(f"{fresh_url}?schema=public")).stdout
    with connect(fresh_db) as conn:
        assert before == schema_snapshot(conn)


def test_simultaneous_starts_succeed_every_time(gateway: Gateway, prisma: PrismaService,
                                                databases: Callable[[], str]) -> None:
    """Ten rounds of both started at once on a new database: both succeed every round, to the same schema."""
    failures, snapshots = [], []
    for round_ in range(10):
        conninfo = databases()
        url = url_of(conninfo)
        for result in start_together(gateway, prisma, url, f"{url}?schema=public", prisma_first=round_ % 2 == 1):
            if result.returncode != 0:
                failures.append(f"round {round_}: {result}")
        with connect(conninfo) as conn:
            snapshots.append(schema_snapshot(conn))
            if not failures:
                assert_both_own_their_part(conn)
    assert [] == failures
    assert [snapshots[0]] * 10 == snapshots


def test_one_database_url_with_prisma_parameters_serves_both(gateway: Gateway, prisma: PrismaService,
                                                             fresh_db: str, fresh_url: str) -> None:
    """The users service's DATABASE_URL, Prisma's query parameters and all, is the gateway's too."""
    shared = f"{fresh_url}?{PRISMA_PARAMS}"
    ok(gateway.run(shared))
    ok(prisma.deploy(shared))
    assert "migration_applied" not in events(ok(gateway.run(shared)).stderr)
    assert "No pending migrations to apply." in ok(prisma.deploy(shared)).stdout
    with connect(fresh_db) as conn:
        assert_both_own_their_part(conn)


@pytest.fixture
def service_roles(admin: psycopg.Connection, fresh_db: str) -> Iterator[dict[str, str]]:
    """
    A migrator role for the gateway (CONNECT, CREATE on the database) and a users
    service role (CONNECT, CREATE on schema public) that owns what Prisma creates;
    neither is granted anything on the other's tables (no REFERENCES on users).
    """
    suffix = uuid.uuid4().hex[:8]
    names = {"migrator": f"gateway_migrator_{suffix}", "users": f"users_service_{suffix}"}
    dbname = conninfo_to_dict(fresh_db)["dbname"]
    for role in names.values():
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(role)))
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname),
                                                                          sql.Identifier(role)))
    admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname),
                                                                     sql.Identifier(names["migrator"])))
    with connect(fresh_db) as conn:
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(names["users"])))
    yield names
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
    for role in names.values():
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("order", ORDERS)
def test_separate_roles_the_gateway_still_comes_up(order: str, gateway: Gateway, prisma: PrismaService,
                                                   service_roles: dict[str, str], fresh_db: str) -> None:
    """With a migrator that may not REFERENCE users (the users service owns it), both start, in either order."""
    migrator_url = url_of(fresh_db, service_roles["migrator"], service_roles["migrator"])
    users_url = url_of(fresh_db, service_roles["users"], service_roles["users"], "schema=public")
    start_in_order(order, gateway, prisma, migrator_url, users_url)
    ok(gateway.run(migrator_url))
    ok(prisma.deploy(users_url))

    with connect(fresh_db) as conn:
        assert_both_own_their_part(conn)
        owners = dict(conn.execute("SELECT relname::text, pg_get_userbyid(relowner)::text FROM pg_class"
                                   " WHERE relname IN ('users', 'integration_configs')").fetchall())
    assert {"users": service_roles["users"], "integration_configs": service_roles["migrator"]} == owners


def test_the_schema_is_the_same_whatever_the_start_order(gateway: Gateway, prisma: PrismaService,
                                                        databases: Callable[[], str]) -> None:
    """Gateway first, users service first, both at once: the same schema, with no FK to users."""
    snapshots = {}
    for order in ("gateway-first", "users-first", "simultaneous"):
        conninfo = databases()
        url = url_of(conninfo)
        if order == "simultaneous":
            for result in start_together(gateway, prisma, url, f"{url}?schema=public"):
                ok(result)
        else:
            start_in_order(order, gateway, prisma, url, f"{url}?schema=public")
        with connect(conninfo) as conn:
            snapshots[order] = schema_snapshot(conn)
            assert [] == foreign_keys_to_users(conn)
    assert snapshots["gateway-first"] == snapshots["users-first"]
    assert snapshots["gateway-first"] == snapshots["simultaneous"]


@pytest.mark.parametrize("history", ["current release", "upgraded from the release before the fix"])
def test_prisma_rebuilds_the_users_primary_key_after_the_gateway(history: str, gateway: Gateway,
                                                                 prisma: PrismaService, fresh_db: str,
                                                                 fresh_url: str) -> None:
    """A later Prisma migration that drops and re-adds users_pkey applies, however the gateway got there."""
    prisma_url = f"{fresh_url}?schema=public"
    ok(prisma.deploy(prisma_url))
    ledger = LEDGER
    if history != "current release":
        # The release before the fix: its sql/ and its ledger, public.bootstrap_migrations.
        ok(gateway.run(fresh_url, sql_dir=EARLIER_RELEASE, BOOTSTRAP_LEDGER_TABLE="public.bootstrap_migrations"))
        ledger = "public.bootstrap_migrations"
    ok(gateway.run(fresh_url))
    prisma.add_migration(*REBUILD_PKEY)
    ok(prisma.deploy(prisma_url))

    with connect(fresh_db) as conn:
        assert [(INIT, True), (REBUILD_PKEY[0], True)] == prisma_migrations(conn)
        assert versioned_files() == ledger_versions(conn, ledger)
        assert [] == foreign_keys_to_users(conn)
    ok(gateway.run(fresh_url))


def test_prisma_migrate_deploy_ends_as_soon_as_its_work_is_done(prisma: PrismaService, fresh_url: str) -> None:
    """The CLI exits when done, not after the WebAssembly engine's 10 s lock timer (twice: apply, then nothing)."""
    for result in (prisma.deploy(f"{fresh_url}?schema=public"), prisma.deploy(f"{fresh_url}?schema=public")):
        ok(result)
        assert result.seconds < 10, str(result)


def test_the_example_pins_prisma_6_19_exactly() -> None:
    """Exact versions, Prisma 6.19.x (7 removed the WebAssembly schema engine), a lock in step, no download address."""
    package = json.loads((EXAMPLE / "package.json").read_text())
    locked = json.loads((EXAMPLE / "package-lock.json").read_text())
    assert [] == [f"{name} {spec}" for name, spec in package["dependencies"].items() if not re.fullmatch(r"\d+\.\d+\.\d+", spec)]
    assert {"prisma", "@prisma/client", "@prisma/adapter-pg"} <= set(package["dependencies"])
    assert [] == [name for name in ("prisma", "@prisma/client", "@prisma/adapter-pg")
                  if not package["dependencies"][name].startswith("6.19.")]
    assert package["dependencies"] == locked["packages"][""]["dependencies"]
    assert [] == [name for name, entry in locked["packages"].items() if "resolved" in entry]
    assert "ignore-scripts=true" in (EXAMPLE / ".npmrc").read_text().splitlines()
