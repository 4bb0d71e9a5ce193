"""
Reaching the server: check the connection string, connect, and wait for the
database with backoff, telling transient failures (wait) from permanent ones
(fail fast, exit 3). bootstrap sends no startup `options`: connection
poolers refuse them, and its timeouts travel inside the work instead.

tenacity is imported only after a first attempt failed: a start against a
live database never loads it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .. import redact
from ..backoff import WAIT, Backoff
from ..errors import ConfigError, DatabaseUnavailableError
from ..settings import Settings
from ..typing import Logger

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_CONNECT_TIMEOUT_S = 10
# The pooler probe's own connection (pooler.py): libpq's shortest that works; the probe gives up, never waits.
PROBE_CONNECT_TIMEOUT_S = 2

# Classifying connection failures: libpq reports them as text, without SQLSTATE.
_TRANSIENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("connection refused", "connection_refused"),
    ("no such file or directory", "socket_missing"),
    ("failed to resolve host", "dns_unresolved"),
    ("could not translate host name", "dns_unresolved"),
    ("name or service not known", "dns_unresolved"),
    ("temporary failure in name resolution", "dns_unresolved"),
    ("nodename nor servname", "dns_unresolved"),
    ("no address associated", "dns_unresolved"),
    ("is starting up", "starting_up"),
    ("not yet accepting connections", "starting_up"),
    ("in recovery mode", "starting_up"),
    ("is shutting down", "shutting_down"),
    ("too many clients", "too_many_connections"),
    ("too many connections", "too_many_connections"),
    ("remaining connection slots", "too_many_connections"),
    ("timeout expired", "timeout"),
    ("timed out", "timeout"),
    ("server closed the connection", "connection_lost"),
    ("connection reset", "connection_lost"),
    ("terminating connection", "connection_lost"),
    ("could not receive data", "connection_lost"),
    ("could not send data", "connection_lost"),
    ("broken pipe", "connection_lost"),
    ("no route to host", "network_unreachable"),
    ("network is unreachable", "network_unreachable"),
    ("host is unreachable", "network_unreachable"),
)
_PERMANENT_PATTERNS: tuple[tuple[str, str], ...] = (
    # A connection pooler (PgBouncer, Neon's, Supavisor) refusing a startup parameter of the user's
    # connection string or PGOPTIONS: waiting never helps.
    ("unsupported startup parameter", "startup_parameter_refused"),
    ("password authentication failed", "authentication_failed"),
    ("authentication failed", "authentication_failed"),
    ("no password supplied", "password_missing"),
    ("is not permitted to log in", "login_not_permitted"),
    ("pg_hba.conf", "access_denied"),
    ("permission denied", "access_denied"),
    ("does not exist", "not_found"),
    ("ssl was required", "ssl_config"),
    ("does not support ssl", "ssl_config"),
    ("certificate", "ssl_config"),
    ("invalid ", "config"),
    ("missing \"=\"", "config"),
)


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
    message = redact.redact(str(exc).strip())
    lowered = message.lower()
    for pattern, kind in _PERMANENT_PATTERNS:
        if pattern in lowered:
            return Failure(False, kind, message)
    for pattern, kind in _TRANSIENT_PATTERNS:
        if pattern in lowered:
            return Failure(True, kind, message)
    return Failure(True, "unknown", message)


class _Transient(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def validate_conninfo(settings: Settings) -> dict[str, Any]:
    """
    Parse the connection string with libpq's own parser.

    Raises:
        ConfigError: malformed URL or conninfo, or an unknown sslmode; the
            message names the variable it came from and never the password.
    """
    source = settings.database_url_source
    try:
        params = conninfo_to_dict(settings.database_url)
    except psycopg.ProgrammingError as exc:
        reason = redact.redact(str(exc).strip())
        raise ConfigError(
            f"{source} is not a valid PostgreSQL connection string: {reason}", variable=source
        ) from None
    sslmode = params.get("sslmode") or settings.environ.get("PGSSLMODE")
    if sslmode is not None and str(sslmode) not in SSLMODES:
        raise ConfigError(
            f"{source}: unknown sslmode {sslmode!r}; use one of {', '.join(SSLMODES)}",
            variable=source,
        )
    for key in ("port", "connect_timeout"):
        value = params.get(key)
        if value is not None and not all(part.strip().isdigit() for part in str(value).split(",")):
            raise ConfigError(f"{source}: {key} {value!r} is not a number", variable=source)
    return params


_HINTS = {
    "startup_parameter_refused": "; a connection pooler refuses that startup parameter: remove it from the "
                                 "connection string and PGOPTIONS (bootstrap itself sends none)",
}


class Ready(NamedTuple):
    """An open connection that answered, and the server backend's own pid (to tell a pooler from the server)."""

    conn: psycopg.Connection[Any]
    server_pid: int


def connect_once(settings: Settings, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT_S) -> psycopg.Connection[Any]:
    """
    One connection with bootstrap's parameters: autocommit, no prepared statements
    of psycopg's own choosing, UTF-8, and no startup `options` (poolers refuse them).
    """
    return psycopg.connect(
        settings.database_url,
        autocommit=True,
        prepare_threshold=None,
        fallback_application_name="bootstrap",
        client_encoding="UTF8",
        connect_timeout=connect_timeout,
    )


def wait_for_connection(settings: Settings, log: Logger, *, wait: bool = True, backoff: Backoff = WAIT) -> Ready:
    """
    Connect and run a real query (`SELECT pg_backend_pid()`), retrying transient
    failures with backoff and jitter until `settings.wait_timeout`.

    Raises:
        ConfigError: a permanent failure (authentication, bad settings, a
            startup parameter a pooler refuses).
        DatabaseUnavailableError: the timeout ran out.
    """
    params = validate_conninfo(settings)
    timeout = settings.wait_timeout if wait else 0.0
    started = time.monotonic()
    deadline = started + timeout
    target = settings.safe_target().as_log()
    attempts = 0
    last: Failure | None = None

    def attempt() -> Ready:
        nonlocal attempts, last
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            conn = connect_once(settings, max(2, min(DEFAULT_CONNECT_TIMEOUT_S, int(remaining + 0.999))))
        except psycopg.Error as exc:
            last = classify(exc)
            if not last.transient:
                raise ConfigError(
                    f"cannot connect to {settings.database_url_source}: {last.message}{_HINTS.get(last.kind, '')}",
                    error_type=last.kind,
                    **target,
                ) from None
            raise _Transient(last) from None
        try:
            row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
        except psycopg.Error as exc:
            conn.close()
            last = classify(exc)
            raise _Transient(last) from None
        assert row is not None
        return Ready(conn, int(row[0]))

    ready: Ready | None
    try:
        # The common case needs no retry machinery: the database is up.
        ready = attempt()
    except _Transient:
        if timeout <= 0:
            ready = None
        else:
            ready = _retry_until(deadline, attempt, lambda: attempts, lambda: last,
                                 lambda: _probe_targets(params, settings.environ), log, target, backoff)
    if ready is None:
        assert last is not None
        waited = time.monotonic() - started
        raise DatabaseUnavailableError(
            f"database not available after {waited:.1f}s "
            f"({attempts} attempt{'s' if attempts != 1 else ''}): {last.message}",
            attempts=attempts,
            waited_ms=round(waited * 1000),
            error_type=last.kind,
            **target,
        ) from None
    info = ready.conn.info
    log.info(
        "database_ready",
        attempts=attempts,
        waited_ms=round((time.monotonic() - started) * 1000),
        host=info.host,
        port=str(info.port),
        dbname=info.dbname,
        user=info.user,
        server_version=info.server_version,
    )
    return ready


PROBE_INTERVAL_S = 0.02
PROBED_KINDS = frozenset({"connection_refused", "socket_missing"})


def _retry_until(
    deadline: float,
    attempt: Callable[[], Ready],
    attempts_made: Callable[[], int],
    last_failure: Callable[[], Failure | None],
    probe_targets: Callable[[], list[tuple[int, Any]]],
    log: Logger,
    target: dict[str, str],
    backoff: Backoff,
) -> Ready | None:
    """
    After a first attempt failed, retry with tenacity until `deadline`
    (tenacity is imported only then: a start against a live database never
    loads it).

    Pauses: `backoff` (exponential with jitter, see `backoff.WAIT`), starting
    over when the kind of failure changes (refused -> starting up: the server is
    nearly there). While connections are refused, a pause ends as soon as the
    port accepts TCP connections (probed every 20 ms; a refused probe costs the
    server nothing), so a server that comes up mid-pause is met at once.

    Returns:
        The connection, or None when the deadline passed.
    """
    import tenacity

    state: dict[str, Any] = {"kind": None, "step": 0}

    def next_pause() -> float:
        failure = last_failure()
        kind = failure.kind if failure else None
        if kind != state["kind"]:
            state["kind"], state["step"] = kind, 0
        pause = backoff.pause(int(state["step"]))
        state["step"] += 1
        return max(0.0, min(pause, deadline - time.monotonic()))

    def report(pause: float) -> None:
        failure = last_failure()
        log.info(
            "database_connect_retried",
            attempt=attempts_made(),
            delay_s=round(pause, 3),
            error_type=failure.kind if failure else "unknown",
            error=failure.message if failure else "",
            **target,
        )

    def sleep(seconds: float) -> None:
        failure = last_failure()
        if failure is None or failure.kind not in PROBED_KINDS:
            time.sleep(seconds)
        else:
            _pause_until_listening(seconds, probe_targets())

    if time.monotonic() >= deadline:
        return None
    first = next_pause()
    report(first)
    sleep(first)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Transient),
        wait=lambda _state: next_pause(),
        # The last pause ends at the deadline, so the last attempt is made at --timeout.
        stop=lambda _state: time.monotonic() >= deadline,
        before_sleep=lambda retry_state: report(retry_state.upcoming_sleep),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Transient:
        return None


def _probe_targets(params: dict[str, Any], env: Mapping[str, str]) -> list[tuple[int, Any]]:
    """(family, address) pairs the server would listen on, as libpq would try them."""
    hosts = str(params.get("hostaddr") or params.get("host") or env.get("PGHOSTADDR") or env.get("PGHOST") or "")
    ports = str(params.get("port") or env.get("PGPORT") or "5432").split(",")
    out: list[tuple[int, Any]] = []
    names = hosts.split(",") if hosts else ["/var/run/postgresql", "/tmp"]  # noqa: S108 - libpq's socket dirs
    for i, host in enumerate(names):
        port = (ports[i] if i < len(ports) else ports[-1]).strip() or "5432"
        if not port.isdigit():
            continue
        if host.startswith("/"):
            out.append((socket.AF_UNIX, f"{host}/.s.PGSQL.{port}"))
            continue
        try:
            for family, _type, _proto, _name, address in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM):
                out.append((family, address))
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
