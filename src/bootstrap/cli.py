"""
The command line: one click command per bootstrap command, and nothing else.

Each command is its work (`command.command` makes it a click command with its
options and runs it through `command.run_command`): usage checks, runner
calls, and what `render` prints. The group they belong to, and what several
of them share, are `cligroup`'s. The runner, the renderer and the driver are
imported inside the work, when a command runs: `--help` loads click and the
option table only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from .cligroup import cli, echo, fleet_after, fleet_before_verify, on_database, rollback
from .command import Done, command
from .errors import ExitCode, NotUpToDateError, UsageError

if TYPE_CHECKING:
    from .settings import Settings
    from .typing import Logger

__all__ = ["cli"]  # the group, with every command of this module on it
ExecFn = Callable[[Sequence[str], Mapping[str, str]], Any]


@command(cli, "wait-db")
def wait_db(settings: Settings, log: Logger, opts: dict[str, Any]) -> None:
    """
    Wait until the database answers `SELECT 1`.

    Retries refused connections, unresolvable hosts, a server starting up or
    shutting down and "too many clients", with exponential backoff and jitter
    (tens of milliseconds up to 1 s) until --timeout (exit 4). Wrong
    credentials and bad settings fail at once (exit 3).

    Example:

        bootstrap wait-db --timeout 30
    """
    from .pipeline import wait_for_database

    wait_for_database(settings, log)


@command(cli, "migrate")
def migrate_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Apply pending migrations from the sql directory, exactly once.

    Order: check files -> wait -> lint what is about to run -> lock -> create
    schemas -> ledger -> validate -> apply pending versioned files ->
    repeatables. Each file runs in one transaction with its ledger row, unless
    it starts with `-- bootstrap:no-transaction`.

    Before a deploy: --dry-run prints the plan and changes nothing (exit 8
    when something would run); --to VERSION stops after that version;
    --rehearse applies the pending transactional files in one transaction
    that is always rolled back, and reports each (exit 5 when one fails).

    Example:

    \b
        BOOTSTRAP_SCHEMAS=financial bootstrap migrate --sql-dir db/sql
        bootstrap migrate --dry-run --json
        bootstrap migrate --rehearse --to 20240101000000
    """
    to, dry_run, rehearse, as_json = opts["to_version"], opts["dry_run"], opts["rehearse"], opts["as_json"]
    if dry_run and rehearse:
        raise UsageError("--dry-run runs nothing and --rehearse runs the files and rolls them back: give one of them")
    if as_json and not (dry_run or rehearse or settings.tenants_query):
        raise UsageError("--json goes with --dry-run, --rehearse or a fleet (--tenants-query); migrate itself prints "
                         "nothing on stdout")
    if settings.tenants_query:
        from .tenancy import tenant_migrations

        tenant_migrations(settings)  # the tenants' files checked before the shared ones run
    if not (dry_run or rehearse):
        shared = on_database(settings, log, lambda migrator, files: migrator.migrate(files, to=to), to)
        return fleet_after(settings, log, shared, as_json=as_json) if settings.tenants_query else shared
    from . import preflight, render  # printing and lint errors only where there is something to print
    from .lint import findings_error

    if dry_run:
        planned = on_database(settings, log, lambda migrator, files: preflight.dry_run(migrator, files, to=to), to)
        if settings.tenants_query:
            from .fleet import fleet_status, tenants_of

            planned = planned._replace(tenants_behind=fleet_status(settings, log, tenants_of(settings, log)).behind)
        echo([render.dry_run_json(planned)] if as_json else render.dry_run_lines(planned))
        if settings.lint == "error" and planned.lint is not None and planned.lint.findings:
            raise findings_error(planned.lint)
        return Done(planned, code=ExitCode.NOT_UP_TO_DATE if planned.would_run else 0)
    rehearsed = on_database(settings, log, lambda migrator, files: preflight.rehearse(migrator, files, to=to), to)
    echo([render.rehearsal_json(rehearsed)] if as_json else render.rehearsal_lines(rehearsed))
    if rehearsed.failure is not None:
        raise rehearsed.failure
    return rehearsed


@command(cli, "lint")
def lint_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Lint the pending migration files for dangerous DDL, with squawk; change nothing.

    Tries the database once, without waiting: reached, it lints the files
    pending there (every file with --all), telling squawk the server's
    version; not reached (CI before a deploy), it lints every file. Files
    that run in a transaction are linted as such. Rules bootstrap makes moot
    (lock and statement timeouts: it sets them itself) are off; a file
    silences others with `-- bootstrap:lint-ignore rule-a,rule-b`. Exit 11
    when findings remain; exit 3 when squawk is not installed
    (pip install squawk-cli into bootstrap's environment, or install bootstrap
    with its lint extra: pip install '.[lint]').

    Example:

        bootstrap lint --all --sql-dir db/sql
    """
    from . import render
    from .lint import findings_error
    from .preflight import lint_command

    result = lint_command(settings, log, all_files=opts["lint_all"])
    echo([render.lint_json(result)] if opts["as_json"] else render.lint_lines(result))
    if result.findings:
        raise findings_error(result, refusing=False)
    return result


@command(cli, "wait-migrated")
def wait_migrated_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Wait until every file in the sql directory is applied; never migrate.

    For app pods whose migrations run elsewhere (a Kubernetes Job): waits for
    the database, then polls the ledger until every versioned file is applied
    and every repeatable current (versions a newer release applied are fine),
    waking as soon as the migrating runner releases its lock. A changed or
    missing file fails at once (exit 6); still pending at --timeout: exit 10,
    naming what is pending.

    Example:

        bootstrap wait-migrated --timeout 10min
    """
    from .pipeline import wait_for_migrations

    deadline = time.monotonic() + settings.wait_timeout
    waited = wait_for_migrations(settings, log)
    if settings.tenants_query:
        from .fleet import wait_fleet

        wait_fleet(settings, log, deadline=deadline)
    return waited


@command(cli, "status")
def status_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Show each migration's state: applied, pending, changed, missing or future.

    Reads only; takes no lock. `future`: applied by a newer release (newer
    than every local file). Exits 0 whatever the states unless --exit-code
    (exit 8 when anything is pending, changed or missing; future is fine).

    Example:

        bootstrap status --json | jq '.migrations[] | select(.state != "applied")'
    """
    from . import render

    plan = on_database(settings, log, lambda migrator, files: migrator.status(files))
    fleet = None
    if settings.tenants_query:
        from .fleet import fleet_status, tenants_of

        fleet = fleet_status(settings, log, tenants_of(settings, log))
    echo([render.status_json(plan, fleet)] if opts["as_json"] else
          [*render.status_table(plan), *(render.fleet_status_lines(fleet) if fleet is not None else [])])
    if opts["exit_code"] and not (plan.up_to_date and not (fleet and fleet.behind)):
        raise NotUpToDateError("not up to date", **plan.counts(), **({"tenants_behind": len(fleet.behind)}
                                                                     if fleet is not None else {}))
    return plan


@command(cli, "verify")
def verify_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Run the verify scripts (sql/verify/*.sql) and change nothing.

    They run in name order inside one transaction that is always rolled back;
    a script fails by raising an error (exit 9, naming each failing script).

    Example:

        bootstrap verify
    """
    from .migrations import Kind
    from .parsing import load_scripts
    from .runner import open_migrator

    scripts = load_scripts(settings.sql_dir, Kind.VERIFY, settings.environ, required=True)
    if not scripts:
        log.info("verify_skipped", reason=f"no scripts in {settings.sql_dir / 'verify'}")
        return None
    with open_migrator(settings, log) as migrator:
        return migrator.verify(scripts)


@command(cli, "rollback")
def rollback_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Undo applied migrations with their .down.sql partners, newest first.

    Each down file runs together with the removal of its ledger row; when every
    down file in range is transactional, the whole rollback is one transaction
    (a refusing file leaves everything applied). Counts versioned migrations
    only. Refuses before changing anything when a partner in range is missing
    or --steps exceeds what is applied.

    Example:

    \b
        bootstrap rollback --steps 1
        bootstrap rollback --to 0
    """
    return rollback(settings, log, opts["steps"], opts["to_version"])


@command(cli, "down", like="rollback", hidden=True)
def down_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    `rollback --steps 1`, by its familiar name (dbmate's and goose's `down`); --steps N undoes N.

    Example:

        bootstrap down
    """
    steps = opts["steps"] if opts["steps"] is not None or opts["to_version"] is not None else 1
    return rollback(settings, log, steps, opts["to_version"])


@command(cli, "baseline")
def baseline_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Record every version up to --version as applied, without running it.

    For adopting a database whose schema already exists: the rows are marked
    `source = baseline` in the ledger. Refuses when the ledger already has rows,
    unless --allow-existing (then only versions not yet recorded are added).

    Example:

        bootstrap baseline --version 20240101000000
    """
    from . import render
    from .takeover import baseline

    if opts["baseline_version"] is None:
        raise UsageError("missing --version VERSION (or BOOTSTRAP_BASELINE_VERSION)")
    result = on_database(settings, log, lambda migrator, files: baseline(
        migrator, files, version=opts["baseline_version"], allow_existing=opts["allow_existing"]))
    echo(render.baseline_lines(result))
    return result


@command(cli, "repair")
def repair_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Re-record the checksums of applied files after a reviewed, cosmetic edit.

    Lists each change it records (checksum, and name when a file was renamed
    with the same version), and retires repeatables whose file was deleted
    (their ledger rows go; what they created stays). Nothing else changes:
    missing versioned files are listed and left alone, changed repeatables are
    re-applied by migrate. A change to the schema belongs in a new file, not here.

    Example:

        bootstrap repair --dry-run && bootstrap repair
    """
    from . import render
    from .takeover import repair

    result = on_database(settings, log, lambda migrator, files: repair(migrator, files, dry_run=opts["dry_run"]))
    echo(render.repair_lines(result))
    return result


@command(cli, "new", click.argument("description", nargs=-1, required=True))
def new_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> None:
    """
    Write the next migration file: sql/<UTC timestamp>_<slug>.sql.

    The file starts with a short header template; with --down its rollback
    partner is written too. Never overwrites. Needs no database.

    Example:

        bootstrap new add email to accounts --down
    """
    from .scaffold import create_migration

    created = create_migration(settings.sql_dir, " ".join(opts["description"]), down=opts["with_down"])
    for path in (created.up, created.down):
        if path is not None:
            click.echo(str(path))
            log.info("migration_created", path=str(path))


@command(cli, "adopt")
def adopt_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Any:
    """
    Record as applied what another migration tool already applied.

    Reads that tool's ledger in the same database (node-pg-migrate's
    pgmigrations, dbmate's schema_migrations, Flyway's flyway_schema_history,
    goose's goose_db_version, golang-migrate's schema_migrations), matches its
    entries to files in sql/ by version, and records the matches (`source =
    adopted`). Lists what it matched, what it could not match and what stays
    pending; --dry-run changes nothing.

    Example:

        bootstrap adopt --from node-pg-migrate --dry-run
    """
    from . import render
    from .takeover import adopt

    if opts["adopt_from"] is None:
        raise UsageError("missing --from node-pg-migrate|dbmate|flyway|goose|golang-migrate (or BOOTSTRAP_ADOPT_FROM)")
    # --table arrives as (schema, table), checked with the other settings.
    result = on_database(settings, log, lambda migrator, files: adopt(
        migrator, files, tool_name=opts["adopt_from"], table=opts["adopt_table"], dry_run=opts["dry_run"]))
    echo(render.adopt_lines(result, settings.sql_dir))
    return result


@command(cli, "run", click.argument("command", nargs=-1, type=click.UNPROCESSED),
         context_settings={"allow_interspersed_args": False})
def run_cmd(settings: Settings, log: Logger, opts: dict[str, Any]) -> Done:
    """
    Wait, migrate, verify, then exec COMMAND: the app keeps the PID, gets the
    signals and owns the exit status.

    With --wait-migrated it does not migrate: it waits (up to --timeout) until
    another runner applied every file, as wait-migrated does, then verifies.

    BOOTSTRAP_DATABASE_URL (and its _FILE) are removed from the app's
    environment. A command that is not found exits 127, one that is not
    executable 126. With --no-wait --no-migrate and no verify scripts (or
    --no-verify), the database is not contacted at all.

    Example:

        bootstrap run -- node server.js
    """
    from .handoff import exec_app, resolve_command
    from .pipeline import before_exec
    from .settings import app_environ

    argv = list(opts["command"])
    argv = argv[1:] if argv[:1] == ["--"] else argv
    obj = click.get_current_context().obj
    exec_fn: ExecFn | None = obj.get("exec") if isinstance(obj, dict) else None
    if not argv:
        raise UsageError("missing command: use `bootstrap run -- CMD [ARG...]`")
    env = app_environ(settings.environ)
    resolve_command(argv[0], env)  # 127/126 before touching anything
    deadline = time.monotonic() + settings.wait_timeout
    fleet = None
    if settings.tenants_query and not opts["no_migrate"]:  # the fleet too, after the shared files, before verify
        fleet = fleet_before_verify(settings, log, wait_migrated=opts["wait_migrated"], deadline=deadline)

    result = before_exec(settings, log, no_wait=opts["no_wait"], no_migrate=opts["no_migrate"],
                         no_verify=opts["no_verify"], wait_migrated=opts["wait_migrated"], fleet=fleet)

    def handoff() -> None:
        log.info("app_exec_started", app=argv[0], arg_count=len(argv) - 1, pid=os.getpid())
        (exec_fn or exec_app)(argv, env)

    return Done(result, handoff)
