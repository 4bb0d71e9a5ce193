"""
The order of work (goose's Provider): check files, wait, lock, create schemas
and the ledger, plan, apply, verify.

`Migrator` holds the session, the ledger, the locker and the applier that
`open_migrator` builds on one connection (`bootstrap.pg`), and runs migrate,
status, wait-migrated, verify and rollback on them. How a command gets to one
(its files checked first) and the `run` pipeline before `exec` are `pipeline`'s.
The commands that look before a deploy (`preflight`) and those that take a
database over (`takeover`) are functions of a `Migrator`, in modules above this
one. Commands return result values; `render` prints them, `command` logs their
summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .backoff import WAIT, retry
from .errors import MigrationsPendingError, VerifyFailedError
from .migrations import Kind, Migration, ParsedMigration
from .parsing import load_scripts, parse_down, parse_migration
from .plan import Plan, State, build_plan, check_sql_dir, evaluate, plan_rollback, up_to
from .typing import (
    AppliedMigration,
    LintResult,
    Logger,
    MigrateResult,
    RollbackResult,
    VerifyResult,
    WaitResult,
)

WAIT_LOG_EVERY_S = 10.0

if TYPE_CHECKING:
    from .backoff import Backoff
    from .pg import AdvisoryLocker, PgLedger, Session
    from .pg.applier import Applier
    from .settings import Settings


class Migrator:
    """
    bootstrap's commands on one database session.

    Args:
        settings: the settings.
        log: a structlog logger.
        session: the runner's session (its `guard` turns a lost connection into exit 4).
        ledger: the ledger.
        locker: the lock runners serialise on.
        applier: what makes the applier (on first use: a start with nothing to apply never loads it).
    """

    def __init__(self, settings: Settings, log: Logger, session: Session, ledger: PgLedger, locker: AdvisoryLocker,
                 applier: Callable[[], Applier]) -> None:
        self.settings = settings
        self.log = log
        self.session = session
        self.ledger = ledger
        self.locker = locker
        self._make_applier = applier
        self._applier: Applier | None = None
        self.result = MigrateResult([], [], [])  # the last migrate's, as far as it got

    @property
    def applier(self) -> Applier:
        """The applier, made on first use."""
        if self._applier is None:
            self._applier = self._make_applier()
        return self._applier

    def plan(self, migrations: list[Migration], applied: list[AppliedMigration], to: int | None = None) -> Plan:
        """migrate's plan (integrity refused), with `--to`'s pending versions only."""
        check_sql_dir(migrations, applied, self.settings.sql_dir, self.ledger.name)
        return up_to(build_plan(migrations, applied, out_of_order=self.settings.out_of_order,
                                refuse_future=self.settings.refuse_future), to)

    def report_future(self, plan: Plan) -> None:
        """Say what a newer release applied, which this one leaves as it is."""
        versions = [e.version for e in plan.future if e.version is not None]
        if versions:
            self.log.warning("migrations_future", count=len(versions), newest=max(versions),
                             reason="applied by a newer release (an older image in a rolling deploy or after a "
                                    "rollback); left as they are")
        for entry in plan.future:
            if entry.kind is Kind.REPEATABLE:
                assert entry.applied is not None
                self.log.warning("repeatable_skipped", migration=entry.name,
                                 after_version=entry.applied.after_version,
                                 reason="written by a newer release; this release's older file is not re-applied")

    def lint(self, files: Sequence[Migration], *, block: bool) -> LintResult | None:
        """Lint the files about to run (`--lint`); `block` lets `--lint error` refuse (exit 11)."""
        from .lint import lint_step  # only when something is about to run: a no-op start never loads it

        return lint_step(self.settings.lint, files, self.log, server_version=self.session.server_version, block=block)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the migration lock for the block (behind a pooler: refuse transaction pooling first)."""
        self.session.check_writable()
        self.locker.acquire()
        try:
            yield
        finally:
            self.locker.release()

    # -- migrate ---------------------------------------------------------------------------

    def migrate(self, migrations: list[Migration], *, to: int | None = None) -> MigrateResult:
        """
        Check, then lint, lock, create schemas and the ledger, and apply what is pending
        (`to`: the pending versions up to it, then the repeatables).

        One read-only round trip fetches the ledger first: integrity problems are
        refused there. When nothing is pending (the common container start), that
        read is all: no lint, no lock. Otherwise the files about to run are linted
        (`--lint error` refuses here), the runner takes the lock (waiters stop as
        soon as another has done the work), reads the ledger again, splits and
        checks every file about to run, then creates schemas and the ledger and
        applies the files.
        """
        after = load_scripts(self.settings.sql_dir, Kind.AFTER, self.settings.environ)
        with self.session.guard():
            return self._migrate(migrations, to, after)

    def _migrate(self, migrations: list[Migration], to: int | None, after: list[ParsedMigration]) -> MigrateResult:
        ledger, log = self.ledger, self.log
        self.result = result = MigrateResult([], [], [])  # what was applied so far, even if a later file fails
        snap = ledger.snapshot()
        plan = self.plan(migrations, snap.applied, to)
        if plan.future:
            self.report_future(plan)
        # After-migrate scripts run on every migrate that takes the lock: with some, every migrate takes it.
        if not (plan.pending or plan.repeatables) and not ledger.needs_preparing(snap) and not after:
            log.info("migrations_up_to_date", applied=len(snap.applied))
            return result
        self.lint([*plan.pending, *plan.repeatables], block=True)  # before the lock: refusing changes nothing

        newest = max((m.version for m in plan.pending if m.version is not None), default=None)

        def still_needed() -> bool:
            # While another runner holds the lock: has it finished our work meanwhile? One
            # indexed lookup per poll (fifty waiters must not re-read the whole ledger twice
            # a second); the full read only once the newest pending version is recorded.
            if newest is not None and not ledger.has_version(newest):
                return True
            now = ledger.snapshot()
            later = self.plan(migrations, now.applied, to)
            return bool(later.pending or later.repeatables) or ledger.needs_preparing(now)

        # Taking the (advisory) lock writes nothing. Files are parsed only by the runner
        # that will apply them: fifty replicas racing must not each lex every pending file.
        self.session.check_writable()  # behind a pooler: refuse transaction pooling first
        if not self.locker.acquire(still_needed):
            log.info("migrations_up_to_date", applied=len(migrations), by="another runner")
            return result
        try:
            applied = ledger.read()
            plan = self.plan(migrations, applied, to)
            if to is not None:
                self.report_left_pending(migrations, applied, to)
            # Every file about to run is split and checked before anything is written.
            todo = [parse_migration(m, self.settings.environ) for m in (*plan.pending, *plan.repeatables)]
            ledger.ensure()
            if todo:
                self._warn_unversioned(plan)
                self._apply(todo, result)
            else:
                log.info("migrations_up_to_date", applied=len(applied))
            for script in after:
                duration_ms = self.applier.run_after(script)
                result.after.append(script.migration.name)
                log.info("after_script_ran", script=script.migration.name, duration_ms=duration_ms,
                         transactional=script.migration.transactional)
        finally:
            self.locker.release()
        return result

    def report_left_pending(self, migrations: list[Migration], applied: list[AppliedMigration], to: int) -> None:
        """`--to`: say which pending versions above it stay pending."""
        above = [m for m in self.plan(migrations, applied).pending if m.version is not None and m.version > to]
        if above:
            self.log.info("migrations_left_pending", count=len(above), to_version=to, next=above[0].name)

    def _warn_unversioned(self, plan: Plan) -> None:
        """
        Repeatables that change with no versioned file in the same run: an older image
        with the same versions cannot tell this release is newer, and would re-apply
        its own definition (docs/migration-files.md). Changed ones only: a repeatable
        with no row yet is also what a rollback or a baseline leaves.
        """
        changed = [e.name for e in plan.entries
                   if e.kind is Kind.REPEATABLE and e.state is State.PENDING and e.applied is not None]
        if changed and not plan.pending:
            self.log.warning("repeatables_without_version", migrations=changed,
                             reason="no versioned file comes with this change: an older image with the same "
                                    "versioned files (a rollback) would re-apply its own definition; give the "
                                    "release a versioned file, even a no-op one")

    def _apply(self, todo: list[ParsedMigration], result: MigrateResult) -> None:
        for item in todo:
            m = item.migration
            duration_ms = self.applier.apply(item)
            if m.kind is Kind.VERSIONED:
                result.applied.append(m.name)
                self.log.info("migration_applied", migration=m.name, version=m.version,
                              duration_ms=duration_ms, transactional=m.transactional)
            else:
                result.repeatables.append(m.name)
                self.log.info("repeatable_applied", migration=m.name, duration_ms=duration_ms,
                              transactional=m.transactional)

    # -- reading ---------------------------------------------------------------------------

    def status(self, migrations: list[Migration]) -> Plan:
        """The state of every migration; reads only, takes no lock."""
        with self.session.guard():
            applied = self.ledger.read()
        check_sql_dir(migrations, applied, self.settings.sql_dir, self.ledger.name)
        return evaluate(migrations, applied, out_of_order=self.settings.out_of_order,
                        refuse_future=self.settings.refuse_future)

    def wait_migrated(self, migrations: list[Migration], *, deadline: float) -> WaitResult:
        """
        Wait until every versioned file is applied and every repeatable current
        (another runner, a migration Job, applies them); never migrate.

        Polls the ledger (one read) with the wait's backoff, waking at once when
        a runner releases the migration lock. Logs what is pending every 10 s.

        Raises:
            IntegrityError: a file changed or is missing (exit 6, at once).
            MigrationsPendingError: files still pending at `deadline` (exit 10).
        """
        started = time.monotonic()
        report_at, polls = [0.0], [0]

        def pending() -> Plan:
            polls[0] += 1
            plan = self.plan(migrations, self.ledger.snapshot().applied)
            waiting = [m.name for m in (*plan.pending, *plan.repeatables)]
            waited = time.monotonic() - started
            if waiting and waited >= report_at[0]:
                self.log.info("migrations_waiting", pending=waiting[:10], count=len(waiting),
                              waited_s=round(waited, 1), timeout_s=self.settings.wait_timeout)
                report_at[0] = waited + WAIT_LOG_EVERY_S
            return plan

        with self.session.guard():
            last = retry(lambda: self.locker.reconnecting(pending), again=lambda error, plan: error is None and (
                plan is None or bool(plan.pending or plan.repeatables)), pauses=WAIT, deadline=deadline,
                sleep=lambda seconds: self.locker.reconnecting(lambda: self.locker.await_release(seconds)))
        waiting = [m.name for m in (*last.pending, *last.repeatables)] if last is not None else ["(no answer)"]
        waited = time.monotonic() - started
        if waiting:
            raise MigrationsPendingError(
                f"{len(waiting)} migration{'s' if len(waiting) != 1 else ''} still pending after {waited:.1f}s: "
                f"{', '.join(waiting[:10])}{' ...' if len(waiting) > 10 else ''}; "
                "is the migration Job running? (raise --timeout to wait longer)", pending=waiting)
        assert last is not None
        if last.future:
            self.report_future(last)
        self.log.info("migrations_ready", waited_ms=round(waited * 1000), polls=polls[0])
        return WaitResult(round(waited * 1000))

    def verify(self, scripts: list[ParsedMigration]) -> VerifyResult:
        """
        Run the verify scripts in a transaction that is always rolled back.

        Raises:
            VerifyFailedError: one or more scripts raised an error; each is named.
        """
        from .pg.verifier import run_verify

        started = time.monotonic()
        with self.session.guard():
            failures = run_verify(self.session, scripts, self.log)
        if failures:
            raise VerifyFailedError(
                f"{len(failures)} of {len(scripts)} verify script{'s' if len(scripts) != 1 else ''} "
                "failed: " + "; ".join(failures),
                failures=failures,
            )
        self.log.info("verify_completed", scripts=len(scripts),
                      duration_ms=round((time.monotonic() - started) * 1000))
        return VerifyResult(len(scripts))

    # -- rollback --------------------------------------------------------------------------

    def rollback(self, migrations: list[Migration], *, steps: int | None, to: int | None) -> RollbackResult:
        """
        Undo applied versions newest first with their `.down.sql` partners, each in
        a transaction with the removal of its ledger row, under the migration lock.
        Every partner is found and parsed before the first one runs.
        """
        with self.session.guard(), self.locked():
            applied = self.ledger.read()
            downs = [parse_down(m, self.settings.environ)
                     for m in plan_rollback(migrations, applied, steps=steps, to=to)]
            if not downs:
                self.log.info("rollback_nothing_to_do", to=to)
                return RollbackResult([])
            durations = self.applier.unapply_all(downs)
        for down, duration_ms in zip(downs, durations, strict=True):
            self.log.info("migration_rolled_back", migration=down.migration.name, version=down.migration.version,
                          duration_ms=duration_ms)
        repeatables = sorted(r.name for r in applied if r.kind is Kind.REPEATABLE)
        if repeatables:
            self.log.info("repeatables_reset", migrations=repeatables,
                          reason="they may stand on what was rolled back; the next migrate re-applies them")
        return RollbackResult([(d.migration, ms) for d, ms in zip(downs, durations, strict=True)])


@contextmanager
def open_migrator(settings: Settings, log: Logger, *, wait: bool = True,
                  lock_poll: Backoff | None = None) -> Iterator[Migrator]:
    """
    Wait for the database and build the `Migrator` on one session; close it after the block.

    Args:
        settings: the settings.
        log: a structlog logger.
        wait: retry until `--timeout` (False: one attempt).
        lock_poll: the pause between polls of another runner's lock (the default schedule when None).
    """
    from .pg import AdvisoryLocker, PgLedger, advisory_key, open_session

    session = open_session(settings, log, wait=wait)
    try:
        ledger = PgLedger(session, settings, log)
        key = advisory_key(*settings.lock_ledger)
        locker = (AdvisoryLocker(session, key, timeout_s=settings.lock_timeout, log=log) if lock_poll is None
                  else AdvisoryLocker(session, key, timeout_s=settings.lock_timeout, log=log, poll=lock_poll))

        def applier() -> Applier:
            from .pg.applier import Applier

            return Applier(session, ledger, retries=settings.ddl_lock_retries, log=log)

        yield Migrator(settings, log, session, ledger, locker, applier)
    finally:
        session.close()
