"""
bootstrap on PostgreSQL: the only package that imports psycopg.

- `connection`: the connection string parsed once, connecting, waiting with backoff.
- `session`: the connection, the one way work runs on it (`run_file`, `transaction`), the lock's guard.
- `timeouts`: what the session SETs: each file's timeouts (`Timeouts`), the server's keepalives, the reset.
- `pooler`: how a connection pooler in between pools (session or transaction).
- `ledger`: every statement on bootstrap's ledger table (`PgLedger`).
- `lock`: the advisory lock runners serialise on (`AdvisoryLocker`).
- `applier`: running files with their ledger rows, rollbacks, rehearsals (`Applier`).
- `indexes`: concurrent index builds: what a failed one left, whether a finished one is valid.
- `failure`: what a failed file's error says (pure).
- `verifier`: verify scripts, always rolled back.
- `foreign`: other tools' ledgers, read for adopt.
- `tenants`: a fleet's tenants, as the tenants query lists them.
- `binding`: placeholders (`-- bootstrap:vars`), composed through psycopg.sql.
- `provision`: `--create-database`.

`bootstrap.runner` builds these in `open_migrator`.
"""

from __future__ import annotations

from ..settings import Settings
from ..typing import Logger
from .connection import PROBE_CONNECT_TIMEOUT_S, connect_once, wait_for_connection
from .conninfo import parse_conninfo
from .ledger import PgLedger
from .lock import AdvisoryLocker, advisory_key, lock_channel
from .session import Session
from .timeouts import Timeouts

__all__ = [
    "AdvisoryLocker",
    "PgLedger",
    "Session",
    "Timeouts",
    "advisory_key",
    "lock_channel",
    "open_session",
    "parse_conninfo",
]


def open_session(settings: Settings, log: Logger, *, wait: bool = True, dbname: str | None = None) -> Session:
    """
    Wait for the database (unless `wait` is False: one attempt) and open bootstrap's session on it
    (on `dbname`, another database of the server, when given: a fleet's tenant).

    Raises:
        ConfigError: a permanent failure (authentication, bad settings).
        DatabaseUnavailableError: the wait timed out.
    """
    conninfo = parse_conninfo(settings)
    if dbname is not None:
        conninfo = conninfo.on_database(dbname)
    ready = wait_for_connection(settings, log, wait=wait, conninfo=conninfo)
    return Session(ready.conn, log, server_pid=ready.server_pid, timeouts=timeouts(settings), role=settings.role,
                   opener=lambda: connect_once(conninfo, PROBE_CONNECT_TIMEOUT_S),
                   reconnect=lambda: wait_for_connection(settings, log, conninfo=conninfo))


def timeouts(settings: Settings) -> Timeouts:
    """What migration statements run with: --ddl-lock-timeout and --statement-timeout, in milliseconds."""

    def ms(seconds: float | None) -> int:
        return max(1, round(seconds * 1000)) if seconds else 0

    return Timeouts(lock_ms=ms(settings.ddl_lock_timeout), statement_ms=ms(settings.statement_timeout))
