"""
Reaching the server: connecting, and waiting for the database with backoff,
telling transient failures (wait) from permanent ones (fail fast, exit 3).

Every connection is made from the one parse of the connection string
(`conninfo.parse_conninfo`). bootstrap sends no startup `options` (connection
poolers refuse them); its timeouts travel inside the work instead.
"""

from __future__ import annotations

import socket
import time
from typing import Any, NamedTuple

import psycopg

from ..backoff import WAIT, Backoff, retry
from ..errors import ConfigError, DatabaseUnavailableError
from ..logs import live_line
from ..settings import Settings
from ..typing import Logger
from .conninfo import NO_HOST, Conninfo, parse_conninfo

DEFAULT_CONNECT_TIMEOUT_S = 10
# The pooler probe's own connection (pooler.py): libpq's shortest that works; the probe gives up, never waits.
PROBE_CONNECT_TIMEOUT_S = 2
# A peer that stops answering (a partition, a dead node) is noticed within about 30 s, on both sides:
# libpq's keepalives and TCP user timeout here, the server's own for the session (timeouts.py).
KEEPALIVE = {"keepalives": "1", "keepalives_idle": "15", "keepalives_interval": "5", "keepalives_count": "3",
             "tcp_user_timeout": "30000"}

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
WAIT_LOG_EVERY_S = 5.0
_MISSING_DATABASE = ("; create it (createdb {name}), or, in dev and CI, let bootstrap create it: --create-database "
                     "(BOOTSTRAP_CREATE_DATABASE=1)")
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
        conninfo.with_params(command_timeout=connect_timeout, **KEEPALIVE),
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
    created: list[bool] = []
    live, next_line = live_line(), [0.0]

    def attempt() -> Ready:
        remaining = deadline - time.monotonic()
        try:
            conn = connect_once(conninfo, max(2, min(DEFAULT_CONNECT_TIMEOUT_S, int(remaining + 0.999))))
        except psycopg.Error as exc:
            failures.append(classify(exc))
            missing = failures[-1].kind == "not_found" and f'database "{target["dbname"]}"' in failures[-1].message
            if missing and settings.create_database and not created:
                from .provision import create_database  # dev and CI only: never loaded otherwise

                created.append(create_database(conninfo, log, connect_once))
                return attempt()
            if not failures[-1].transient:
                hint = _MISSING_DATABASE.format(name=conninfo.target.dbname) if missing else _HINTS.get(
                    failures[-1].kind, "")
                raise ConfigError(f"cannot connect to {settings.database_url_source}: {failures[-1].message}{hint}",
                                  error_type=failures[-1].kind, **target) from None
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
        # Said once, then every few seconds (on a terminal: one line, rewritten), never a line per attempt.
        waited = time.monotonic() - started
        if live is not None:
            live.update(f"waiting for the database at {target['host']}:{target['port']}/{target['dbname']}: "
                        f"{made} attempt{'s' if made != 1 else ''} in {waited:.0f}s of {settings.wait_timeout:g}s; "
                        f"{failures[-1].message}")
        else:  # every attempt at debug level; the first, then one every WAIT_LOG_EVERY_S, at info
            said = made == 1 or waited >= next_line[0]
            (log.info if said else log.debug)(
                "database_connect_retried", attempt=made, delay_s=round(delay, 3), waited_s=round(waited, 1),
                error_type=failures[-1].kind, error=failures[-1].message, **target)
            if said:
                next_line[0] = waited + WAIT_LOG_EVERY_S

    try:
        ready = retry(attempt, again=lambda error, _result: isinstance(error, _Transient), pauses=pause,
                      deadline=deadline, sleep=sleep, before_sleep=report)
    except _Transient:
        if live is not None:
            live.end()
        waited = time.monotonic() - started
        raise DatabaseUnavailableError(
            f"database not available after {waited:.1f}s ({len(failures)} attempt{'s' if len(failures) != 1 else ''})"
            f": {failures[-1].message}", attempts=len(failures), waited_ms=round(waited * 1000),
            error_type=failures[-1].kind, **target) from None
    if live is not None:
        live.end()
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
