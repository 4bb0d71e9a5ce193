"""Verify scripts: run in one transaction that is always rolled back, each behind a savepoint."""

from __future__ import annotations

from ..migrations import ParsedMigration
from ..typing import Logger
from .binding import bind
from .session import Session


def run_verify(session: Session, scripts: list[ParsedMigration], log: Logger) -> list[str]:
    """
    Run verify scripts in one transaction that is always rolled back, each
    behind a savepoint so every failure is reported.

    Args:
        session: the runner's session.
        scripts: the scripts, in order.
        log: a structlog logger.

    Returns:
        One message per failing script (empty when all pass).
    """
    failures: list[str] = []
    with session.transaction(rollback=True):
        for script in map(bind, scripts):
            name = script.migration.name
            session.conn.execute("SAVEPOINT bootstrap_verify")
            with session.notices(verify=name):
                run = session.run_file(script.text)
            if run.error is None:
                session.conn.execute("RELEASE SAVEPOINT bootstrap_verify")
                log.info("verify_passed", script=name)
                continue
            session.conn.execute("ROLLBACK TO SAVEPOINT bootstrap_verify")
            message = run.error.diag.message_primary or str(run.error)
            failures.append(f"{name}: {message}")
            log.error("verify_failed", script=name, error=message, sqlstate=run.error.sqlstate)
    return failures
