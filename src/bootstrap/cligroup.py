"""
The `bootstrap` click group, and what several of its commands share.

The group holds what every command takes alike: -h/--help, -V/--version, the
help's width, and the top-level help. Beside it: `echo` prints on stdout,
masked; `on_database` does a command's work on a Migrator, its files checked
first (`pipeline`, imported when a command runs); `fleet_after` migrates the
tenants after the shared files (migrate, and run through `fleet_before_verify`);
`rollback` is the work of rollback and down. The commands themselves are
`cli`'s, which registers them on the group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from . import __version__
from .command import Group
from .errors import UsageError

if TYPE_CHECKING:
    from .runner import Migrator
    from .settings import Settings
    from .typing import Logger

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=Group, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="bootstrap", message="%(prog)s %(version)s")
def cli() -> None:
    """
    bootstrap: the ENTRYPOINT of a PostgreSQL-backed service.

    Waits for the database, applies the migrations in sql/ exactly once (one
    runner at a time, each file atomically with its ledger row), verifies,
    then execs the app.

    Every flag also reads an environment variable (shown in each command's
    --help); a flag wins over its variable.

    Familiar names from dbmate and goose work too: `up` is migrate, `down` is
    rollback --steps 1, `create` is new, `--url` is --database-url.
    """


def echo(lines: list[str]) -> None:
    """Print on stdout, masked like every other output (a rehearsal prints the server's errors)."""
    from .redact import redact

    for line in lines:
        click.echo(redact(line))


def on_database(settings: Settings, log: Logger, work: Callable[[Migrator, list[Any]], Any],
                to: int | None = None) -> Any:
    """`pipeline.on_database`, imported when a command runs: `--help` never loads the runner."""
    from . import pipeline

    return pipeline.on_database(settings, log, work, to=to)


def fleet_after(settings: Settings, log: Logger, shared: Any, *, as_json: bool = False) -> Any:
    """After the shared files: the tenants (exit 5 naming each failed one, after the summary)."""
    from . import render
    from .fleet import fleet_failed, run_fleet
    from .typing import FleetMigrateResult

    result = run_fleet(settings, log)
    if as_json:
        echo([render.fleet_json(shared, result)])
    failed = fleet_failed(result)
    if failed is not None:
        raise failed
    return FleetMigrateResult(shared, result)


def fleet_before_verify(settings: Settings, log: Logger, *, wait_migrated: bool,
                        deadline: float) -> Callable[[Any], Any]:
    """
    `run`'s fleet, after the shared files and before verify: the tenants' files are checked now;
    the tenants are migrated (`fleet_after`) or, with --wait-migrated, waited for until `deadline`.
    """
    from .fleet import wait_fleet
    from .tenancy import tenant_migrations

    tenant_migrations(settings)  # the tenants' files checked before anything runs

    def fleet(shared: Any) -> Any:
        if wait_migrated:
            wait_fleet(settings, log, deadline=deadline)
            return shared
        return fleet_after(settings, log, shared)

    return fleet


def rollback(settings: Settings, log: Logger, steps: int | None, to_version: int | None) -> Any:
    """rollback's and down's work: exactly one of --steps and --to (else a usage error), then the rollback."""
    if (steps is None) == (to_version is None):
        raise UsageError("give exactly one of --steps N or --to VERSION")
    return on_database(settings, log, lambda migrator, files: migrator.rollback(files, steps=steps, to=to_version))
