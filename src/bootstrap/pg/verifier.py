"""Verify scripts: run in one transaction that is always rolled back, each behind a savepoint."""

from __future__ import annotations

from .. import redact
from ..typing import Logger
from .session import Session


def run_verify(session: Session, scripts: list[tuple[str, str]], log: Logger) -> list[str]:
    """
    Run verify scripts in one transaction that is always rolled back, each
    behind a savepoint so every failure is reported.

    Args:
        session: the runner's session.
        scripts: (name, text) pairs in order.
        log: a structlog logger.

    Returns:
        One message per failing script (empty when all pass).
    """
    conn = session.conn
    failures: list[str] = []
    conn.execute("BEGIN")
    try:
        conn.execute(";".join(session.timeouts.statements(local=True)))
        for name, text in scripts:
            conn.execute("SAVEPOINT bootstrap_verify")
            with session.notices(verify=name):
                _done, error, _rows = session.run_script(text)
            if error is None:
                conn.execute("RELEASE SAVEPOINT bootstrap_verify")
                log.info("verify_passed", script=name)
                continue
            conn.execute("ROLLBACK TO SAVEPOINT bootstrap_verify")
            message = redact.redact(error.diag.message_primary or str(error))
            failures.append(f"{name}: {message}")
            log.error("verify_failed", script=name, error=message, sqlstate=error.sqlstate)
    finally:
        session.rollback_quietly()
    return failures
