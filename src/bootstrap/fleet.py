"""
Fleets (`--tenants-query`): after the shared `sql/`, the files of the tenant directory
(`sql/tenant/`) applied to every tenant the query lists: a schema of this database (its
files run with `search_path` starting at it) or a database of this server.

The query lists the tenants (`list_tenants`, `tenants_of`, on bootstrap's own session);
`tenancy.Fleet`'s workers migrate them (`migrate_fleet`, `run_fleet`), read them
(`fleet_status`) or wait for them (`wait_fleet`). A failing tenant never stops the
others: the run ends with one summary, and exit 5 naming every failed tenant
(`fleet_failed`). The tenant's name is the placeholder `BOOTSTRAP_TENANT`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import ConfigError, MigrationFailedError, MigrationsPendingError
from .migrations import discover_migrations
from .runner import WAIT_LOG_EVERY_S, Migrator
from .tenancy import Fleet, tenant_dir
from .typing import FleetResult, FleetStatus, Logger

if TYPE_CHECKING:
    from .settings import Settings


def list_tenants(migrator: Migrator) -> list[str]:
    """
    The tenants the query lists (on the shared database).

    Raises:
        ConfigError: the query lists what cannot be a tenant: the shared ledger's schema, `public`,
            a system schema, or (a database fleet) this very database (exit 3, naming it).
    """
    from .pg.tenants import tenant_names

    settings = migrator.settings
    assert settings.tenants_query is not None
    with migrator.session.guard():
        tenants = tenant_names(migrator.session, settings.tenants_query)
    if settings.tenant_kind == "schema":
        shared = {migrator.ledger.schema, "public", "information_schema", *settings.schemas}
        bad = [t for t in tenants if t in shared or t.startswith("pg_")]
    else:
        bad = [t for t in tenants if t in (migrator.session.conn.info.dbname, "template0", "template1")]
    if bad:
        raise ConfigError(f"--tenants-query (BOOTSTRAP_TENANTS_QUERY) lists {', '.join(map(repr, bad[:5]))}, which "
                          "cannot be a tenant: " + ("the shared ledger's schema, public, BOOTSTRAP_SCHEMAS and the "
                                                    "system schemas are not tenants" if settings.tenant_kind == "schema"
                                                    else "the shared database and the templates are not tenants"),
                          variable="BOOTSTRAP_TENANTS_QUERY", tenants=bad[:20])
    return tenants


def migrate_fleet(settings: Settings, log: Logger, tenants: list[str]) -> FleetResult:
    """
    Migrate every tenant; one summary line (`fleet_completed`).

    Returns:
        Each tenant's outcome; the caller raises `fleet_failed` (exit 5) when any failed.
    """
    started = time.monotonic()
    fleet = Fleet(settings, log, tenants)
    try:
        outcomes = fleet.run(lambda t, held, wait: fleet.migrate_one(t, held, wait=wait), "migrating")
    finally:
        fleet.close()
    result = FleetResult(outcomes, round((time.monotonic() - started) * 1000))
    log.info("fleet_completed", **result.as_log(), duration_ms=result.duration_ms)
    if tenants and len(result.by("missing")) == len(tenants):
        raise ConfigError(f"none of the {len(tenants)} tenants the query lists exists as a "
                          f"{settings.tenant_kind}: check --tenants-query (BOOTSTRAP_TENANTS_QUERY) and "
                          "--tenant-kind (its one column names the tenants)", variable="BOOTSTRAP_TENANTS_QUERY")
    return result


def fleet_failed(result: FleetResult) -> MigrationFailedError | None:
    """The error (exit 5) naming every failed tenant, or None."""
    failed = result.by("failed")
    if not failed:
        return None
    shown = "; ".join(f"{t.tenant}: {t.error}" for t in failed[:10])
    rest = ("" if len(failed) == len(result.tenants) else
            "the others were migrated or current; ") + "run again to resume"
    return MigrationFailedError(f"{len(failed)} of {len(result.tenants)} tenants failed ({rest}): "
                                f"{shown}{' ...' if len(failed) > 10 else ''}",
                                **result.as_log(), failed_tenants=[t.tenant for t in failed])


def fleet_status(settings: Settings, log: Logger, tenants: list[str]) -> FleetStatus:
    """Each tenant's counts by state."""
    fleet = Fleet(settings, log, tenants)
    try:
        return FleetStatus(dict(fleet.run(fleet.status_one, "reading")))
    finally:
        fleet.close()


def wait_fleet(settings: Settings, log: Logger, *, deadline: float) -> None:
    """
    Wait (until `deadline`) for every tenant the query lists to be up to date: the query is
    run again at each poll (a tenant added meanwhile is waited for, one removed is not), and
    only the tenants behind (or new) are read again, on connections kept for the whole wait.
    A tenant without its schema (or database) is not waited for: `migrate` reports it missing.

    Raises:
        MigrationsPendingError: tenants still behind at the deadline (exit 10), named.
    """
    from .backoff import WAIT
    from .runner import open_migrator

    started, attempt, report_at = time.monotonic(), 0, 0.0
    with open_migrator(settings, log) as lister:
        fleet = Fleet(settings, log, [])
        try:
            seen: set[str] = set()
            behind: list[str] = []
            while True:
                listed = list_tenants(lister)
                fleet.tenants = [t for t in listed if t in behind or t not in seen]
                seen.update(listed)
                behind = FleetStatus(dict(fleet.run(fleet.status_one, "reading"))).behind
                if not behind:
                    log.info("fleet_ready", tenants=len(listed), waited_ms=round((time.monotonic() - started) * 1000))
                    return
                left, waited = deadline - time.monotonic(), time.monotonic() - started
                if left <= 0:
                    raise MigrationsPendingError(
                        f"{len(behind)} of {len(listed)} tenants still behind: {', '.join(behind[:10])}"
                        f"{' ...' if len(behind) > 10 else ''}; is the fleet's migration Job running? (raise "
                        "--timeout to wait longer)", tenants_behind=behind[:100])
                if waited >= report_at:
                    log.info("fleet_waiting", behind=len(behind), tenants=len(listed), first=behind[0],
                             waited_s=round(waited, 1), timeout_s=settings.wait_timeout)
                    report_at = waited + WAIT_LOG_EVERY_S
                attempt += 1
                time.sleep(min(WAIT.pause(attempt), left))
        finally:
            fleet.close()


def tenants_of(settings: Settings, log: Logger) -> list[str]:
    """The tenants the query lists, read on a session of bootstrap's own (waited for as every command waits)."""
    from .runner import open_migrator

    with open_migrator(settings, log) as migrator:
        tenants = list_tenants(migrator)
    log.info("fleet_listed", tenants=len(tenants), kind=settings.tenant_kind, sql_dir=str(tenant_dir(settings)))
    return tenants


def run_fleet(settings: Settings, log: Logger) -> FleetResult:
    """`migrate` (and `run`) after the shared files: every tenant; the tenant files are checked first."""
    discover_migrations(tenant_dir(settings))  # a bad tenant file is exit 3 before any tenant is touched
    return migrate_fleet(settings, log, tenants_of(settings, log))
