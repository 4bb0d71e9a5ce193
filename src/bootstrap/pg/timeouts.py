"""
What bootstrap SETs on its session, as SQL text: the timeouts every migration
statement runs with (`Timeouts`: `SET LOCAL` in each file's transaction, `SET`
before a `no-transaction` file's statements), the server's side of noticing a
lost client (TCP keepalives), and the reset after each file that undoes
whatever the file set. `session` sends them; nothing here talks to the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .connection import KEEPALIVE

# So a killed runner's backend stops within a second, even mid-statement (PostgreSQL >= 14).
CLIENT_CHECK_INTERVAL_MS = 1000
# The server's side of noticing a lost client within about 30 s (the client's side: connection.KEEPALIVE).
SERVER_KEEPALIVE = (("tcp_keepalives_idle", KEEPALIVE["keepalives_idle"]),
                    ("tcp_keepalives_interval", KEEPALIVE["keepalives_interval"]),
                    ("tcp_keepalives_count", KEEPALIVE["keepalives_count"]),
                    ("tcp_user_timeout", KEEPALIVE["tcp_user_timeout"]))
# Undo whatever session state a file set (role, search_path, any SET, the timeouts), back to the defaults.
RESET = "RESET ROLE;RESET SESSION AUTHORIZATION;RESET ALL"


def set_statements(pairs: Sequence[tuple[str, object]], *, local: bool) -> list[str]:
    """SET [LOCAL] each (name, value): constant SQL of bootstrap's own names and whole numbers (SET is the cheapest)."""
    return [f"SET {'LOCAL ' if local else ''}{name} = {value}" for name, value in pairs]


class Timeouts(NamedTuple):
    """
    The settings every migration statement runs with, in milliseconds (0: no limit).

    They travel inside the work itself (`SET LOCAL` in each file's transaction,
    `SET` before a `no-transaction` file's statements),
    never as startup options, which connection poolers refuse; the reset after
    each file removes them.
    """

    lock_ms: int = 0
    statement_ms: int = 0
    check_interval_ms: int | None = CLIENT_CHECK_INTERVAL_MS  # None: the server is older than 14

    def pairs(self) -> list[tuple[str, int]]:
        """(setting, value) pairs."""
        out = [("lock_timeout", int(self.lock_ms)), ("statement_timeout", int(self.statement_ms))]
        if self.check_interval_ms is not None:
            out.append(("client_connection_check_interval", int(self.check_interval_ms)))
        return out
