"""
Applying files: each transactional file in one transaction with its ledger
row, each `no-transaction` file statement by statement, rollbacks newest first,
and rehearsals that always roll back.

One path for SQL (`Session.run_file`: BEGIN, the timeouts and the lock's guard,
the file, the reset, the ledger statement, COMMIT, as ONE simple query) and one
retry loop (`with_retries`, on `backoff.retry`): a file that cannot get its
locks within `--ddl-lock-timeout` is rolled back and retried with backoff,
`--ddl-lock-retries` times. In a `no-transaction` file, each statement is retried
on its own, except inside a transaction the file itself opened (BEGIN ...
COMMIT): that block is rolled back whole and retried from its BEGIN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from ..backoff import DDL_RETRY, Backoff, retry
from ..concurrently import Build, concurrent_build
from ..errors import BootstrapError, SignalReceived
from ..migrations import Kind, Migration, ParsedMigration
from ..sqlsplit import Script
from ..typing import Logger
from . import failure, indexes
from .binding import bind
from .indexes import Index
from .ledger import PgLedger
from .session import FileRun, Session

# What a file is retried for (the error class logged with each retry).
RETRYABLE_SQLSTATES = {"55P03": "lock_timeout", "40P01": "deadlock", "40001": "serialization_failure"}
ROLLED_BACK = "the rehearsal was rolled back; nothing of it was kept"
RECORDED = (Kind.VERSIONED, Kind.REPEATABLE)  # files whose ledger statement returns the duration
T = TypeVar("T")


class AttemptFailed(Exception):
    """An attempt failed on the server's error `error`; `final` is raised unless it is retried."""

    def __init__(self, parsed: ParsedMigration, error: psycopg.Error, final: BootstrapError) -> None:
        super().__init__(final.message)
        self.parsed = parsed
        self.error = error
        self.final = final


class _Abort(Exception):
    """A file of several in one transaction failed: leave the transaction (rolled back), then report."""


def units(script: Script) -> list[tuple[int, int]]:
    """
    A `no-transaction` file's statements as (first, last) index ranges: one per statement,
    or one for a transaction the file opens itself (BEGIN or START TRANSACTION up to the
    COMMIT, END, ROLLBACK, ABORT or PREPARE TRANSACTION that ends it), which is retried whole.
    """
    out: list[tuple[int, int]] = []
    opened: int | None = None
    for i, statement in enumerate(script.code_statements):
        words = statement.words
        if opened is None and words[:1] in (("begin",), ("start",)):
            opened = i
        elif opened is not None and (words[:1] in (("commit",), ("end",), ("abort",))
                                     or (words[:1] == ("rollback",) and words[1:2] != ("to",))
                                     or words[:2] == ("prepare", "transaction")):
            out.append((opened, i))
            opened = None
        elif opened is None:
            out.append((i, i))
    if opened is not None:
        out.append((opened, len(script.code_statements) - 1))
    return out


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
        self._kept = 0

    # -- one file --------------------------------------------------------------------------

    def apply(self, parsed: ParsedMigration) -> int:
        """
        Apply one migration and record it.

        Returns:
            Duration in milliseconds.

        Raises:
            MigrationFailedError: the file failed; what was kept is said.
        """
        parsed = bind(parsed)
        if parsed.migration.transactional:
            return self._run(parsed, lambda: self._transactional(parsed, self.ledger.insert_sql(parsed.migration)))
        return self._run(parsed, lambda: self._statements(parsed, lambda ms: self.ledger.insert_sql(
            parsed.migration, ms)))

    def run_after(self, script: ParsedMigration) -> int:
        """
        Run an after-migrate script (sql/after/) as a file is run, without a ledger row: in its own
        transaction (or statement by statement), under the migration lock's guard.

        Returns:
            Duration in milliseconds.
        """
        script = bind(script)
        guard = f"SELECT {self.session.lock_guard()}"
        if script.migration.transactional:
            return self._run(script, lambda: self._transactional(script, guard))
        return self._run(script, lambda: self._statements(script, lambda _ms: guard))

    def unapply(self, down: ParsedMigration) -> int:
        """
        Run a `.down.sql` file and remove its version's ledger row, in one
        transaction (or after its last statement for a no-transaction file).

        Returns:
            Duration in milliseconds.
        """
        forget = self.ledger.forget_sql(down.migration.version)
        down = bind(down)
        if down.migration.transactional:
            return self._run(down, lambda: self._transactional(down, forget))
        return self._run(down, lambda: self._statements(down, lambda _ms: forget))

    def _run(self, parsed: ParsedMigration, work: Callable[[], int]) -> int:
        self._kept = 0  # a no-transaction file's statements that ran and were kept, so far
        with self.session.notices(migration=parsed.migration.name):
            try:
                return work()
            except SignalReceived as stopped:
                self.session.rollback_quietly()  # psycopg cancelled the running statement: end its transaction
                total = len(parsed.script.code_statements)
                stopped.fields = {"file": str(parsed.migration.path), "outcome": (
                    "the file was rolled back; nothing of it was kept" if parsed.migration.transactional else
                    f"statements 1-{self._kept} of {total} ran and were kept, the one running was cancelled; the "
                    "ledger was not changed" if self._kept else "nothing of it was kept; the ledger was not changed")}
                raise
            except BaseException:
                # Failed: never leave a transaction open.
                self.session.rollback_quietly()
                raise

    def _transactional(self, parsed: ParsedMigration, ledger_sql: str) -> int:
        """BEGIN; the file; the reset; its ledger statement; COMMIT: one round trip."""
        session = self.session

        def attempt() -> int:
            started = time.monotonic()
            try:
                run = session.run_file(parsed.text, begin=True, after=[ledger_sql], commit=True)
            except psycopg.OperationalError as exc:  # cut off where the driver could not tell where: maybe at COMMIT
                raise failure.connection_lost(parsed, exc, committing=True) from None
            if run.error is None:
                value = run.rows.get_value(0, 0) if run.rows is not None and run.rows.ntuples else None
                return int(value) if value is not None and parsed.migration.kind in RECORDED else round(
                    (time.monotonic() - started) * 1000)
            raise self._failed(parsed, run, committing=True)

        return self.with_retries(attempt)

    def _failed(self, parsed: ParsedMigration, run: FileRun, *, committing: bool = False,
                outcome: str | None = None) -> BaseException:
        """What a file's failed run raises: lost connection, lost lock, failed record or COMMIT, or its SQL."""
        code = len(parsed.script.code_statements)
        error = run.error
        assert error is not None
        if self.session.is_disconnect(error):
            # Past the file's last statement, with COMMIT in the query, the break may have met the COMMIT.
            return failure.connection_lost(parsed, error, committing=committing and run.done >= code)
        self.session.rollback_quietly()
        if run.done >= code:  # the file ran; the reset, its ledger statement (the lock's guard) or COMMIT failed
            return self._commit_failed(parsed, error)
        return AttemptFailed(parsed, error, failure.migration_failed(
            parsed, run.done, error, kept=None, attempts=self.retries + 1, shift=run.shift, outcome=outcome))

    def _statements(self, parsed: ParsedMigration, ledger_sql: Callable[[int], str]) -> int:
        """
        A `no-transaction` file: each statement on its own (a block the file opened
        itself, from its BEGIN), then the ledger row. A concurrent index build is
        watched: what a failed one left is dropped (before any retry), and the file
        is recorded only when what each build names is valid.
        """
        session = self.session
        statements = parsed.sent.code_statements
        started = time.monotonic()
        session.set_timeouts()
        for first, last in units(parsed.script):
            if not session.on_holder():
                raise session.lock_lost(kept=failure.kept_phrase(parsed.script, first))
            build = concurrent_build(statements[first].text) if first == last else None
            before = self._before_build(parsed, first, build) if build is not None else {}

            def attempt(first: int = first, last: int = last, build: Build | None = build,
                        before: dict[int, Index] = before) -> None:
                for index in range(first, last + 1):
                    try:
                        _done, error, _rows = session.run_script(statements[index].text)
                    except psycopg.OperationalError as exc:
                        raise failure.connection_lost(parsed, exc, kept=first, building=build) from None
                    if error is None:
                        continue
                    if session.is_disconnect(error):
                        raise failure.connection_lost(parsed, error, kept=first, building=build) from None
                    session.rollback_quietly()
                    leftovers = self._clean_failed_build(parsed, first, build, before) if build is not None else []
                    raise AttemptFailed(parsed, error, failure.migration_failed(
                        parsed, 0, error, kept=first, attempts=self.retries + 1, base=statements[index],
                        leftovers=leftovers, block=(first, last) if last > first else None))

            self.with_retries(attempt)
            self._kept = last + 1
            if build is not None:
                self._check_build(parsed, first, build, before)
        if session.in_transaction():
            session.rollback_quietly()
            raise failure.left_open(parsed)
        duration_ms = round((time.monotonic() - started) * 1000)
        kept = f"all {len(statements)} statements ran and were kept, but the ledger was not changed"
        try:
            session.reset()
            with session.transaction(kept=kept):
                session.conn.execute(ledger_sql(duration_ms))
        except psycopg.Error as exc:
            if session.is_disconnect(exc):
                raise failure.connection_lost(parsed, exc, kept=len(statements)) from None
            raise self._commit_failed(parsed, exc, kept=kept) from None
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

    # -- several files in one transaction: a whole rollback, a rehearsal --------------------

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
        return self._together(downs, lambda m: self.ledger.forget_sql(m.version), [],
                              outcome="the rollback ran in one transaction, so nothing was rolled back")

    def rehearse(self, todo: Sequence[ParsedMigration]) -> tuple[list[int], BootstrapError | None]:
        """
        Apply `todo` (transactional files, in order: migrations with their ledger rows,
        then after-migrate scripts) in ONE transaction that is always rolled back, after
        creating what migrate would (the schemas and the ledger, if missing).

        Returns:
            The durations (ms) of the files that passed, in order, and the error
            of the one after them that failed (None when every file passed).
        """
        durations: list[int] = []
        try:
            self._together(todo, lambda m: self.ledger.insert_sql(m) if m.kind in RECORDED else "SELECT 1",
                           durations, rollback=True, outcome=ROLLED_BACK,
                           before=lambda: self.ledger.ensure(announce=False))
        except BootstrapError as exc:
            return list(durations), exc
        return list(durations), None

    def _together(self, files: Sequence[ParsedMigration], ledger_sql: Callable[[Migration], str],
                  durations: list[int], *, outcome: str, rollback: bool = False,
                  before: Callable[[], Any] | None = None) -> list[int]:
        """Run `files`, each with its ledger statement, in one transaction (rolled back with `rollback`)."""
        session = self.session

        def attempt() -> list[int]:
            durations.clear()
            failed: tuple[ParsedMigration, FileRun] | None = None
            try:
                with session.transaction(rollback=rollback):
                    if before is not None:
                        before()
                    for parsed in map(bind, files):
                        started = time.monotonic()
                        with session.notices(migration=parsed.migration.name):
                            run = session.run_file(parsed.text, after=[ledger_sql(parsed.migration)])
                        if run.error is not None:
                            failed = (parsed, run)
                            raise _Abort
                        durations.append(round((time.monotonic() - started) * 1000))
            except _Abort:
                assert failed is not None
                raise self._failed(*failed, outcome=outcome) from None
            except psycopg.Error as exc:  # the COMMIT, or the connection
                parsed = files[min(len(durations), len(files) - 1)]
                if session.is_disconnect(exc):
                    raise failure.connection_lost(parsed, exc, committing=not rollback
                                                  and len(durations) == len(files)) from None
                session.rollback_quietly()
                raise self._commit_failed(parsed, exc) from None
            return list(durations)

        return self.with_retries(attempt)

    # -- the one retry loop ----------------------------------------------------------------

    def with_retries(self, attempt: Callable[[], T]) -> T:
        """Run `attempt`; after a lock failure, pause with backoff and run it again, `retries` times."""
        last: list[AttemptFailed] = []

        def tried() -> T:
            try:
                return attempt()
            except AttemptFailed as failed:
                last[:] = [failed]
                raise

        def report(made: int, delay: float) -> None:
            failed = last[0]
            self.log.warning("migration_lock_retried", migration=failed.parsed.migration.name, attempt=made,
                             delay_s=round(delay, 3), error_type=RETRYABLE_SQLSTATES.get(failed.error.sqlstate or ""),
                             sqlstate=failed.error.sqlstate,
                             error=failed.error.diag.message_primary or str(failed.error))

        try:
            return retry(tried, again=lambda error, _result: isinstance(error, AttemptFailed)
                         and error.error.sqlstate in RETRYABLE_SQLSTATES, pauses=self.backoff,
                         tries=self.retries + 1, before_sleep=report)
        except AttemptFailed as failed:
            raise failed.final from None

    def _commit_failed(self, parsed: ParsedMigration, error: psycopg.Error, kept: str | None = None) -> BootstrapError:
        if self.session.lock_guard_failed(error):  # the ledger statement's guard: another runner holds the lock
            return self.session.lock_lost(kept)
        return failure.commit_failed(parsed, error, ledger_table=self.ledger.table_name)
