"""
From a command to the database: check the migration files before touching it,
then do the work on a `runner.Migrator` on one session, closed after the work.

`on_database` is that path for the commands that work on the ledger's rows
(migrate, status, rollback, baseline, repair, adopt; `discover` finds the
files, and warns of those that look like migrations but never run);
`wait_for_database` is `wait-db`, `wait_for_migrations` is `wait-migrated`,
and `before_exec` is `run`'s pipeline before `exec` (wait, migrate or wait for
another runner, the fleet's tenants, verify) on one connection closed before
the app starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .migrations import Kind, Migration, discover_migrations
from .parsing import load_scripts
from .plan import check_target
from .runner import Migrator, open_migrator
from .typing import Logger, MigrateResult, RunResult, WaitResult

T = TypeVar("T")

if TYPE_CHECKING:
    from .settings import Settings


def wait_for_database(settings: Settings, log: Logger) -> None:
    """`wait-db`: return once the database answers (then close the connection)."""
    from .pg import open_session

    open_session(settings, log).close()


def discover(settings: Settings, log: Logger) -> list[Migration]:
    """The migration files, and a warning for each file that looks like one but is not (a mistyped extension)."""
    ignored: list[str] = []
    migrations = discover_migrations(settings.sql_dir, ignored)
    for name in ignored:
        log.warning("migration_file_ignored", file=str(settings.sql_dir / name),
                    reason="named like a migration, but its name does not end in .sql: it never runs")
    return migrations


def on_database(settings: Settings, log: Logger, work: Callable[[Migrator, list[Migration]], T], *,
                to: int | None = None) -> T:
    """
    Check the migration files (and that `to`, when given, is one of them) before
    touching the database, then do `work` with a Migrator.
    """
    migrations = discover(settings, log)
    if to is not None:
        check_target(migrations, to)
    with open_migrator(settings, log) as migrator:
        return work(migrator, migrations)


def wait_for_migrations(settings: Settings, log: Logger) -> WaitResult:
    """`wait-migrated`: wait for the database, then until every file is applied (one --timeout for both)."""
    deadline = time.monotonic() + settings.wait_timeout
    migrations = discover(settings, log)
    with open_migrator(settings, log) as migrator:
        return migrator.wait_migrated(migrations, deadline=deadline)


def before_exec(settings: Settings, log: Logger, *, no_wait: bool, no_migrate: bool, no_verify: bool,
                wait_migrated: bool = False, fleet: Callable[[MigrateResult | None], Any] | None = None) -> RunResult:
    """
    `run`'s work before `exec`: wait, migrate (or, with `wait_migrated`, wait
    for another runner to have migrated), the fleet's tenants (`fleet`), verify,
    on one connection that is closed before the app starts. With nothing to do (`--no-wait --no-migrate`
    and no verify scripts) the database is not contacted at all.
    """
    deadline = time.monotonic() + settings.wait_timeout
    migrations = None if no_migrate and not wait_migrated else discover(settings, log)
    scripts = [] if no_verify else load_scripts(settings.sql_dir, Kind.VERIFY, settings.environ)
    if migrations is None and not scripts and no_wait:
        return RunResult()
    with open_migrator(settings, log, wait=not no_wait) as migrator:
        migrated = waited = None
        if migrations is not None and wait_migrated:
            waited = migrator.wait_migrated(migrations, deadline=deadline)
        elif migrations is not None:
            migrated = migrator.migrate(migrations)
        if fleet is not None:  # a fleet's tenants (migrated, or waited for), before the verify scripts
            migrated = fleet(migrated)
        verified = migrator.verify(scripts) if scripts else None
    return RunResult(migrated, verified, waited)
