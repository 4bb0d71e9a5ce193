"""
The connection string, parsed once, by libpq: connecting, naming the target in
logs and masking its secrets all read `parse_conninfo`'s result. The only text
handled before libpq is a URL's query, to drop Prisma's own parameters where
libpq would look for the query.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .. import redact
from ..errors import ConfigError
from ..settings import Settings

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Prisma's own URL parameters (its connection pool, its schema, its TLS files): libpq knows none of them, so
# one DATABASE_URL can serve a Prisma service and bootstrap. They are dropped, and a debug line says so.
PRISMA_PARAMETERS = frozenset({"schema", "connection_limit", "pool_timeout", "pgbouncer", "socket_timeout",
                               "statement_cache_size", "max_idle_connection_lifetime", "sslidentity", "sslaccept"})
_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)


NO_HOST = "localhost (socket)"  # no host anywhere: libpq's default Unix socket directories


class Target(NamedTuple):
    """Where bootstrap connects, as libpq resolves it, without the password: safe to log."""

    host: str
    port: str
    dbname: str
    user: str

    def as_log(self) -> dict[str, str]:
        """The fields to bind to log lines."""
        return self._asdict()


class Conninfo(NamedTuple):
    """
    The connection string as libpq parsed it.

    Attributes:
        dsn: what bootstrap connects with (another tool's URL parameters removed).
        params: libpq's parse of it.
        target: host, port, database and user, with libpq's PG* variables and defaults applied.
        ignored: the Prisma parameters that were removed.
        password_command: BOOTSTRAP_PASSWORD_COMMAND: its output is the password, fresh for each connection.
    """

    dsn: str
    params: dict[str, Any]
    target: Target
    ignored: tuple[str, ...]
    password_command: str | None = None

    def with_params(self, *, command_timeout: float = 30.0, **params: str) -> str:
        """
        The connection string to connect with now: these parameters added (never overriding the
        user's own) and, with a password command, the password it prints now (given `command_timeout`).

        Raises:
            ConfigError: the password command failed (exit 3).
        """
        extra = {k: v for k, v in params.items() if k not in self.params}
        if self.password_command:
            extra["password"] = password_from_command(self.password_command, command_timeout)
        return make_conninfo(self.dsn, **extra)

    def on_database(self, dbname: str) -> Conninfo:
        """The same connection to another database of the server (its maintenance database)."""
        return self._replace(dsn=make_conninfo(self.dsn, dbname=dbname))


PASSWORD_COMMAND_TIMEOUT_S = 30


def password_from_command(command: str, timeout: float = PASSWORD_COMMAND_TIMEOUT_S) -> str:
    """
    Run BOOTSTRAP_PASSWORD_COMMAND (with /bin/sh, like a credential helper) and take its output,
    without the trailing newline, as the password; the output is masked from then on.

    Raises:
        ConfigError: it could not run, failed, ran past `timeout` (it and its children are killed)
            or printed nothing; the message names the variable and the program, and quotes neither
            its output, nor its standard error, nor the rest of the command.
    """
    import os
    import shlex
    import signal
    import subprocess

    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    program = next((w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)), "?")  # not FOO=bar
    where = f"BOOTSTRAP_PASSWORD_COMMAND ({os.path.basename(program)} ...)"
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    except OSError as exc:
        raise ConfigError(f"{where} could not run: {exc.strerror or exc}",
                          variable="BOOTSTRAP_PASSWORD_COMMAND") from None
    try:
        out, _ = proc.communicate(timeout=max(timeout, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started
        proc.communicate()
        raise ConfigError(f"{where} did not finish within {max(timeout, 1.0):.0f}s",
                          variable="BOOTSTRAP_PASSWORD_COMMAND") from None
    password = out.rstrip("\r\n")
    redact.register_secret(password)
    if proc.returncode != 0:
        raise ConfigError(f"{where} failed (exit {proc.returncode}); run it yourself to see why",
                          variable="BOOTSTRAP_PASSWORD_COMMAND", exit_status=proc.returncode)
    if not password:
        raise ConfigError(f"{where} printed no password", variable="BOOTSTRAP_PASSWORD_COMMAND")
    return password


def parse_conninfo(settings: Settings) -> Conninfo:
    """
    Parse the connection string with libpq's own parser, and register its secrets for masking.

    Raises:
        ConfigError: it cannot be parsed, or what libpq made of it cannot be meant
            (an unencoded `@` or `/` in a URL's password, a port that is no number,
            an unknown sslmode). The message names the variable and quotes nothing
            of the string: a fragment of it may be a password.
    """
    raw, source = settings.database_url, settings.database_url_source
    redact.register_secret(raw)
    url = bool(_URL.match(raw))
    dsn, ignored = _without_prisma_parameters(raw) if url else (raw, ())
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"{source} is not a valid PostgreSQL connection string: {_parse_error(str(exc), url)}",
                          variable=source) from None
    for key in ("password", "sslpassword"):
        redact.register_secret(str(params.get(key) or ""))
    if url and any("@" in str(params.get(key) or "") for key in ("host", "hostaddr", "port", "dbname")):
        raise ConfigError(
            f"{source}: the URL holds an '@', '/' or '#' that libpq reads as the end of the user name or password "
            "(so part of the password would become the host or the database). Percent-encode those characters "
            "in the password ('@' is %40, '/' is %2F, '#' is %23), or give the connection as key=value pairs or "
            "the password in PGPASSWORD", variable=source)
    for key in ("port", "connect_timeout"):
        value = params.get(key)
        if value is not None and not all(part.strip().isdigit() for part in str(value).split(",")):
            raise ConfigError(f"{source}: the {key} is not a number"
                              + (" (a '/' in the URL's password ends its user info early: percent-encode it as %2F)"
                                 if url and key == "port" else ""), variable=source)
    sslmode = params.get("sslmode") or settings.environ.get("PGSSLMODE")
    if sslmode is not None and str(sslmode) not in SSLMODES:
        raise ConfigError(f"{source}: unknown sslmode {sslmode!r}; use one of {', '.join(SSLMODES)}", variable=source)
    return Conninfo(dsn, params, _target(params, settings.environ), ignored, settings.password_command)


def _without_prisma_parameters(url: str) -> tuple[str, tuple[str, ...]]:
    """A URL without Prisma's query parameters, found where libpq finds the query (after the host)."""
    rest = url.split("://", 1)[1]
    end_of_user = next((i for i, c in enumerate(rest) if c in "@/"), len(rest))
    host_at = end_of_user + 1 if end_of_user < len(rest) and rest[end_of_user] == "@" else 0
    query_at = rest.find("?", host_at)
    if query_at < 0:
        return url, ()
    kept: list[str] = []
    ignored: list[str] = []
    for pair in rest[query_at + 1 :].split("&"):
        (ignored if pair.split("=", 1)[0] in PRISMA_PARAMETERS else kept).append(pair)
    if not ignored:
        return url, ()
    head = url[: len(url) - len(rest) + query_at]
    return head + ("?" + "&".join(kept) if kept else ""), tuple(p.split("=", 1)[0] for p in ignored)


def _parse_error(message: str, url: bool) -> str:
    """libpq's parse error without the fragments it quotes (they may be part of a password)."""
    message = message.strip().splitlines()[0] if message.strip() else "cannot be parsed"
    query = re.match(r'invalid URI query parameter: "([^"]*)"', message)
    if url and query:  # a query key sits after the host: never part of a password
        return (f"unknown URL parameter {query.group(1)!r} (Prisma's are accepted and ignored; for another "
                "tool's, give bootstrap a URL of its own in BOOTSTRAP_DATABASE_URL)")
    if message.startswith("missing \"=\""):
        return "a word without '=' (in key=value form, quote a value that holds spaces: password='a b c')"
    return re.sub(r'"[^"]*"', "…", message)


def _target(params: Mapping[str, Any], env: Mapping[str, str]) -> Target:
    """What logs name: libpq's values, else its PG* variables, else its defaults."""
    user = params.get("user") or env.get("PGUSER") or _os_user()
    return Target(
        host=str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or env.get("PGHOSTADDR")
                 or NO_HOST),
        port=str(params.get("port") or env.get("PGPORT") or "5432"),
        dbname=str(params.get("dbname") or env.get("PGDATABASE") or user),
        user=str(user),
    )


def _os_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):  # pragma: no cover - non-POSIX or unnamed uid
        return os.environ.get("USER", "")
