"""
Settings: flags and environment variables resolved once, validated, frozen.

A flag wins over its variable; a variable wins over the default. Secrets may
come from `NAME_FILE` (as the official database images do). Every value is
checked here, before anything touches the database, and a bad one raises
`ConfigError` naming the variable or flag at fault.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import redact
from .errors import ConfigError

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

# The migrator connection's variables: used by bootstrap, hidden from the app.
MIGRATOR_URL_VARS = ("BOOTSTRAP_DATABASE_URL", "BOOTSTRAP_DATABASE_URL_FILE")
SECRET_VARS = ("DATABASE_URL", "BOOTSTRAP_DATABASE_URL")


class Option(NamedTuple):
    """One configurable value: its flag, its variable, its default and what it means."""

    key: str
    flag: str
    env: str
    default: str
    help: str
    kind: str = "str"  # str, bool, int, choice or text (command-specific str)
    commands: tuple[str, ...] = ()  # the commands that take it; () = every command
    choices: tuple[str, ...] = ()


# The one table of configuration; the CLI, the README and the tests read it.
OPTIONS: tuple[Option, ...] = (
    Option(
        "database_url",
        "--database-url",
        "DATABASE_URL",
        "libpq's PG* variables",
        "PostgreSQL URL or key=value conninfo of the app's database.",
    ),
    Option(
        "sql_dir",
        "--sql-dir",
        "BOOTSTRAP_SQL_DIR",
        "./sql",
        "Directory holding the migration files.",
    ),
    Option(
        "schemas",
        "--schemas",
        "BOOTSTRAP_SCHEMAS",
        "none",
        "Comma-separated schemas created (IF NOT EXISTS) before migrations.",
    ),
    Option(
        "wait_timeout",
        "--timeout",
        "BOOTSTRAP_WAIT_TIMEOUT",
        "60",
        "Seconds to wait for the database to answer.",
    ),
    Option(
        "lock_timeout",
        "--lock-timeout",
        "BOOTSTRAP_LOCK_TIMEOUT",
        "300",
        "Seconds to wait for another runner's migration lock.",
    ),
    Option(
        "ledger_table",
        "--ledger-table",
        "BOOTSTRAP_LEDGER_TABLE",
        "public.bootstrap_migrations",
        "Table recording applied migrations ([schema.]table).",
    ),
    Option(
        "ddl_lock_timeout",
        "--ddl-lock-timeout",
        "BOOTSTRAP_DDL_LOCK_TIMEOUT",
        "5",
        "lock_timeout for migration statements; a file that cannot get its locks "
        "is rolled back and retried with backoff.",
    ),
    Option(
        "ddl_lock_retries",
        "--ddl-lock-retries",
        "BOOTSTRAP_DDL_LOCK_RETRIES",
        "5",
        "How many times a file that could not get its locks is retried (backoff 0.5 s doubling, "
        "at most 8 s) before it fails.",
    ),
    Option(
        "statement_timeout",
        "--statement-timeout",
        "BOOTSTRAP_STATEMENT_TIMEOUT",
        "none",
        "statement_timeout for migration statements (0 or none: no limit).",
    ),
    Option(
        "log_format",
        "--log-format",
        "BOOTSTRAP_LOG_FORMAT",
        "auto",
        "auto (console on a TTY, JSON lines otherwise), json or console.",
    ),
    Option(
        "log_level",
        "--log-level",
        "BOOTSTRAP_LOG_LEVEL",
        "info",
        "debug, info, warning or error.",
    ),
    Option(
        "out_of_order",
        "--out-of-order",
        "BOOTSTRAP_OUT_OF_ORDER",
        "false",
        "Apply pending versions older than the newest applied one instead of refusing.",
        kind="bool",
        commands=("migrate", "run", "status"),
    ),
    Option("no_wait", "--no-wait", "BOOTSTRAP_NO_WAIT", "false",
           "Do not wait for the database (one attempt).", kind="bool", commands=("run",)),
    Option("no_migrate", "--no-migrate", "BOOTSTRAP_NO_MIGRATE", "false",
           "Do not migrate (replicas that must not migrate).", kind="bool", commands=("run",)),
    Option("no_verify", "--no-verify", "BOOTSTRAP_NO_VERIFY", "false",
           "Do not run the verify scripts.", kind="bool", commands=("run",)),
    Option("as_json", "--json", "BOOTSTRAP_STATUS_JSON", "false",
           "Print one JSON document to stdout.", kind="bool", commands=("status",)),
    Option("exit_code", "--exit-code", "BOOTSTRAP_STATUS_EXIT_CODE", "false",
           "Exit 8 when anything is pending, changed or missing.", kind="bool", commands=("status",)),
    Option("steps", "--steps", "BOOTSTRAP_ROLLBACK_STEPS", "none",
           "Undo this many of the newest applied versions.", kind="int", commands=("rollback",)),
    Option("to_version", "--to", "BOOTSTRAP_ROLLBACK_TO", "none",
           "Undo every applied version above VERSION (0: everything).", kind="int",
           commands=("rollback",)),
    Option("baseline_version", "--version", "BOOTSTRAP_BASELINE_VERSION", "none",
           "Record every version up to this one as applied, without running it.", kind="int",
           commands=("baseline",)),
    Option("allow_existing", "--allow-existing", "BOOTSTRAP_BASELINE_ALLOW_EXISTING", "false",
           "Baseline a ledger that already has rows (records only versions not recorded yet).",
           kind="bool", commands=("baseline",)),
    Option("adopt_from", "--from", "BOOTSTRAP_ADOPT_FROM", "none",
           "The tool that migrated this database until now.", kind="choice", commands=("adopt",),
           choices=("node-pg-migrate", "dbmate", "flyway")),
    Option("adopt_table", "--table", "BOOTSTRAP_ADOPT_TABLE", "the tool's default",
           "Where that tool keeps its ledger ([schema.]table), if not its default.", kind="text",
           commands=("adopt",)),
    Option("dry_run", "--dry-run", "BOOTSTRAP_DRY_RUN", "false",
           "List what would change and change nothing.", kind="bool", commands=("repair", "adopt")),
    Option("with_down", "--down", "BOOTSTRAP_NEW_DOWN", "false",
           "Also write the .down.sql rollback partner.", kind="bool", commands=("new",)),
)
OPTION_BY_KEY = {o.key: o for o in OPTIONS}

_DURATION = re.compile(r"^\s*(?P<num>[0-9]*\.?[0-9]+)\s*(?P<unit>ms|s|sec|m|min|h)?\s*$", re.I)
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
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


def command_flags(
    command: str, flags: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """
    The command-specific flags (`--no-migrate`, `--steps`...), each falling back
    to its variable.

    Raises:
        ConfigError: a variable holds an invalid value (naming it).
    """
    environ = os.environ if environ is None else environ
    return {
        option.key: _command_value(option, flags, environ)
        for option in OPTIONS
        if option.kind != "str" and command in option.commands
    }


def _command_value(option: Option, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Any:
    """One command-specific option: its flag, else its variable (parsed), else its default."""
    value = flags.get(option.key)
    if value is not None and option.kind == "text":
        # A name checked like the ledger's: a bad one is a configuration error
        # naming the flag, as for --ledger-table.
        try:
            value = _parse_command_value(option, str(value))
        except ValueError as exc:
            raise ConfigError(f"{option.flag}: {exc}", variable=option.flag) from None
    if value is None:
        raw = environ.get(option.env)
        if raw is not None and raw.strip():
            try:
                value = _parse_command_value(option, raw)
            except ValueError as exc:
                raise ConfigError(f"{option.env}: {exc}", variable=option.env) from None
    if value is None and option.kind == "bool":
        value = False
    return value


def _parse_command_value(option: Option, raw: str) -> Any:
    if option.kind == "bool":
        return parse_bool(raw)
    if option.kind == "int":
        return parse_count(raw, 1 if option.key == "steps" else 0)
    if option.kind == "choice":
        return parse_choice(raw, option.choices)
    if option.kind == "text":  # adopt --table: [schema.]table
        return parse_ledger_table(raw)
    return raw.strip()


def parse_choice(text: str, choices: tuple[str, ...]) -> str:
    """Return `text` lowercased when it is one of `choices`, else raise ValueError."""
    value = text.strip().lower()
    if value == "warn":
        value = "warning"
    if value not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return value


class Target(NamedTuple):
    """Where bootstrap connects, without the password: safe to log."""

    host: str
    port: str
    dbname: str
    user: str

    def as_log(self) -> dict[str, str]:
        """The fields to bind to log lines."""
        return {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}


class Settings(NamedTuple):
    """
    Everything a command needs, resolved and validated. The DSN stays out of repr.

    Value types are NamedTuples rather than dataclasses on bootstrap's start-up
    path: creating a slotted dataclass class costs ~1.4 ms at import, a
    NamedTuple ~0.25 ms, and every container start pays for each.
    """

    database_url: str = ""
    database_url_source: str = "libpq PG* variables"
    sql_dir: Path = Path("sql")
    schemas: tuple[str, ...] = ()
    wait_timeout: float = 60.0
    lock_timeout: float = 300.0
    ledger_schema: str = "public"
    ledger_table: str = "bootstrap_migrations"
    ddl_lock_timeout: float | None = 5.0
    ddl_lock_retries: int = 5
    statement_timeout: float | None = None
    log_format: str = "auto"
    log_level: str = "info"
    out_of_order: bool = False
    environ: Mapping[str, str] = {}

    def __repr__(self) -> str:
        # Never the DSN (it may hold a password), never the environment.
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields if k not in ("database_url", "environ"))
        return f"Settings({shown})"

    @property
    def ledger_name(self) -> str:
        """The ledger as `schema.table`, for messages."""
        return f"{self.ledger_schema}.{self.ledger_table}"

    def safe_target(self) -> Target:
        """Host, port, database and user of the connection, as libpq would resolve them."""
        return describe_target(self.database_url, self.environ)


def _describe_kv(dsn: str) -> dict[str, str]:
    """Parse the `key=value` conninfo form just enough to name the target."""
    out: dict[str, str] = {}
    for match in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)", dsn):
        value = match.group(2)
        if value.startswith("'"):
            value = value[1:-1].replace("\\'", "'")
        out[match.group(1)] = value
    return out


def describe_target(dsn: str, environ: Mapping[str, str]) -> Target:
    """
    Name the database a connection string points at, for logs, without parsing
    it with libpq (so `--help` never imports the driver).

    Args:
        dsn: URL or key=value conninfo; "" for libpq's PG* variables.
        environ: the environment, for PG* fallbacks.
    """
    parts: dict[str, str] = {}
    if dsn.startswith(("postgresql://", "postgres://")):
        from urllib.parse import unquote, urlsplit

        url = urlsplit(dsn)
        netloc = url.netloc.rpartition("@")[2]
        hostport = re.match(r"^(\[[^\]]*\]|[^:]*)(?::([0-9]*))?$", netloc)
        host, port = (hostport.group(1), hostport.group(2) or "") if hostport else (netloc, "")
        user = url.netloc.rpartition("@")[0].partition(":")[0]
        parts = {
            "host": unquote(host.strip("[]")),
            "port": port,
            "dbname": unquote(url.path.lstrip("/")),
            "user": unquote(user),
        }
        for key, value in (p.split("=", 1) for p in url.query.split("&") if "=" in p):
            if key in ("host", "port", "dbname", "user"):
                parts[key] = unquote(value)
    elif dsn:
        parts = _describe_kv(dsn)
    user = parts.get("user") or environ.get("PGUSER") or _os_user()
    return Target(
        host=parts.get("host") or environ.get("PGHOST") or "localhost (socket)",
        port=parts.get("port") or environ.get("PGPORT") or "5432",
        dbname=parts.get("dbname") or environ.get("PGDATABASE") or user,
        user=user,
    )


def _os_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - non-POSIX or unnamed uid
        return os.environ.get("USER", "")


def _refuse_both(environ: Mapping[str, str], name: str) -> None:
    """`X` and `X_FILE` both set is a configuration error, whichever would be used."""
    if environ.get(name) and environ.get(f"{name}_FILE"):
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one", variable=name)


def env_value(environ: Mapping[str, str], name: str) -> tuple[str | None, str]:
    """
    Read `name` or `name_FILE` from the environment.

    Args:
        environ: the environment.
        name: the variable, e.g. `DATABASE_URL`.

    Returns:
        (value, source): value None when neither is set (an empty value counts
        as unset); source names where the value came from, for messages.

    Raises:
        ConfigError: both are set, or the file cannot be read.
    """
    direct = environ.get(name) or None
    file_var = f"{name}_FILE"
    path = environ.get(file_var) or None
    _refuse_both(environ, name)
    if path is None:
        return direct, name
    try:
        with open(path, encoding="utf-8") as fh:
            content = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{file_var}: cannot read {path}: {reason}", variable=file_var) from None
    value = content.rstrip("\r\n")
    redact.register_url_secrets(value)
    redact.register_secret(value)
    return (value or None), f"{file_var} ({path})"


def _pick(
    flags: Mapping[str, Any], environ: Mapping[str, str], key: str
) -> tuple[Any, str] | None:
    """The flag's value with its name, else the variable's, else None."""
    option = OPTION_BY_KEY[key]
    if flags.get(key) is not None:
        return flags[key], option.flag
    value, source = env_value(environ, option.env) if option.env in SECRET_VARS else (
        environ.get(option.env) or None,
        option.env,
    )
    if value is None:
        return None
    return value, source


def _parsed(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    key: str,
    parse: Any,
    default: Any,
) -> Any:
    picked = _pick(flags, environ, key)
    if picked is None:
        return default
    value, source = picked
    if not isinstance(value, str):  # already parsed by the CLI's parameter type
        return value
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}", variable=source) from None


def load_settings(
    flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """
    Resolve every setting from flags, then variables, then defaults.

    Args:
        flags: option values from the command line; None means "not given".
        environ: the environment (defaults to `os.environ`).

    Returns:
        Validated, frozen settings.

    Raises:
        ConfigError: a value is invalid, or `X` and `X_FILE` are both set.
    """
    flags = flags or {}
    environ = dict(os.environ if environ is None else environ)
    redact.register_secret(environ.get("PGPASSWORD"))
    if flags.get("database_url") is not None:
        # The flag wins: the variables are not read (X with X_FILE is still an error).
        for name in SECRET_VARS:
            _refuse_both(environ, name)
        database_url, url_source = str(flags["database_url"]), "--database-url"
    else:
        # Read every secret variable: a conflict or unreadable file is an error even
        # when the other variable wins (DATABASE_URL_FILE is the app's, read by it
        # after exec: better refused before).
        secret_values = {name: env_value(environ, name) for name in SECRET_VARS}
        for value, _source in secret_values.values():
            redact.register_url_secrets(value)
        bootstrap_url, bootstrap_source = secret_values["BOOTSTRAP_DATABASE_URL"]
        app_url, app_source = secret_values["DATABASE_URL"]
        if bootstrap_url is not None:
            database_url, url_source = bootstrap_url, bootstrap_source
        elif app_url is not None:
            database_url, url_source = app_url, app_source
        else:
            database_url, url_source = "", "libpq PG* variables"
    redact.register_url_secrets(database_url)

    ledger_schema, ledger_table = _parsed(
        flags, environ, "ledger_table", parse_ledger_table, ("public", "bootstrap_migrations")
    )
    return Settings(
        database_url=database_url,
        database_url_source=url_source,
        sql_dir=Path(_parsed(flags, environ, "sql_dir", str, "sql")),
        schemas=_parsed(flags, environ, "schemas", parse_schemas, ()),
        wait_timeout=_parsed(flags, environ, "wait_timeout", parse_duration, 60.0),
        lock_timeout=_parsed(flags, environ, "lock_timeout", parse_duration, 300.0),
        ledger_schema=ledger_schema,
        ledger_table=ledger_table,
        ddl_lock_timeout=_parsed(
            flags,
            environ,
            "ddl_lock_timeout",
            lambda v: parse_duration(v, allow_none=True),
            5.0,
        ),
        ddl_lock_retries=_parsed(flags, environ, "ddl_lock_retries", lambda v: parse_count(v, 0), 5),
        statement_timeout=_parsed(
            flags,
            environ,
            "statement_timeout",
            lambda v: parse_duration(v, allow_none=True),
            None,
        ),
        log_format=_parsed(flags, environ, "log_format", lambda v: parse_choice(v, LOG_FORMATS), "auto"),
        log_level=_parsed(flags, environ, "log_level", lambda v: parse_choice(v, LOG_LEVELS), "info"),
        out_of_order=bool(_command_value(OPTION_BY_KEY["out_of_order"], flags, environ)),
        environ=environ,
    )


def app_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """
    The environment the app is exec'd with: the migrator's connection removed.

    Args:
        environ: bootstrap's own environment.
    """
    return {k: v for k, v in environ.items() if k not in MIGRATOR_URL_VARS}
