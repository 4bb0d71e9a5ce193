"""Telling transient connection failures (wait) from permanent ones (fail fast)."""

from __future__ import annotations

import pytest

from bootstrap.pg.connection import classify

CASES = [
    ("refused", 'connection failed: connection to server at "127.0.0.1", port 5999 failed: Connection refused\n'
     "\tIs the server running on that host and accepting TCP/IP connections?", True, "connection_refused"),
    ("socket-missing", 'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: No such file or directory',
     True, "socket_missing"),
    ("dns", "failed to resolve host 'db': [Errno -2] Name or service not known", True, "dns_unresolved"),
    ("dns-again", "failed to resolve host 'db': [Errno -3] Temporary failure in name resolution", True, "dns_unresolved"),
    ("starting", "FATAL:  the database system is starting up", True, "starting_up"),
    ("recovery", "FATAL:  the database system is not yet accepting connections\nDETAIL:  Consistent recovery state "
     "has not been yet reached.", True, "starting_up"),
    ("shutting-down", "FATAL:  the database system is shutting down", True, "shutting_down"),
    ("too-many", "FATAL:  sorry, too many clients already", True, "too_many_connections"),
    ("reserved", "FATAL:  remaining connection slots are reserved for non-replication superuser connections",
     True, "too_many_connections"),
    ("timeout", "connection timeout expired", True, "timeout"),
    ("terminated", "FATAL:  terminating connection due to administrator command", True, "connection_lost"),
    ("localised", "FATAL:  das Datenbanksystem startet", True, "unknown"),
    ("password", 'FATAL:  password authentication failed for user "app"', False, "authentication_failed"),
    ("no-password", "fe_sendauth: no password supplied", False, "password_missing"),
    ("hba", 'FATAL:  no pg_hba.conf entry for host "10.0.0.7", user "app", database "x", no encryption',
     False, "access_denied"),
    ("role", 'FATAL:  role "app" does not exist', False, "not_found"),
    ("nologin", 'FATAL:  role "app" is not permitted to log in', False, "login_not_permitted"),
    ("database", 'FATAL:  database "app" does not exist', False, "not_found"),
    ("ssl", "server does not support SSL, but SSL was required", False, "ssl_config"),
    ("root-cert", 'could not read root certificate file "/x.crt": No such file or directory', False, "ssl_config"),
    ("sslmode", 'connection is bad: invalid sslmode value: "bogus"', False, "config"),
    # Connection poolers refusing a startup parameter: PgBouncer 1.18, newer PgBouncer and Neon's proxy.
    ("pooler-options", "FATAL:  unsupported startup parameter: options", False, "startup_parameter_refused"),
    ("pooler-in-options", "ERROR:  unsupported startup parameter in options: lock_timeout", False,
     "startup_parameter_refused"),
]


@pytest.mark.parametrize(("message", "transient", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(message: str, transient: bool, kind: str) -> None:
    """libpq's messages map to retry-or-fail and a short error_type for the logs."""
    failure = classify(Exception(message))
    assert (transient, kind) == (failure.transient, failure.kind)
