"""
bootstrap on PostgreSQL: the only package that imports psycopg and tenacity.

- `connection`: check the connection string, connect, wait with backoff.
- `session`: the connection and the session-bound mechanisms (`Capabilities`).
- `pooler`: how a connection pooler in between pools (session or transaction).
- `ledger`: every statement on bootstrap's ledger table (`PgLedger`).
- `lock`: the advisory lock runners serialise on (`AdvisoryLocker`).
- `applier`: running files with their ledger rows, and rollbacks (`Applier`).
- `indexes`: concurrent index builds: what a failed one left, whether a finished one is valid.
- `failure`: what a failed file's error says (pure).
- `verifier`: verify scripts, always rolled back.
- `rehearsal`: pending transactional files in one transaction, always rolled back.

`bootstrap.runner` reaches this package through one lazy import, in
`open_migrator`; nothing else in bootstrap imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..settings import Settings
from ..typing import Logger
from .connection import PROBE_CONNECT_TIMEOUT_S, connect_once, parse_conninfo, wait_for_connection
from .ledger import PgLedger
from .lock import AdvisoryLocker, advisory_key, lock_channel
from .session import Capabilities, Session, Timeouts

if TYPE_CHECKING:
    from .applier import Applier
    from .rehearsal import rehearse_files
    from .verifier import run_verify

__all__ = [
    "AdvisoryLocker",
    "Applier",
    "Capabilities",
    "PgLedger",
    "Session",
    "Timeouts",
    "advisory_key",
    "lock_channel",
    "open_session",
    "parse_conninfo",
    "rehearse_files",
    "run_verify",
]


def __getattr__(name: str) -> Any:
    """The applier, the verifier and the rehearsal load on first use: a start with nothing to do never needs them."""
    if name == "Applier":
        from .applier import Applier

        return Applier
    if name == "run_verify":
        from .verifier import run_verify

        return run_verify
    if name == "rehearse_files":
        from .rehearsal import rehearse_files

        return rehearse_files
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_session(settings: Settings, log: Logger, *, wait: bool = True) -> Session:
    """
    Wait for the database (unless `wait` is False: one attempt) and open bootstrap's session on it.

    Raises:
        ConfigError: a permanent failure (authentication, bad settings).
        DatabaseUnavailableError: the wait timed out.
    """
    conninfo = parse_conninfo(settings)
    ready = wait_for_connection(settings, log, wait=wait, conninfo=conninfo)
    return Session(ready.conn, log, server_pid=ready.server_pid, timeouts=timeouts(settings),
                   opener=lambda: connect_once(conninfo, PROBE_CONNECT_TIMEOUT_S))


def timeouts(settings: Settings) -> Timeouts:
    """What migration statements run with: --ddl-lock-timeout and --statement-timeout, in milliseconds."""

    def ms(seconds: float | None) -> int:
        return max(1, round(seconds * 1000)) if seconds else 0

    return Timeouts(lock_ms=ms(settings.ddl_lock_timeout), statement_ms=ms(settings.statement_timeout))
