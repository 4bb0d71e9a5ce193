"""
Reaching the server: the connection string parsed once (by libpq), connecting,
and waiting for the database with backoff, telling transient failures (wait)
from permanent ones (fail fast, exit 3).

`parse_conninfo` is the one parse of the connection string: connecting, naming
the target in logs and masking its secrets all read its result. bootstrap sends
no startup `options` (connection poolers refuse them); its timeouts travel
inside the work instead.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .. import redact
from ..backoff import WAIT, Backoff, retry
from ..errors import ConfigError, DatabaseUnavailableError
from ..settings import Settings
from ..typing import Logger

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_CONNECT_TIMEOUT_S = 10
# The pooler probe's own connection (pooler.py): libpq's shortest that works; the probe gives up, never waits.
PROBE_CONNECT_TIMEOUT_S = 2
# A peer that stops answering (a partition, a dead node) is noticed within about 30 s, on both sides:
# libpq's keepalives and TCP user timeout here, the server's own for the session (session.py).
KEEPALIVE = {"keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5", "keepalives_count": "3",
             "tcp_user_timeout": "30000"}
# Prisma's own URL parameters (its connection pool, its schema, its TLS files): libpq knows none of them, so
# one DATABASE_URL can serve a Prisma service and bootstrap. They are dropped, and a debug line says so.
PRISMA_PARAMETERS = frozenset({"schema", "connection_limit", "pool_timeout", "pgbouncer", "socket_timeout",
                               "statement_cache_size", "max_idle_connection_lifetime", "sslidentity", "sslaccept"})
_URL = re.compile(r"^postgres(?:ql)?://", re.IGNORECASE)

# Classifying connection failures: libpq reports them as text, without SQLSTATE. Kinds, and what libpq says.
_TRANSIENT = {
    "connection_refused": ("connection refused",),
    "socket_missing": ("no such file or directory",),
    "dns_unresolved": ("failed to resolve host", "could not translate host name", "name or service not known",
                       "temporary failure in name resolution", "nodename nor servname", "no address associated"),
    "starting_up": ("is starting up", "not yet accepting connections", "in recovery mode"),
    "shutting_down": ("is shutting down",),
    "too_many_connections": ("too many clients", "too many connections", "remaining connection slots"),
    "timeout": ("timeout expired", "timed out"),
    "connection_lost": ("server closed the connection", "connection reset", "terminating connection",
                        "could not receive data", "could not send data", "broken pipe"),
    "network_unreachable": ("no route to host", "network is unreachable", "host is unreachable"),
}
_PERMANENT = {
    # A connection pooler (PgBouncer, Neon's, Supavisor) refusing a startup parameter of the user's
    # connection string or PGOPTIONS: waiting never helps.
    "startup_parameter_refused": ("unsupported startup parameter",),
    "authentication_failed": ("password authentication failed", "authentication failed"),
    "password_missing": ("no password supplied",),
    "login_not_permitted": ("is not permitted to log in",),
    "access_denied": ("pg_hba.conf", "permission denied"),
    "not_found": ("does not exist",),
    "ssl_config": ("ssl was required", "does not support ssl", "certificate"),
    "config": ("invalid ", 'missing "="'),
}
_HINTS = {
    "startup_parameter_refused": "; a connection pooler refuses that startup parameter: remove it from the "
                                 "connection string and PGOPTIONS (bootstrap itself sends none)",
}


class Failure(NamedTuple):
    """A classified connection failure."""

    transient: bool
    kind: str
    message: str


def classify(exc: BaseException) -> Failure:
    """
    Tell a transient connection failure (retry) from a permanent one (fail fast).

    Unknown failures are treated as transient, so a server starting up with a
    localised message still gets waited for; wrong credentials and bad
    settings, which libpq reports in English, fail at once.
    """
    message = str(exc).strip()
    lowered = message.lower()
    for transient, table in ((False, _PERMANENT), (True, _TRANSIENT)):
        for kind, patterns in table.items():
            if any(pattern in lowered for pattern in patterns):
                return Failure(transient, kind, message)
    return Failure(True, "unknown", message)


# -- the connection string, parsed once ------------------------------------------------------------


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
    """

    dsn: str
    params: dict[str, Any]
    target: Target
    ignored: tuple[str, ...]

    def with_params(self, **params: str) -> str:
        """The connection string with these parameters added (never overriding the user's own)."""
        return make_conninfo(self.dsn, **{k: v for k, v in params.items() if k not in self.params})


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
    return Conninfo(dsn, params, _target(params, settings.environ), ignored)


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


# -- connecting and waiting ------------------------------------------------------------------------


class Ready(NamedTuple):
    """An open connection that answered, and the server backend's own pid (to tell a pooler from the server)."""

    conn: psycopg.Connection[Any]
    server_pid: int


def connect_once(conninfo: Conninfo, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S) -> psycopg.Connection[Any]:
    """
    One connection with bootstrap's parameters: autocommit, no prepared statements
    of psycopg's own choosing, UTF-8, TCP keepalives and a TCP user timeout (unless
    the connection string sets its own), and no startup `options` (poolers refuse them).
    """
    return psycopg.connect(
        conninfo.with_params(**KEEPALIVE),
        autocommit=True,
        prepare_threshold=None,
        fallback_application_name="bootstrap",
        client_encoding="UTF8",
        connect_timeout=connect_timeout,
    )


class _Transient(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def wait_for_connection(settings: Settings, log: Logger, *, wait: bool = True, backoff: Backoff = WAIT,
                        conninfo: Conninfo | None = None) -> Ready:
    """
    Connect and run a real query (`SELECT pg_backend_pid()`), retrying transient
    failures with backoff and jitter until `settings.wait_timeout`.

    Pauses start over when the kind of failure changes (refused -> starting up:
    the server is nearly there); while connections are refused, a pause ends as
    soon as the port accepts TCP connections, so a server that comes up
    mid-pause is met at once.

    Raises:
        ConfigError: a permanent failure (authentication, bad settings, a
            startup parameter a pooler refuses).
        DatabaseUnavailableError: the timeout ran out.
    """
    conninfo = conninfo or parse_conninfo(settings)
    if conninfo.ignored:
        log.debug("database_url_parameters_ignored", parameters=list(conninfo.ignored),
                  reason="Prisma's own (its pool, its schema); libpq knows none of them")
    started = time.monotonic()
    deadline = started + (settings.wait_timeout if wait else 0.0)
    target = conninfo.target.as_log()
    failures: list[Failure] = []
    restart = {"": 0}  # the attempt a run of failures of one kind started at: pauses start over there

    def attempt() -> Ready:
        remaining = deadline - time.monotonic()
        try:
            conn = connect_once(conninfo, max(2, min(DEFAULT_CONNECT_TIMEOUT_S, int(remaining + 0.999))))
        except psycopg.Error as exc:
            failures.append(classify(exc))
            if not failures[-1].transient:
                raise ConfigError(f"cannot connect to {settings.database_url_source}: {failures[-1].message}"
                                  f"{_HINTS.get(failures[-1].kind, '')}", error_type=failures[-1].kind,
                                  **target) from None
            raise _Transient(failures[-1]) from None
        try:
            row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
        except psycopg.Error as exc:
            conn.close()
            failures.append(classify(exc))
            raise _Transient(failures[-1]) from None
        assert row is not None
        return Ready(conn, int(row[0]))

    def pause(made: int) -> float:
        if failures[-1].kind not in restart:
            restart.clear()
            restart[failures[-1].kind] = made
        return backoff.pause(made - restart[failures[-1].kind])

    def sleep(seconds: float) -> None:
        if failures[-1].kind in ("connection_refused", "socket_missing"):
            _pause_until_listening(seconds, _probe_targets(conninfo))
        else:
            time.sleep(seconds)

    def report(made: int, delay: float) -> None:
        log.info("database_connect_retried", attempt=made, delay_s=round(delay, 3), error_type=failures[-1].kind,
                 error=failures[-1].message, **target)

    try:
        ready = retry(attempt, again=lambda error, _result: isinstance(error, _Transient), pauses=pause,
                      deadline=deadline, sleep=sleep, before_sleep=report)
    except _Transient:
        waited = time.monotonic() - started
        raise DatabaseUnavailableError(
            f"database not available after {waited:.1f}s ({len(failures)} attempt{'s' if len(failures) != 1 else ''})"
            f": {failures[-1].message}", attempts=len(failures), waited_ms=round(waited * 1000),
            error_type=failures[-1].kind, **target) from None
    info = ready.conn.info
    log.info("database_ready", attempts=len(failures) + 1, waited_ms=round((time.monotonic() - started) * 1000),
             host=info.host, port=str(info.port), dbname=info.dbname, user=info.user,
             server_version=info.server_version)
    return ready


PROBE_INTERVAL_S = 0.02


def _probe_targets(conninfo: Conninfo) -> list[tuple[int, Any]]:
    """(family, address) pairs the server would listen on, as libpq would try them."""
    target = conninfo.target
    ports = target.port.split(",")
    hosts = target.host.split(",") if target.host != NO_HOST else ["/var/run/postgresql", "/tmp"]  # noqa: S108
    out: list[tuple[int, Any]] = []
    for i, host in enumerate(hosts):
        port = (ports[i] if i < len(ports) else ports[-1]).strip() or "5432"
        if host.startswith("/"):
            out.append((socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"))
            continue
        try:
            for family, _type, _proto, _name, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                out.append((int(family), address))
        except OSError:
            continue
    return out


def _listening(family: int, address: Any) -> bool:
    """Whether something accepts a TCP (or Unix socket) connection there."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.05)
        try:
            sock.connect(address)
        except OSError:
            return False
        return True


def _pause_until_listening(seconds: float, targets: list[tuple[int, Any]]) -> None:
    """Sleep up to `seconds`, ending early once any target accepts connections."""
    end = time.monotonic() + seconds
    if not targets:
        time.sleep(seconds)
        return
    while True:
        if any(_listening(family, address) for family, address in targets):
            return
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(PROBE_INTERVAL_S, left))
