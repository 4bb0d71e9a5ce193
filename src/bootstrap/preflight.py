"""
Before a deploy: the order of work of `lint`, of the lint `migrate` runs
before its lock, of `migrate --dry-run` and of `migrate --rehearse`.

`Preflight` is the part of `runner.Migrator` that looks at what is about to
run without applying it: `Migrator` inherits it, so these commands run on the
same session, ledger, locker and applier as `migrate`. `lint_command` is
`bootstrap lint`, which needs no database. The squawk side is `lint`; the SQL
side of a rehearsal is `pg.rehearsal`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING

from .errors import ConfigError, DatabaseUnavailableError, LintFindingsError, MigrationFailedError
from .migrations import Migration, discover_migrations, parse_migration
from .plan import evaluate
from .typing import DryRunResult, LintResult, PlannedFile, RehearsalResult, RehearsedFile

if TYPE_CHECKING:
    from .pg import Applier, Session
    from .plan import Plan
    from .settings import Settings
    from .typing import AppliedMigration, Ledger, Locker, Logger

NOT_IN_TRANSACTION = "no-transaction: it cannot run inside the rehearsal's transaction"
AFTER_NO_TRANSACTION = "after {name}, which was not rehearsed and which it may depend on"
AFTER_FAILURE = "not reached: {name} failed"


class Preflight:
    """What `Migrator` does before applying, or instead of it: lint, dry run, rehearsal."""

    settings: Settings
    log: Logger
    session: Session
    ledger: Ledger
    locker: Locker

    if TYPE_CHECKING:  # Migrator's

        @property
        def applier(self) -> Applier: ...

        def _plan(self, migrations: list[Migration], applied: list[AppliedMigration],
                  to: int | None = None) -> Plan: ...

        def _report_future(self, plan: Plan) -> None: ...

    # -- lint ------------------------------------------------------------------------------

    def _lint(self, files: Sequence[Migration], *, block: bool) -> LintResult | None:
        """
        Lint the files about to run (`--lint`), logging each finding as a warning.

        Args:
            files: what would run, in order.
            block: with `--lint error`, refuse when findings remain.

        Returns:
            What linting found; None with `--lint off` or nothing to lint.

        Raises:
            ConfigError: `--lint error` without squawk, or squawk failed (exit 3).
            LintFindingsError: `--lint error` and `block`, with findings (exit 11).
        """
        mode = self.settings.lint
        if mode == "off" or not files:
            return None
        try:
            result = run_lint(files, self.log, server_version=self.session.server_version)
        except ConfigError as exc:
            if mode == "error":
                raise
            self.log.warning("lint_skipped", reason=exc.message, **exc.fields)
            return LintResult(list(files), [], [], skipped=exc.message)
        if block and mode == "error" and result.findings:
            raise findings_error(result)
        return result

    def _report_left_pending(self, migrations: list[Migration], applied: list[AppliedMigration], to: int) -> None:
        """`--to`: say which pending versions above it stay pending."""
        above = [m for m in self._plan(migrations, applied).pending if m.version is not None and m.version > to]
        if above:
            self.log.info("migrations_left_pending", count=len(above), to_version=to, next=above[0].name)

    # -- migrate --dry-run -----------------------------------------------------------------

    def dry_run(self, migrations: list[Migration], *, to: int | None = None) -> DryRunResult:
        """
        What `migrate` would do, and nothing else: no lock, no ledger, no schema, no write.

        One read of the ledger (as migrate's first, refusing integrity problems
        the same way), every file that would run split by the real parser (its
        statement count; a file migrate would refuse is refused here), then linted.

        Raises:
            IntegrityError, ConfigError: as migrate would, before anything.
        """
        with self.session.guard():
            snap = self.ledger.snapshot()
            plan = self._plan(migrations, snap.applied, to)
        if plan.future:
            self._report_future(plan)
        files = [*plan.pending, *plan.repeatables]
        planned = [PlannedFile(p.migration, len(p.script.code_statements)) for p in map(parse_migration, files)]
        wanted = dict.fromkeys([*self.settings.schemas, self.ledger.schema])
        creates = [f"schema {s}" for s in wanted if s not in snap.schemas]
        if not snap.ledger_exists:
            creates.append(f"ledger {self.ledger.name}")
        left = [] if to is None else [m for m in self._plan(migrations, snap.applied).pending
                                      if m.version is not None and m.version > to]
        result = DryRunResult(planned, creates, self._lint(files, block=False), left)
        self.log.info("migrate_planned", files=len(planned), creates=creates or None,
                      left_pending=len(left) or None)
        return result

    # -- migrate --rehearse ----------------------------------------------------------------

    def rehearse(self, migrations: list[Migration], *, to: int | None = None) -> RehearsalResult:
        """
        Apply the pending files, in migrate's order and with their ledger rows,
        inside one transaction that is always rolled back, under the migration lock.

        The rehearsal stops at the first file that fails, and at the first
        `no-transaction` file (it cannot run inside a transaction): that file and
        every file after it, which may depend on it, are listed as not
        rehearsed; so repeatables are rehearsed only when every versioned file was.

        Returns:
            Each file's outcome; `failure` holds the failed file's error, raised
            by the command after printing (exit 5).

        Raises:
            LintFindingsError: `--lint error` with findings, before the lock.
            LockTimeoutError: another runner held the lock past --lock-timeout.
        """
        from .pg import rehearse_files

        with self.session.guard():
            plan = self._plan(migrations, self.ledger.snapshot().applied, to)
            if plan.future:
                self._report_future(plan)
            files = [*plan.pending, *plan.repeatables]
            if not files:
                self.log.info("rehearsal_nothing_to_do", reason="nothing is pending")
                return RehearsalResult([], None, None)
            linted = self._lint(files, block=True)
            self.session.check_writable()
            self.locker.acquire()
            started = time.monotonic()
            try:
                # Under the lock: what is pending now (another runner may have applied some meanwhile).
                plan = self._plan(migrations, self.ledger.read(), to)
                todo = [parse_migration(m) for m in (*plan.pending, *plan.repeatables)]
                runnable = next((i for i, p in enumerate(todo) if not p.migration.transactional), len(todo))
                durations, error = rehearse_files(self.applier, todo[:runnable]) if runnable else ([], None)
            finally:
                self.locker.release()
        if error is not None and not isinstance(error, MigrationFailedError):
            raise error  # not a file's fault (a pooler, a privilege): nothing to list
        failure = error if isinstance(error, MigrationFailedError) else None
        rehearsed = self._outcomes([p.migration for p in todo], durations, failure, runnable)
        self.log.info("rehearsal_rolled_back", passed=len(durations), failed=int(failure is not None),
                      not_rehearsed=sum(1 for f in rehearsed if f.outcome == "not rehearsed"),
                      duration_ms=round((time.monotonic() - started) * 1000))
        return RehearsalResult(rehearsed, failure, linted)

    def _outcomes(self, files: list[Migration], durations: list[int], failure: MigrationFailedError | None,
                  runnable: int) -> list[RehearsedFile]:
        """Each file's outcome, logged."""
        out: list[RehearsedFile] = []
        for i, m in enumerate(files):
            if i < len(durations):
                out.append(RehearsedFile(m, "passed", durations[i]))
                self.log.info("migration_rehearsed", migration=m.name, version=m.version, duration_ms=durations[i])
                continue
            if i == len(durations) and failure is not None:
                out.append(RehearsedFile(m, "failed", None, failure.message))
                continue
            if failure is not None:
                why = AFTER_FAILURE.format(name=files[len(durations)].name)
            elif i == runnable:
                why = NOT_IN_TRANSACTION
            else:
                why = AFTER_NO_TRANSACTION.format(name=files[runnable].name)
            out.append(RehearsedFile(m, "not rehearsed", None, why))
            if failure is None:
                self.log.warning("migration_rehearsal_skipped", migration=m.name, version=m.version, reason=why)
        return out


def findings_error(result: LintResult, *, refusing: bool = True) -> LintFindingsError:
    """
    The error for findings that remain (exit 11), naming each place and rule.

    Args:
        result: what linting found.
        refusing: `migrate --lint error` refusing to run (False: `bootstrap lint` reporting).
    """
    count, files = len(result.findings), len({f.file for f in result.findings})
    shown = "; ".join(f"{f.where()}: {f.rule}" for f in result.findings[:10])
    more = f"; and {count - 10} more" if count > 10 else ""
    return LintFindingsError(
        f"{count} lint finding{'s' if count != 1 else ''} in {files} file{'s' if files != 1 else ''}"
        f"{', nothing was changed' if refusing else ''}: {shown}{more}. Fix them, or silence a rule in a file "
        f"with '-- bootstrap:lint-ignore RULE'{' (or pass --lint warn)' if refusing else ''}",
        findings=count, files=files,
    )


def run_lint(files: Sequence[Migration], log: Logger, *, server_version: int | None,
             scope: str = "pending") -> LintResult:
    """
    Lint `files` with squawk and log what it found: each finding (warning),
    each file's silenced findings, and one `lint_completed` line.

    Raises:
        ConfigError: squawk is not installed, or failed.
    """
    from .lint import MOOT_RULES, find_squawk, lint, not_installed  # not on a start with nothing to lint

    squawk = find_squawk()
    if squawk is None:
        raise not_installed()
    started = time.monotonic()
    outcome = lint(files, squawk, server_version=server_version)
    for f in outcome.findings:
        log.warning("lint_finding_reported", migration=f.name, file=f.file, line=f.line, column=f.column,
                    rule=f.rule, message=f.message, help=f.help)
    for s in outcome.silenced:
        log.info("lint_findings_silenced", migration=s.name, rules=list(s.rules), findings=s.findings,
                 reason="-- bootstrap:lint-ignore in the file")
    log.info("lint_completed", files=len(files), findings=len(outcome.findings),
             silenced=sum(s.findings for s in outcome.silenced), scope=scope, excluded=sorted(MOOT_RULES),
             duration_ms=round((time.monotonic() - started) * 1000))
    return LintResult(list(files), outcome.findings, outcome.silenced, scope=scope, server_version=server_version)


def lint_command(settings: Settings, log: Logger, *, all_files: bool) -> LintResult:
    """
    `bootstrap lint`: lint the pending files (every file with `all_files`), changing nothing.

    The database is tried once, without waiting: reached, it tells which files
    are pending and the server's version; not reached (CI before a deploy, or
    any failure to connect), every file is linted and the log says why.

    Raises:
        ConfigError: bad files, squawk not installed or failed (exit 3).
        LintFindingsError: findings remain (exit 11), after the caller printed them.
    """
    from .lint import find_squawk, not_installed
    from .runner import open_migrator

    migrations = discover_migrations(settings.sql_dir)
    if find_squawk() is None:
        raise not_installed()
    files, scope, version = migrations, "all", None
    with ExitStack() as stack:
        try:
            migrator = stack.enter_context(open_migrator(settings, log, wait=False))
        except (DatabaseUnavailableError, ConfigError) as exc:
            log.warning("lint_offline", reason=exc.message,
                        consequence="every file is linted, without the server's version")
            scope = "all (no database)"
        else:
            version = migrator.session.server_version
            if not all_files:
                with migrator.session.guard():
                    plan = evaluate(migrations, migrator.ledger.snapshot().applied,
                                    out_of_order=True, refuse_future=False)
                files, scope = [*plan.pending, *plan.repeatables], "pending"
    return run_lint(files, log, server_version=version, scope=scope)

