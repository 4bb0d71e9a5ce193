"""
Settings: flags and environment variables resolved once, validated, frozen.

A flag wins over its variable; a variable wins over the default. Secrets may
come from `NAME_FILE` (as the official database images do). Every value is
checked here, before anything touches the database, and a bad one raises
`ConfigError` naming the variable or flag at fault.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from . import redact
from .errors import ConfigError
from .options import (
    DEFAULT_LEDGER,
    LEGACY_LEDGER,
    OPTION_BY_KEY,
    OPTIONS,
    Option,
    parse_bool,
    parse_choice,
    parse_count,
    parse_duration,
    parse_ledger_table,
    parse_role,
    parse_schemas,
)

LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")

# The migrator connection's variables: used by bootstrap, hidden from the app.
MIGRATOR_URL_VARS = ("BOOTSTRAP_DATABASE_URL", "BOOTSTRAP_DATABASE_URL_FILE")
# A command whose output is the password, run before each connection attempt (short-lived tokens: RDS, Cloud SQL).
PASSWORD_COMMAND = "BOOTSTRAP_PASSWORD_COMMAND"  # noqa: S105 - a variable name
SECRET_VARS = ("DATABASE_URL", "BOOTSTRAP_DATABASE_URL")



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
        return parse_count(raw, option.minimum)
    if option.kind == "choice":
        return parse_choice(raw, option.choices)
    if option.kind == "text":  # adopt --table: [schema.]table
        return parse_ledger_table(raw)
    return raw.strip()


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
    ledger_schema: str = DEFAULT_LEDGER[0]
    ledger_table: str = DEFAULT_LEDGER[1]
    ledger_default: bool = True  # neither --ledger-table nor BOOTSTRAP_LEDGER_TABLE: the legacy place counts too
    ddl_lock_timeout: float | None = 5.0
    ddl_lock_retries: int = 5
    statement_timeout: float | None = None
    log_format: str = "auto"
    log_level: str = "info"
    out_of_order: bool = False
    refuse_future: bool = False
    create_database: bool = False
    role: str | None = None  # --role: what files run as
    tenants_query: str | None = None  # --tenants-query: the fleet's tenants (schema or database names)
    tenant_sql_dir: Path | None = None  # --tenant-sql-dir: the tenants' files (default <sql dir>/tenant)
    tenant_kind: str = "schema"  # --tenant-kind: schema or database
    jobs: int = 4  # --jobs: tenants migrated at once
    tenant: str | None = None  # set on the settings of one tenant's work (tenancy.tenant_settings), never by a flag
    password_command: str | None = None  # BOOTSTRAP_PASSWORD_COMMAND: run before each connection attempt
    lint: str = "warn"  # migrate and run: lint what is about to run (warn, error or off)
    environ: Mapping[str, str] = {}

    def __repr__(self) -> str:
        # Never the DSN (it may hold a password), never the environment.
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._fields if k not in ("database_url", "environ"))
        return f"Settings({shown})"

    @property
    def lock_ledger(self) -> tuple[str, str]:
        """The ledger whose advisory key runners serialise on: for the default one, the legacy place's."""
        return LEGACY_LEDGER if self.ledger_default else (self.ledger_schema, self.ledger_table)


def _refuse_both(environ: Mapping[str, str], name: str) -> None:
    """`X` and `X_FILE` both set is a configuration error, whichever would be used."""
    if environ.get(name) and environ.get(f"{name}_FILE"):
        raise ConfigError(f"both {name} and {name}_FILE are set; set only one", variable=name)


def env_value(environ: Mapping[str, str], name: str, *, empty: bool = False) -> tuple[str | None, str]:
    """
    Read `name` or `name_FILE` from the environment.

    Args:
        environ: the environment.
        name: the variable, e.g. `DATABASE_URL`.
        empty: an empty value is a value (a placeholder's, as psql -v takes it), not "unset".

    Returns:
        (value, source): value None when neither is set (an empty value counts
        as unset unless `empty`); source names where the value came from, for messages.

    Raises:
        ConfigError: both are set, or the file cannot be read.
    """
    direct = environ.get(name) if empty else (environ.get(name) or None)
    file_var = f"{name}_FILE"
    path = environ.get(file_var) or None
    if empty and direct is not None and path is not None:
        raise ConfigError(f"both {name} and {file_var} are set; set only one", variable=name)
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
    redact.register_secret(value)
    return (value if empty else value or None), f"{file_var} ({path})"


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
            redact.register_secret(value)  # whole; the password inside is registered by the one parse (pg)
        bootstrap_url, bootstrap_source = secret_values["BOOTSTRAP_DATABASE_URL"]
        app_url, app_source = secret_values["DATABASE_URL"]
        if bootstrap_url is not None:
            database_url, url_source = bootstrap_url, bootstrap_source
        elif app_url is not None:
            database_url, url_source = app_url, app_source
        else:
            database_url, url_source = "", "libpq PG* variables"

    ledger_schema, ledger_table = _parsed(flags, environ, "ledger_table", parse_ledger_table, DEFAULT_LEDGER)
    return Settings(
        database_url=database_url,
        database_url_source=url_source,
        sql_dir=Path(_parsed(flags, environ, "sql_dir", str, "sql")),
        schemas=_parsed(flags, environ, "schemas", parse_schemas, ()),
        wait_timeout=_parsed(flags, environ, "wait_timeout", parse_duration, 60.0),
        lock_timeout=_parsed(flags, environ, "lock_timeout", parse_duration, 300.0),
        ledger_schema=ledger_schema,
        ledger_table=ledger_table,
        ledger_default=_pick(flags, environ, "ledger_table") is None,
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
        refuse_future=bool(_command_value(OPTION_BY_KEY["refuse_future"], flags, environ)),
        create_database=bool(_command_value(OPTION_BY_KEY["create_database"], flags, environ)),
        lint=_command_value(OPTION_BY_KEY["lint"], flags, environ) or "warn",
        role=_parsed(flags, environ, "role", parse_role, None),
        tenants_query=_command_value(OPTION_BY_KEY["tenants_query"], flags, environ) or None,
        tenant_sql_dir=_path_or_none(_command_value(OPTION_BY_KEY["tenant_sql_dir"], flags, environ)),
        tenant_kind=_command_value(OPTION_BY_KEY["tenant_kind"], flags, environ) or "schema",
        jobs=_command_value(OPTION_BY_KEY["jobs"], flags, environ) or 4,
        password_command=environ.get(PASSWORD_COMMAND, "").strip() or None,
        environ=environ,
    )


def _path_or_none(value: Any) -> Path | None:
    return Path(str(value)) if value else None


def app_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """
    The environment the app is exec'd with: the migrator's connection removed.

    Args:
        environ: bootstrap's own environment.
    """
    return {k: v for k, v in environ.items() if k not in MIGRATOR_URL_VARS}
