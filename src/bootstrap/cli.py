"""
The command line: flags and variables -> Settings -> runner; errors -> exit codes.

Thin on purpose. Every command goes through `_action`, which configures
logging, loads settings, runs the work, writes one summary line
(`bootstrap_completed`, or `bootstrap_failed` with the error's fields) and
picks the exit code. Heavy modules (psycopg, the runner) load only when a
command needs them, so `--help` stays fast.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import __version__
from .errors import (
    BootstrapError,
    ExitCode,
    NotUpToDateError,
    SignalReceived,
    UsageError,
)
from .handoff import install_signal_handlers
from .settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    OPTIONS,
    app_environ,
    command_flags,
    load_settings,
    parse_choice,
    parse_duration,
)

if TYPE_CHECKING:
    from .db import Database
    from .migrations import Migration
    from .runner import Outcome
    from .settings import Settings

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
ExecFn = Callable[[Sequence[str], Mapping[str, str]], Any]
T = TypeVar("T")


class DurationType(click.ParamType):  # type: ignore[type-arg]
    """A duration flag: seconds (`60`, `2.5`) or with a unit (`500ms`, `30s`, `5min`)."""

    name = "duration"

    def __init__(self, allow_none: bool = False) -> None:
        self.allow_none = allow_none

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_duration(value, allow_none=self.allow_none)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class ChoiceType(click.ParamType):  # type: ignore[type-arg]
    """A case-insensitive choice, parsed like its environment variable."""

    name = "choice"

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices
        self.name = "|".join(choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_choice(str(value), self.choices)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


_TYPES: dict[str, Any] = {
    "ddl_lock_retries": click.IntRange(min=0),
    "wait_timeout": DurationType(),
    "lock_timeout": DurationType(),
    "ddl_lock_timeout": DurationType(allow_none=True),
    "statement_timeout": DurationType(allow_none=True),
    "log_format": ChoiceType(LOG_FORMATS),
    "log_level": ChoiceType(LOG_LEVELS),
}


def _metavar(key: str) -> str | None:
    """The placeholder `--help` shows for a flag's value (choices show themselves)."""
    if key == "ddl_lock_retries":
        return "N"
    return None if key in _TYPES else key.split("_")[-1].upper()


def config_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add every flag `command` takes, each with its variable (see `settings.OPTIONS`)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(OPTIONS):
            if option.commands and command not in option.commands:
                continue
            help_text = f"{option.help} [env: {option.env}"
            help_text += "]" if option.kind != "str" else f"; default: {option.default}]"
            if option.kind == "bool":
                func = click.option(option.flag, option.key, is_flag=True, default=None,
                                    help=help_text)(func)
            elif option.kind == "int":
                func = click.option(option.flag, option.key, default=None, help=help_text,
                                    type=click.IntRange(min=1 if option.key == "steps" else 0),
                                    metavar="N" if option.key == "steps" else "VERSION")(func)
            elif option.kind == "choice":
                func = click.option(option.flag, option.key, default=None, help=help_text,
                                    type=ChoiceType(option.choices))(func)
            elif option.kind == "text":
                func = click.option(option.flag, option.key, default=None, help=help_text,
                                    metavar="TABLE")(func)
            else:
                func = click.option(
                    option.flag,
                    option.key,
                    type=_TYPES.get(option.key, str),
                    default=None,
                    metavar=_metavar(option.key),
                    help=help_text,
                )(func)
        return func

    return decorate


def _early_logging(flags: Mapping[str, Any]) -> tuple[str, str]:
    """Log format and level before settings are validated (bad values fall back)."""
    out = []
    for key, choices, default in (("log_format", LOG_FORMATS, "auto"), ("log_level", LOG_LEVELS, "info")):
        value = flags.get(key) or os.environ.get(f"BOOTSTRAP_{key.upper()}") or default
        try:
            out.append(parse_choice(str(value), choices))
        except ValueError:
            out.append(default)
    return out[0], out[1]


def _action(
    command: str,
    flags: Mapping[str, Any],
    body: Callable[[Settings, Any, Outcome, dict[str, Any]], Callable[[], Any] | None],
) -> NoReturn:
    """
    Run one command: settings, logging, the work, one summary line, the exit code.

    Args:
        command: the command's name, for the summary.
        flags: option values from click.
        body: the work; may return a callable to run after the summary (exec).
    """
    from .logs import configure_logging, get_logger
    from .runner import Outcome

    started = time.monotonic()
    configure_logging(*_early_logging(flags))
    log = get_logger()
    outcome = Outcome()
    ctx = click.get_current_context()

    def elapsed_ms() -> int:
        return round((time.monotonic() - started) * 1000)

    try:
        settings = load_settings(flags)
        configure_logging(settings.log_format, settings.log_level)
        log = get_logger()
        then = body(settings, log, outcome, command_flags(command, flags, settings.environ))
        log.info("bootstrap_completed", command=command, duration_ms=elapsed_ms(), **outcome.as_log())
        if then is not None:
            then()
    except NotUpToDateError as exc:
        log.info(exc.event, **{**exc.fields, "command": command, "exit_code": int(exc.exit_code)})
        ctx.exit(int(exc.exit_code))
    except BootstrapError as exc:
        fields = {
            **exc.fields,
            "command": command,
            "error": exc.message,
            "exit_code": int(exc.exit_code),
            "duration_ms": elapsed_ms(),
        }
        log.error(exc.event, **fields)
        ctx.exit(int(exc.exit_code))
    except SignalReceived as exc:
        log.warning(
            "bootstrap_interrupted",
            command=command,
            signal=signal.Signals(exc.signum).name,
            exit_code=exc.exit_code,
            duration_ms=elapsed_ms(),
        )
        ctx.exit(exc.exit_code)
    except click.exceptions.Exit:
        raise
    except Exception as exc:  # a bug: say so, with the traceback, and exit 1
        log.error(
            "bootstrap_failed",
            command=command,
            error=f"unexpected {type(exc).__name__}: {exc}",
            exit_code=int(ExitCode.INTERNAL),
            duration_ms=elapsed_ms(),
            exc_info=exc,
        )
        ctx.exit(int(ExitCode.INTERNAL))
    ctx.exit(0)


def _on_database(settings: Settings, log: Any, work: Callable[[Database, list[Migration]], T]) -> T:
    """Check the migration files, wait for the database, do `work` on it, close it."""
    from .migrations import discover_migrations
    from .runner import wait_for_database

    migrations = discover_migrations(settings.sql_dir)  # before touching the database
    db = wait_for_database(settings, log)
    try:
        return work(db, migrations)
    finally:
        db.close()


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="bootstrap", message="%(prog)s %(version)s")
def cli() -> None:
    """
    bootstrap: the ENTRYPOINT of a PostgreSQL-backed service.

    Waits for the database, applies the migrations in sql/ exactly once (one
    runner at a time, each file atomically with its ledger row), verifies,
    then execs the app.

    Every flag also reads an environment variable (shown in each command's
    --help); a flag wins over its variable.
    """


@cli.command(name="wait-db")
@config_options("wait-db")
def wait_db(**flags: Any) -> None:
    """
    Wait until the database answers `SELECT 1`.

    Retries refused connections, unresolvable hosts, a server starting up or
    shutting down and "too many clients", with exponential backoff and jitter
    (tens of milliseconds up to 1 s) until --timeout (exit 4). Wrong
    credentials and bad settings fail at once (exit 3).

    Example:

        bootstrap wait-db --timeout 30
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import wait_for_database

        wait_for_database(settings, log).close()

    _action("wait-db", flags, body)


@cli.command(name="migrate")
@config_options("migrate")
def migrate_cmd(**flags: Any) -> None:
    """
    Apply pending migrations from the sql directory, exactly once.

    Order: check files -> wait -> lock -> create schemas -> ledger ->
    validate -> apply pending versioned files -> repeatables. Each file runs
    in one transaction with its ledger row, unless it starts with
    `-- bootstrap:no-transaction`.

    Example:

        BOOTSTRAP_SCHEMAS=financial bootstrap migrate --sql-dir db/sql
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import migrate

        _on_database(settings, log, lambda db, migrations: migrate(settings, log, db, outcome, migrations))

    _action("migrate", flags, body)


@cli.command(name="status")
@config_options("status")
def status_cmd(**flags: Any) -> None:
    """
    Show each migration's state: applied, pending, changed or missing.

    Reads only; takes no lock. Exits 0 whatever the states unless --exit-code.

    Example:

        bootstrap status --json | jq '.migrations[] | select(.state != "applied")'
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import status

        plan = _on_database(settings, log, lambda db, migrations: status(settings, log, db, migrations))
        _print_status(plan, opts["as_json"])
        outcome.extra.update(plan.counts())
        if opts["exit_code"] and not plan.up_to_date:
            raise NotUpToDateError("not up to date", **plan.counts())

    _action("status", flags, body)


@cli.command(name="verify")
@config_options("verify")
def verify_cmd(**flags: Any) -> None:
    """
    Run the verify scripts (sql/verify/*.sql) and change nothing.

    They run in name order inside one transaction that is always rolled back;
    a script fails by raising an error (exit 9, naming each failing script).

    Example:

        bootstrap verify
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import load_verify_scripts, verify, wait_for_database

        scripts = load_verify_scripts(settings.sql_dir, required=True)
        if not scripts:
            log.info("verify_skipped", reason=f"no scripts in {settings.sql_dir / 'verify'}")
            return
        db = wait_for_database(settings, log)
        try:
            verify(log, db, scripts, outcome)
        finally:
            db.close()

    _action("verify", flags, body)


@cli.command(name="rollback")
@config_options("rollback")
def rollback_cmd(**flags: Any) -> None:
    """
    Undo applied migrations with their .down.sql partners, newest first.

    Each down file runs together with the removal of its ledger row; when every
    down file in range is transactional, the whole rollback is one transaction
    (a refusing file leaves everything applied). Counts versioned migrations
    only. Refuses before changing anything when a partner in range is missing
    or --steps exceeds what is applied.

    Example:

        bootstrap rollback --steps 1
        bootstrap rollback --to 0
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import rollback

        steps, to_version = opts["steps"], opts["to_version"]
        if (steps is None) == (to_version is None):
            raise UsageError("give exactly one of --steps N or --to VERSION")
        _on_database(settings, log, lambda db, migrations: rollback(
            settings, log, db, outcome, steps=steps, to=to_version, migrations=migrations))

    _action("rollback", flags, body)


@cli.command(name="baseline")
@config_options("baseline")
def baseline_cmd(**flags: Any) -> None:
    """
    Record every version up to --version as applied, without running it.

    For adopting a database whose schema already exists: the rows are marked
    `source = baseline` in the ledger. Refuses when the ledger already has rows,
    unless --allow-existing (then only versions not yet recorded are added).

    Example:

        bootstrap baseline --version 20240101000000
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import baseline

        if opts["baseline_version"] is None:
            raise UsageError("missing --version VERSION (or BOOTSTRAP_BASELINE_VERSION)")
        _on_database(settings, log, lambda db, migrations: baseline(
            settings, log, db, outcome, version=opts["baseline_version"],
            allow_existing=opts["allow_existing"], migrations=migrations, echo=click.echo))

    _action("baseline", flags, body)


@cli.command(name="repair")
@config_options("repair")
def repair_cmd(**flags: Any) -> None:
    """
    Re-record the checksums of applied files after a reviewed, cosmetic edit.

    Lists each change it records (checksum, and name when a file was renamed
    with the same version) and changes nothing else: missing files are listed
    and left alone, repeatables are re-applied by migrate instead.

    Example:

        bootstrap repair --dry-run && bootstrap repair
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import repair

        _on_database(settings, log, lambda db, migrations: repair(
            settings, log, db, outcome, dry_run=opts["dry_run"], migrations=migrations, echo=click.echo))

    _action("repair", flags, body)


@cli.command(name="new")
@config_options("new")
@click.argument("description", nargs=-1, required=True)
def new_cmd(description: tuple[str, ...], **flags: Any) -> None:
    """
    Write the next migration file: sql/<UTC timestamp>_<slug>.sql.

    The file starts with a short header template; with --down its rollback
    partner is written too. Never overwrites. Needs no database.

    Example:

        bootstrap new add email to accounts --down
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .scaffold import create_migration

        created = create_migration(settings.sql_dir, " ".join(description), down=opts["with_down"])
        for path in (created.up, created.down):
            if path is not None:
                click.echo(str(path))
                log.info("migration_created", path=str(path))

    _action("new", flags, body)


@cli.command(name="adopt")
@config_options("adopt")
def adopt_cmd(**flags: Any) -> None:
    """
    Record as applied what node-pg-migrate, dbmate or Flyway already applied.

    Reads that tool's ledger in the same database (pgmigrations,
    schema_migrations, flyway_schema_history), matches its entries to files in
    sql/ by version, and records the matches (`source = adopted`). Lists what
    it matched, what it could not match and what stays pending; --dry-run
    changes nothing.

    Example:

        bootstrap adopt --from node-pg-migrate --dry-run
    """

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> None:
        from .runner import adopt

        if opts["adopt_from"] is None:
            raise UsageError("missing --from node-pg-migrate|dbmate|flyway (or BOOTSTRAP_ADOPT_FROM)")
        # --table arrives as (schema, table), checked with the other settings.
        _on_database(settings, log, lambda db, migrations: adopt(
            settings, log, db, outcome, tool_name=opts["adopt_from"], table=opts["adopt_table"],
            dry_run=opts["dry_run"], migrations=migrations, echo=click.echo))

    _action("adopt", flags, body)


@cli.command(name="run", context_settings={"allow_interspersed_args": False})
@config_options("run")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def run_cmd(command: tuple[str, ...], **flags: Any) -> None:
    """
    Wait, migrate, verify, then exec COMMAND: the app keeps the PID, gets the
    signals and owns the exit status.

    BOOTSTRAP_DATABASE_URL (and its _FILE) are removed from the app's
    environment. A command that is not found exits 127, one that is not
    executable 126. With --no-wait --no-migrate and no verify scripts (or
    --no-verify), the database is not contacted at all.

    Example:

        bootstrap run -- node server.js
    """
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    ctx = click.get_current_context()
    exec_fn: ExecFn | None = (ctx.obj or {}).get("exec") if isinstance(ctx.obj, dict) else None

    def body(settings: Settings, log: Any, outcome: Outcome, opts: dict[str, Any]) -> Callable[[], Any]:
        from .handoff import exec_app, resolve_command

        if not argv:
            raise UsageError("missing command: use `bootstrap run -- CMD [ARG...]`")
        env = app_environ(settings.environ)
        resolve_command(argv[0], env)  # 127/126 before touching anything
        from .migrations import discover_migrations
        from .runner import load_verify_scripts, migrate, verify, wait_for_database

        migrations = None if opts["no_migrate"] else discover_migrations(settings.sql_dir)
        scripts = [] if opts["no_verify"] else load_verify_scripts(settings.sql_dir)
        if migrations is not None or scripts or not opts["no_wait"]:
            db = wait_for_database(settings, log, wait=not opts["no_wait"])
            try:
                if migrations is not None:
                    migrate(settings, log, db, outcome, migrations)
                if scripts:
                    verify(log, db, scripts, outcome)
            finally:
                db.close()

        def handoff() -> None:
            log.info("app_exec_started", app=argv[0], arg_count=len(argv) - 1, pid=os.getpid())
            (exec_fn or exec_app)(argv, env)

        return handoff

    _action("run", flags, body)


def _print_status(plan: Any, as_json: bool) -> None:
    entries = plan.entries
    if as_json:
        import json

        doc = {
            "up_to_date": plan.up_to_date,
            "summary": plan.counts(),
            "migrations": [
                {
                    "version": e.version,
                    "name": e.name,
                    "kind": e.kind.value,
                    "state": e.state.value,
                    "checksum": e.migration.checksum if e.migration else None,
                    "applied_checksum": e.applied.checksum if e.applied else None,
                    "applied_at": e.applied.applied_at.isoformat()
                    if e.applied and e.applied.applied_at
                    else None,
                    "detail": e.detail or None,
                }
                for e in entries
            ],
        }
        click.echo(json.dumps(doc, indent=2))
        return
    rows = [("VERSION", "STATE", "NAME", "APPLIED AT", "DETAIL")]
    for e in entries:
        applied_at = (
            e.applied.applied_at.strftime("%Y-%m-%d %H:%M:%S%z") if e.applied and e.applied.applied_at else ""
        )
        rows.append((str(e.version) if e.version is not None else "R", e.state.value, e.name,
                     applied_at, e.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
        # Padding kept when a detail follows, so it stays in its column.
        click.echo(f"{line}  {r[4]}" if r[4] else line.rstrip())
    counts = plan.counts()
    click.echo(
        f"\n{len(entries)} migrations: "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + (" (up to date)" if plan.up_to_date else "")
    )


def _report_usage_error(exc: click.ClickException, args: Sequence[str]) -> None:
    """
    Show a usage error: click's text on a console, one `bootstrap_failed`
    JSON line when logs are JSON (so every stderr line stays parseable).
    """
    fmt = os.environ.get("BOOTSTRAP_LOG_FORMAT", "auto")
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--log-format" and i + 1 < len(args):
            fmt = args[i + 1]
        elif arg.startswith("--log-format="):
            fmt = arg.split("=", 1)[1]
    from .logs import configure_logging, get_logger, resolve_format

    try:
        fmt = resolve_format(parse_choice(fmt, LOG_FORMATS), sys.stderr)
    except ValueError:
        fmt = resolve_format("auto", sys.stderr)
    if fmt != "json":
        exc.show()
        return
    configure_logging("json")
    ctx = getattr(exc, "ctx", None)
    usage = ctx.get_usage() if ctx is not None else ""
    get_logger().error("bootstrap_failed", error=exc.format_message(), exit_code=exc.exit_code,
                       usage=usage.replace("\n", " ").strip() or None)


def main(argv: Sequence[str] | None = None, *, fast_exit: bool = False) -> NoReturn:
    """
    Run the CLI and exit with its code.

    Args:
        argv: the arguments (default: the process's).
        fast_exit: end with os._exit once output is flushed and connections are
            closed, skipping the interpreter's teardown of every loaded module
            (~60-80 ms after psycopg, on every container start). The console
            script does; callers embedding the CLI don't.
    """
    install_signal_handlers()
    args = list(argv) if argv is not None else sys.argv[1:]
    try:
        rv = cli.main(args=args, prog_name="bootstrap", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        _report_usage_error(exc, args)
        code = exc.exit_code
    except click.exceptions.Abort:
        code = int(ExitCode.INTERNAL)
    except SignalReceived as exc:
        code = exc.exit_code
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # Reader went away (`bootstrap status | head`): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    if fast_exit:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)
    sys.exit(code)
