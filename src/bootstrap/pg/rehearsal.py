"""
A rehearsal: pending transactional files applied with their ledger rows in
ONE transaction that is always rolled back.

Exactly what migrate would commit runs (the schemas and the ledger created if
missing, each file after the timeouts, the session reset after it, its ledger
row), then ROLLBACK. A file that fails ends the rehearsal; a lock timeout
retries the whole rehearsal with the applier's backoff (the transaction it
ran in is gone). Interrupted by a signal, the query is cancelled and rolled
back; killed, or cut off, the server rolls the transaction back itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg

from ..errors import BootstrapError
from ..migrations import ParsedMigration
from . import failure
from .applier import Applier, AttemptFailed

ROLLED_BACK = "the rehearsal was rolled back; nothing of it was kept"


def rehearse_files(applier: Applier, todo: Sequence[ParsedMigration]) -> tuple[list[int], BootstrapError | None]:
    """
    Apply `todo` (transactional files, in order) and their ledger rows in one
    transaction, then roll it back.

    Returns:
        The durations (ms) of the files that passed, in order, and the error
        of the one after them that failed (None when every file passed).
    """
    session, ledger = applier.session, applier.ledger
    durations: list[int] = []

    def attempt() -> None:
        durations.clear()
        timeouts = session.timeouts.statements(local=True)
        prefix = ";".join(timeouts) + ";\n"  # before each file: the reset after the one before undid them
        failed: tuple[ParsedMigration, int, psycopg.Error] | None = None
        try:
            session.conn.execute("BEGIN")
            session.begun()
            ledger.ensure(announce=False)  # a savepoint inside the rehearsal: rolled back with it
            for parsed in todo:
                started = time.monotonic()
                with session.notices(migration=parsed.migration.name):
                    done, error, _rows = session.run_script(prefix + parsed.text + "\n;" + session.reset_sql)
                if error is not None:
                    if session.is_disconnect(error):
                        raise failure.connection_lost(parsed, error) from None
                    failed = (parsed, max(0, done - len(timeouts)), error)
                    break
                duration_ms = round((time.monotonic() - started) * 1000)
                ledger.record(parsed.migration, duration_ms)
                durations.append(duration_ms)
        except psycopg.OperationalError as exc:
            raise failure.connection_lost(todo[min(len(durations), len(todo) - 1)], exc) from None
        except psycopg.Error as exc:  # the ledger row
            raise failure.commit_failed(todo[min(len(durations), len(todo) - 1)], exc,
                                        ledger_table=ledger.table_name) from None
        finally:
            session.rollback_quietly()  # always: a rehearsal never commits
        if failed is not None:
            parsed, done, error = failed
            raise AttemptFailed(parsed, error, failure.migration_failed(
                parsed, done, error, kept=None, attempts=applier.retries + 1, shift=len(prefix),
                outcome=ROLLED_BACK))

    try:
        applier.with_retries(attempt)
    except BootstrapError as exc:
        return list(durations), exc
    return list(durations), None
