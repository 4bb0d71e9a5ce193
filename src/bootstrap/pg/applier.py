"""
Applying files: each transactional file in one transaction with its ledger
row, each `no-transaction` file statement by statement, rollbacks newest first.

Three shapes, one retry loop. A transactional file is sent as ONE simple query
(`BEGIN;` file, the session reset, its queued ledger row, `COMMIT`) when the
ledger could queue its row, else as the same query without the row, followed
by the row and COMMIT. A file (or, for a `no-transaction` file, a statement)
that cannot get its locks within `--ddl-lock-timeout` is rolled back and
retried with backoff, `--ddl-lock-retries` times.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg

from .. import redact
from ..backoff import DDL_RETRY, Backoff
from ..concurrently import Build, concurrent_build
from ..errors import BootstrapError, ConfigError
from ..migrations import ParsedMigration
from ..typing import Logger, RecordQueue
from . import failure, indexes
from .indexes import Index
from .ledger import PgLedger
from .session import Session

# What a file is retried for (the error class logged with each retry).
RETRYABLE_SQLSTATES = {"55P03": "lock_timeout", "40P01": "deadlock", "40001": "serialization_failure"}
T = TypeVar("T")


class AttemptFailed(Exception):
    """An attempt failed on the server's error `error`; `final` is raised unless it is retried."""

    def __init__(self, parsed: ParsedMigration, error: psycopg.Error, final: BootstrapError) -> None:
        super().__init__(final.message)
        self.parsed = parsed
        self.error = error
        self.final = final


class Applier:
    """
    Runs migration and rollback files on the session, recording them in the ledger.

    Args:
        session: the runner's session.
        ledger: where rows are written (inside each file's transaction).
        retries: `--ddl-lock-retries`.
        log: a structlog logger.
        backoff: the pause before each retry.
    """

    def __init__(self, session: Session, ledger: PgLedger, *, retries: int, log: Logger,
                 backoff: Backoff = DDL_RETRY) -> None:
        self.session = session
        self.ledger = ledger
        self.retries = retries
        self.log = log
        self.backoff = backoff
        self._queue: RecordQueue | None = None

    def prepare(self, todo: Sequence[ParsedMigration] = ()) -> None:
        """Before the first file: when files are about to run, their queued ledger rows."""
        self._queue = self.ledger.queue([p.migration for p in todo]) if todo else None

    # -- one file --------------------------------------------------------------------------

    def apply(self, parsed: ParsedMigration) -> int:
        """
        Apply one migration and record it.

        Returns:
            Duration in milliseconds.

        Raises:
            MigrationFailedError: the file failed; what was kept is said.
        """
        m = parsed.migration
        queue = self._queue if self._queue is not None and self._queue.remaining > 0 else None
        return self._run_file(parsed, lambda ms: self.ledger.record(m, ms), queue)

    def unapply(self, down: ParsedMigration) -> int:
        """
        Run a `.down.sql` file and remove its version's ledger row, in one
        transaction (or after its last statement for a no-transaction file).

        Returns:
            Duration in milliseconds.
        """
        return self._run_file(down, lambda _ms: self.ledger.forget(down.migration.version), None)

    def _run_file(self, parsed: ParsedMigration, ledger_action: Callable[[int], None],
                  queue: RecordQueue | None) -> int:
        with self.session.notices(migration=parsed.migration.name):
            try:
                if parsed.migration.transactional:
                    return self._transactional(parsed, ledger_action, queue)
                return self._statements(parsed, ledger_action)
            except BaseException:
                # Interrupted (signal) or failed: never leave a transaction open.
                self.session.rollback_quietly()
                raise

    def _transactional(self, parsed: ParsedMigration, ledger_action: Callable[[int], None],
                       queue: RecordQueue | None) -> int:
        """
        BEGIN; the file; the reset; then its queued ledger row and COMMIT in the
        same query (one round trip) or, without a queue, the row and COMMIT after it.
        """
        session = self.session
        tail = f";{queue.sql};COMMIT" if queue is not None else ""
        opening = ["BEGIN", *session.before_file()]  # BEGIN; [the pooler guard;] the timeouts (SET LOCAL)
        prefix = ";".join(opening) + ";\n"
        query = prefix + parsed.text + "\n;" + session.reset_sql + tail
        code = len(parsed.script.code_statements)
        guarded = session.guard_sql is not None

        def attempt() -> int:
            started = time.monotonic()
            try:
                # Without an error, the last rows are the queued ledger row's (COMMIT returns none).
                committing = queue is not None  # the one-trip query ends with COMMIT
                done, error, recorded = session.run_script(query)
                if error is None and queue is None:
                    duration_ms = round((time.monotonic() - started) * 1000)
                    ledger_action(duration_ms)
                    committing = True
                    session.cursor.execute("COMMIT")
                    return duration_ms
            except psycopg.Error as exc:
                if session.is_disconnect(exc):
                    raise failure.connection_lost(parsed, exc, committing=committing) from None
                # Raised by the ledger row or at COMMIT (deferred constraints, a lock timeout).
                session.rollback_quietly()
                raise self._commit_failed(parsed, exc) from None
            if error is None:
                assert queue is not None and recorded is not None and recorded.nfields == 4
                queue.taken()
                duration = recorded.get_value(0, 2)
                return int(duration) if duration is not None else 0
            if session.is_disconnect(error):
                # Past the file's last statement on the one-trip path, the break may have met the COMMIT.
                ran_file = done - len(opening) >= code
                raise failure.connection_lost(parsed, error, committing=queue is not None and ran_file) from None
            session.rollback_quietly()
            if queue is not None:
                queue.requeue()
            if guarded and done == 1 and error.sqlstate == "22012":  # the guard, right after BEGIN
                raise session.moved()
            done = max(0, done - len(opening))
            if done >= code:  # the file ran; the reset, its ledger row or COMMIT failed
                if queue is not None and error.sqlstate == "22012":
                    raise failure.queued_row_lost(parsed)
                raise self._commit_failed(parsed, error)
            raise AttemptFailed(parsed, error, failure.migration_failed(
                parsed, done, error, kept=None, attempts=self.retries + 1, shift=len(prefix)))

        return self.with_retries(attempt)

    def _statements(self, parsed: ParsedMigration, ledger_action: Callable[[int], None]) -> int:
        """
        A `no-transaction` file: each statement on its own (retried on its own),
        then the ledger row. A concurrent index build is watched: what a failed
        one left is dropped (before any retry), and the file is recorded only
        when what each build names is valid.
        """
        session = self.session
        statements = parsed.script.code_statements
        started = time.monotonic()
        session.set_timeouts()
        for index in range(len(statements)):
            if not session.on_holder():
                raise session.moved(kept=failure.kept_phrase(parsed.script, index))
            build = concurrent_build(statements[index].text)
            before = self._before_build(parsed, index, build) if build is not None else {}

            def attempt(index: int = index, build: Build | None = build, before: dict[int, Index] = before) -> None:
                try:
                    _done, error, _rows = session.run_script(statements[index].text)
                except psycopg.OperationalError as exc:
                    raise failure.connection_lost(parsed, exc, kept=index, building=build) from None
                if error is None:
                    return
                if session.is_disconnect(error):
                    raise failure.connection_lost(parsed, error, kept=index, building=build) from None
                if session.in_transaction():
                    session.rollback_quietly()
                leftovers = self._clean_failed_build(parsed, index, build, before) if build is not None else []
                raise AttemptFailed(parsed, error, failure.migration_failed(
                    parsed, 0, error, kept=index, attempts=self.retries + 1, base=statements[index],
                    leftovers=leftovers))

            self.with_retries(attempt)
            if build is not None:
                self._check_build(parsed, index, build, before)
        if session.in_transaction():
            session.rollback_quietly()
            raise failure.left_open(parsed)
        duration_ms = round((time.monotonic() - started) * 1000)
        try:
            session.conn.execute(session.reset_sql)
            with session.transaction():
                ledger_action(duration_ms)
        except ConfigError as exc:  # the guard: not on the lock holder's server connection
            raise session.moved(kept=f"all {len(statements)} statements ran and were kept, but the ledger was "
                                     "not changed") from exc
        except psycopg.Error as exc:
            if session.is_disconnect(exc):
                raise failure.connection_lost(parsed, exc, kept=len(statements)) from None
            raise self._commit_failed(parsed, exc) from None
        return duration_ms

    # -- concurrent index builds -----------------------------------------------------------

    def _census(self, parsed: ParsedMigration, kept: int, build: Build) -> dict[int, Index]:
        try:
            return indexes.census(self.session, build)
        except psycopg.OperationalError as exc:
            raise failure.connection_lost(parsed, exc, kept=kept) from None

    def _before_build(self, parsed: ParsedMigration, kept: int, build: Build) -> dict[int, Index]:
        """
        The indexes the build can touch. An INVALID index by the very name this
        pending file's CREATE builds was left by an earlier failed run of it: it
        is dropped first, so the build (with or without IF NOT EXISTS) starts clean.
        """
        before = self._census(parsed, kept, build)
        stale = indexes.named(before, build.index_name) if build.verb == "create" else None
        if stale is not None and not stale.usable:
            why = indexes.drop(self.session, stale, self.log, reason="left by an earlier failed build of this file")
            if why is not None:
                raise failure.stale_index(parsed, parsed.script.code_statements[kept], kept, str(stale), why)
            before = self._census(parsed, kept, build)
        return before

    def _clean_failed_build(self, parsed: ParsedMigration, kept: int, build: Build,
                            before: dict[int, Index]) -> list[failure.Leftover]:
        """Drop the INVALID indexes a failed build left; say which went and which could not."""
        left = indexes.left_by(before, self._census(parsed, kept, build))
        return [failure.Leftover(str(index), indexes.drop(self.session, index, self.log,
                                                          reason="left by the failed build"))
                for index in left]

    def _check_build(self, parsed: ParsedMigration, kept: int, build: Build, before: dict[int, Index]) -> None:
        """A finished build: every index it names must be valid and ready, or the file is not recorded."""
        bad = indexes.unusable_after(build, before, self._census(parsed, kept + 1, build))
        if bad:
            raise failure.invalid_index(parsed, parsed.script.code_statements[kept], kept + 1, [str(i) for i in bad])

    # -- a whole rollback ------------------------------------------------------------------

    def unapply_all(self, downs: Sequence[ParsedMigration]) -> list[int]:
        """
        Run several `.down.sql` files (newest first) and remove their ledger rows
        in ONE transaction, so a refusing down file leaves every version applied.
        Only when every file is transactional; otherwise each runs on its own.

        Returns:
            Each file's duration in milliseconds.

        Raises:
            MigrationFailedError: a down file failed; nothing was rolled back.
        """
        if not all(d.migration.transactional for d in downs):
            return [self.unapply(d) for d in downs]
        session = self.session

        def attempt() -> list[int]:
            durations: list[int] = []
            failed: tuple[ParsedMigration, int, psycopg.Error] | None = None
            timeouts = session.timeouts.statements(local=True)
            prefix = ";".join(timeouts) + ";\n"  # again for each file: the reset after the one before undid them
            try:
                session.conn.execute("BEGIN")
                session.begun()
                for down in downs:
                    started = time.monotonic()
                    with session.notices(migration=down.migration.name):
                        done, error, _rows = session.run_script(prefix + down.text + "\n;" + session.reset_sql)
                    if error is not None:
                        failed = (down, max(0, done - len(timeouts)), error)
                        break
                    duration_ms = round((time.monotonic() - started) * 1000)
                    self.ledger.forget(down.migration.version)
                    durations.append(duration_ms)
                if failed is None:
                    session.conn.execute("COMMIT")
                    return durations
            except psycopg.Error as exc:
                down = downs[min(len(durations), len(downs) - 1)]  # after the last file: the COMMIT's
                if session.is_disconnect(exc):
                    raise failure.connection_lost(down, exc, committing=len(durations) == len(downs)) from None
                session.rollback_quietly()
                raise self._commit_failed(down, exc) from None
            except BaseException:
                session.rollback_quietly()
                raise
            session.rollback_quietly()
            down, done, error = failed
            raise AttemptFailed(down, error, failure.migration_failed(
                down, done, error, kept=None, attempts=self.retries + 1, shift=len(prefix),
                outcome="the rollback ran in one transaction, so nothing was rolled back"))

        return self.with_retries(attempt)

    # -- the one retry loop ----------------------------------------------------------------

    def with_retries(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`; after a lock failure, pause with backoff and run it again, `retries` times."""
        for number in itertools.count(1):
            try:
                return attempt()
            except AttemptFailed as failed:
                error = failed.error
                if error.sqlstate not in RETRYABLE_SQLSTATES or number > self.retries:
                    raise failed.final from None
                delay = self.backoff.pause(number - 1)
                self.log.warning(
                    "migration_lock_retried",
                    migration=failed.parsed.migration.name,
                    attempt=number,
                    delay_s=round(delay, 3),
                    error_type=RETRYABLE_SQLSTATES.get(error.sqlstate or "", "unknown"),
                    sqlstate=error.sqlstate,
                    error=redact.redact(error.diag.message_primary or str(error)),
                )
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_failed(self, parsed: ParsedMigration, error: psycopg.Error) -> BootstrapError:
        return failure.commit_failed(parsed, error, ledger_table=self.ledger.table_name)
