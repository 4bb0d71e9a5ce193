"""
The one table of configuration: every flag, its environment variable, its
default and its help. The CLI builds its options from it, `settings` resolves
values through it, and a test keeps the README's configuration table equal to it.

Pure: imports nothing from the package.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple


class Option(NamedTuple):
    """
    One configurable value: its flag, its variable, its default and what it means.

    Attributes:
        kind: str (a value every command reads), bool, int, choice, text (a table name) or sql (a value
            taken as written: a query, a directory) (command-specific).
        commands: the commands that take it; () = every command.
        section: for a value every command takes, the --help section that lists it.
        shown: the commands whose --help lists it (() = all); the others accept it all the same.
        aliases: other spellings of the flag (`--url`).
    """

    key: str
    flag: str
    env: str
    default: str
    help: str
    kind: str = "str"
    commands: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    minimum: int = 0  # for kind int: the smallest value accepted
    section: str = ""
    shown: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()


def _switch(key: str, flag: str, env: str, commands: tuple[str, ...], help: str) -> Option:
    """A command-specific flag, off unless given."""
    return Option(key, flag, env, "false", help, kind="bool", commands=commands)


def _number(key: str, flag: str, env: str, commands: tuple[str, ...], help: str, *,
            minimum: int = 0) -> Option:
    """A command-specific whole number (a version, a count), unset unless given."""
    return Option(key, flag, env, "none", help, kind="int", commands=commands, minimum=minimum)


# The commands that compare the files with the ledger.
_PLANNING = ("migrate", "run", "status", "wait-migrated")
# Where each shared value matters (--help lists it there; every command accepts it).
_CONNECTING = ("wait-db", "migrate", "run", "status", "wait-migrated", "verify", "rollback", "baseline", "repair",
               "adopt", "lint", "up", "down")
_LEDGER = ("migrate", "run", "status", "wait-migrated", "rollback", "baseline", "repair", "adopt", "lint", "up", "down")
_LOCKING = ("migrate", "run", "rollback", "baseline", "repair", "adopt", "up", "down")
_RUNNING_FILES = ("migrate", "run", "rollback", "verify", "up", "down")
CONNECTION, FILES, LOGGING = "Connection", "Files, ledger and lock", "Logging"

# The one table of configuration; the CLI, the README and the tests read it.
OPTIONS: tuple[Option, ...] = (
    Option("database_url", "--database-url", "DATABASE_URL", "libpq's PG* variables",
           "PostgreSQL URL or key=value conninfo of the app's database.", section=CONNECTION, shown=_CONNECTING,
           aliases=("--url",)),
    Option("wait_timeout", "--timeout", "BOOTSTRAP_WAIT_TIMEOUT", "60",
           "Seconds to wait for the database to answer (wait-migrated: also for the migrations).",
           section=CONNECTION, shown=_CONNECTING),
    Option("create_database", "--create-database", "BOOTSTRAP_CREATE_DATABASE", "false",
           "In dev and CI: when the database named by the connection does not exist, create it (through the "
           "server's maintenance database), then go on.", kind="bool", section=CONNECTION, shown=_CONNECTING),
    Option("sql_dir", "--sql-dir", "BOOTSTRAP_SQL_DIR", "./sql", "Directory holding the migration files.",
           section=FILES, shown=(*(c for c in _CONNECTING if c != "wait-db"), "new")),
    Option("schemas", "--schemas", "BOOTSTRAP_SCHEMAS", "none",
           "Comma-separated schemas created (IF NOT EXISTS) before migrations.", section=FILES,
           shown=("migrate", "run", "baseline", "adopt", "up")),
    Option("ledger_table", "--ledger-table", "BOOTSTRAP_LEDGER_TABLE", "bootstrap.bootstrap_migrations",
           "Table recording applied migrations ([schema.]table). Unset, a database whose ledger is at "
           "public.bootstrap_migrations (the default before 0.2) keeps it there.", section=FILES, shown=_LEDGER),
    Option("role", "--role", "BOOTSTRAP_ROLE", "none",
           "Run every file (migrations, repeatables, after-scripts, verify) as this role (SET ROLE), so what they "
           "create is owned by it; the ledger is written by the login.", section=FILES, shown=_RUNNING_FILES),
    Option("lock_timeout", "--lock-timeout", "BOOTSTRAP_LOCK_TIMEOUT", "300",
           "Seconds to wait for another runner's migration lock.", section=FILES, shown=_LOCKING),
    Option("ddl_lock_timeout", "--ddl-lock-timeout", "BOOTSTRAP_DDL_LOCK_TIMEOUT", "5",
           "lock_timeout for migration statements; a file that cannot get its locks is rolled back and retried "
           "with backoff.", section=FILES, shown=_RUNNING_FILES),
    Option("ddl_lock_retries", "--ddl-lock-retries", "BOOTSTRAP_DDL_LOCK_RETRIES", "5",
           "How many times a file that could not get its locks is retried (backoff 0.5 s doubling, at most 8 s) "
           "before it fails.", section=FILES, shown=_RUNNING_FILES),
    Option("statement_timeout", "--statement-timeout", "BOOTSTRAP_STATEMENT_TIMEOUT", "none",
           "statement_timeout for migration statements (0 or none: no limit).", section=FILES,
           shown=_RUNNING_FILES),
    Option("log_format", "--log-format", "BOOTSTRAP_LOG_FORMAT", "auto",
           "auto (console on a TTY, JSON lines otherwise), json or console.", section=LOGGING),
    Option("log_level", "--log-level", "BOOTSTRAP_LOG_LEVEL", "info", "debug, info, warning or error.",
           section=LOGGING),
# -- command-specific: off (flags) or unset (values) unless given --
    _switch("out_of_order", "--out-of-order", "BOOTSTRAP_OUT_OF_ORDER", _PLANNING,
            "Accept pending versions older than the newest applied one (migrate applies them) instead of "
            "refusing them."),
    _switch("refuse_future", "--refuse-future", "BOOTSTRAP_REFUSE_FUTURE", _PLANNING,
            "Refuse (exit 6) versions a newer release applied, instead of warning and going on."),
    # migrate and run: lint what is about to run (off when squawk is not installed, unless error)
    Option("lint", "--lint", "BOOTSTRAP_LINT", "warn",
           "Lint the files about to run, before the lock: warn (the default: log the findings), error "
           "(refuse, exit 11, before anything changes) or off.", kind="choice", commands=("migrate", "run"),
           choices=("warn", "error", "off")),
    # fleets: the tenant files applied to every tenant (migrate, run, status, wait-migrated)
    Option("tenants_query", "--tenants-query", "BOOTSTRAP_TENANTS_QUERY", "none",
           "A query returning one text column: the tenants (schema names; database names with --tenant-kind "
           "database). When set, the tenant files are applied to (or checked on) every tenant.", kind="sql",
           commands=_PLANNING),
    Option("tenant_sql_dir", "--tenant-sql-dir", "BOOTSTRAP_TENANT_SQL_DIR", "<sql dir>/tenant",
           "Directory holding the files applied to each tenant.", kind="sql", commands=_PLANNING),
    Option("tenant_kind", "--tenant-kind", "BOOTSTRAP_TENANT_KIND", "schema",
           "What a tenant is: a schema of this database, or a database of this server.", kind="choice",
           commands=_PLANNING, choices=("schema", "database")),
    Option("jobs", "--jobs", "BOOTSTRAP_JOBS", "4", "Tenants worked on at once, each on a connection of its own.",
           kind="int", commands=_PLANNING, minimum=1),
    # migrate: before a deploy (--dry-run is below, shared with repair and adopt)
    _number("to_version", "--to", "BOOTSTRAP_MIGRATE_TO", ("migrate",),
            "Apply pending versions up to and including VERSION (a local file), then the repeatables."),
    _switch("rehearse", "--rehearse", "BOOTSTRAP_REHEARSE", ("migrate",),
            "Apply the pending transactional files in one transaction that is always rolled back, and report "
            "each; changes nothing."),
    _switch("as_json", "--json", "BOOTSTRAP_MIGRATE_JSON", ("migrate",),
            "With --dry-run, --rehearse or a fleet (--tenants-query): print one JSON document to stdout."),
    # run: the phases a replica may skip
    _switch("no_wait", "--no-wait", "BOOTSTRAP_NO_WAIT", ("run",), "Do not wait for the database (one attempt)."),
    _switch("no_migrate", "--no-migrate", "BOOTSTRAP_NO_MIGRATE", ("run",),
            "Do not migrate (replicas that must not migrate)."),
    _switch("no_verify", "--no-verify", "BOOTSTRAP_NO_VERIFY", ("run",), "Do not run the verify scripts."),
    _switch("wait_migrated", "--wait-migrated", "BOOTSTRAP_WAIT_MIGRATED", ("run",),
            "Do not migrate: wait (up to --timeout) until another runner applied every file, as wait-migrated does."),
    # status
    _switch("as_json", "--json", "BOOTSTRAP_STATUS_JSON", ("status",), "Print one JSON document to stdout."),
    # lint
    _switch("lint_all", "--all", "BOOTSTRAP_LINT_ALL", ("lint",), "Lint every file, not only the pending ones."),
    _switch("as_json", "--json", "BOOTSTRAP_LINT_JSON", ("lint",), "Print one JSON document to stdout."),
    _switch("exit_code", "--exit-code", "BOOTSTRAP_STATUS_EXIT_CODE", ("status",),
            "Exit 8 when anything is pending, changed or missing."),
    # rollback
    _number("steps", "--steps", "BOOTSTRAP_ROLLBACK_STEPS", ("rollback",),
            "Undo this many of the newest applied versions.", minimum=1),
    _number("to_version", "--to", "BOOTSTRAP_ROLLBACK_TO", ("rollback",),
            "Undo every applied version above VERSION (0: everything)."),
    # baseline
    _number("baseline_version", "--version", "BOOTSTRAP_BASELINE_VERSION", ("baseline",),
            "Record every version up to this one as applied, without running it."),
    _switch("allow_existing", "--allow-existing", "BOOTSTRAP_BASELINE_ALLOW_EXISTING", ("baseline",),
            "Baseline a ledger that already has rows (records only versions not recorded yet)."),
    # adopt (and the --dry-run of repair, adopt and migrate)
    Option("adopt_from", "--from", "BOOTSTRAP_ADOPT_FROM", "none", "The tool that migrated this database until now.",
           kind="choice", commands=("adopt",),
           choices=("node-pg-migrate", "dbmate", "flyway", "goose", "golang-migrate")),
    Option("adopt_table", "--table", "BOOTSTRAP_ADOPT_TABLE", "the tool's default",
           "Where that tool keeps its ledger ([schema.]table), if not its default.", kind="text",
           commands=("adopt",)),
    _switch("dry_run", "--dry-run", "BOOTSTRAP_DRY_RUN", ("repair", "adopt", "migrate"),
            "List what would change and change nothing (migrate: the plan; exit 8 when something would run)."),
    # new
    _switch("with_down", "--down", "BOOTSTRAP_NEW_DOWN", ("new",), "Also write the .down.sql rollback partner."),
)
# Command-specific options may share a key (and a flag) with a variable each: `--to` is
# rollback's (BOOTSTRAP_ROLLBACK_TO) and migrate's (BOOTSTRAP_MIGRATE_TO). Settings look up
# the global ones and out_of_order/refuse_future/lint here, which are unique.
OPTION_BY_KEY = {o.key: o for o in OPTIONS}


# -- reading values: each kind of option has one parser, shared by flags and variables --

_DURATION = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>ms|s|sec|m|min|h)?\s*$", re.I)
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
# The ledger when none is named: in a schema of its own, so that `public` stays empty for tools that
# refuse a non-empty one (Prisma's first `migrate deploy`: P3005). A database whose ledger is where the
# default was before 0.2 keeps using it there; runners of both serialise on that one's lock key.
DEFAULT_LEDGER = ("bootstrap", "bootstrap_migrations")
LEGACY_LEDGER = ("public", "bootstrap_migrations")
# Names bootstrap creates itself: plain lowercase identifiers, as unquoted SQL would fold them.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]*$")
_MAX_IDENTIFIER_BYTES = 63


def parse_duration(text: str, *, allow_none: bool = False) -> float | None:
    """
    Parse a duration: seconds as a number (`60`, `2.5`) or with a unit (`500ms`, `30s`, `5min`, `1h`).

    Args:
        text: the raw value.
        allow_none: accept `0`, `none` and `off` as "no limit" (returns None).

    Returns:
        Seconds, or None for "no limit".

    Raises:
        ValueError: with a message saying what is accepted.
    """
    raw = text.strip()
    if allow_none and raw.lower() in ("none", "off", "0", "0s", "0ms"):
        return None
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(
            f"{text!r} is not a duration (use seconds such as 60 or 2.5, or 500ms, 30s, 5min)"
        )
    seconds = float(match.group("num")) * _UNIT_SECONDS[(match.group("unit") or "").lower() or None]
    if not math.isfinite(seconds):
        raise ValueError(f"{text!r} is not a finite duration")
    return seconds


def parse_identifier(text: str, what: str) -> str:
    """
    Check one schema or table name bootstrap will create.

    Args:
        text: the name, already stripped.
        what: how to call it in the error ("schema", "table").

    Returns:
        The name.

    Raises:
        ValueError: when the name is empty, not a plain lowercase identifier,
            too long, or reserved (`pg_*`).
    """
    if not text:
        raise ValueError(f"empty {what} name")
    if not _IDENTIFIER.match(text):
        raise ValueError(
            f"{what} name {text!r} is not a plain lowercase identifier "
            "(letters a-z, digits, _ and $, not starting with a digit)"
        )
    if len(text.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{what} name {text!r} is longer than 63 bytes")
    if text.startswith("pg_"):
        raise ValueError(f"{what} name {text!r} is reserved: names starting with pg_ are PostgreSQL's")
    return text


def parse_schemas(text: str) -> tuple[str, ...]:
    """
    Parse `BOOTSTRAP_SCHEMAS`: comma-separated names, spaces around them ignored.

    Returns:
        The names, in order, without duplicates.
    """
    names: list[str] = []
    for part in text.split(","):
        if not part.strip():
            continue  # "a,b," and "a,,b": an empty item is a typo, not a schema
        name = parse_identifier(part.strip(), "schema")
        if name not in names:
            names.append(name)
    return tuple(names)


def parse_role(text: str) -> str:
    """Parse `BOOTSTRAP_ROLE`: one plain lowercase name, as unquoted SQL folds it."""
    return parse_identifier(text.strip(), "role")


def parse_ledger_table(text: str) -> tuple[str, str]:
    """
    Parse `BOOTSTRAP_LEDGER_TABLE`: `schema.table`, or `table` (in `public`).

    Returns:
        (schema, table)
    """
    parts = text.strip().split(".")
    if len(parts) == 1:
        return "public", parse_identifier(parts[0], "table")
    if len(parts) == 2:
        return parse_identifier(parts[0], "schema"), parse_identifier(parts[1], "table")
    raise ValueError(f"{text!r} is not a table name (use table or schema.table)")


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def parse_bool(text: str) -> bool:
    """`1/true/yes/on` or `0/false/no/off` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_count(text: str, minimum: int) -> int:
    """A whole number no smaller than `minimum`."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise ValueError(f"{value} is below the minimum {minimum}")
    return value


def parse_choice(text: str, choices: tuple[str, ...]) -> str:
    """Return `text` lowercased when it is one of `choices`, else raise ValueError."""
    value = text.strip().lower()
    if value == "warn" and "warning" in choices:  # log levels; --lint's choice is warn itself
        value = "warning"
    if value not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return value
