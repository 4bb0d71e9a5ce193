"""
Before a deploy: `bootstrap lint`, `migrate --dry-run` and `migrate --rehearse`,
each a function of a `runner.Migrator` (the same session, ledger, locker and
applier as `migrate`). The squawk side is `lint`; the SQL of a rehearsal is
`pg.applier.Applier.rehearse`.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from .errors import ConfigError, DatabaseUnavailableError, MigrationFailedError
from .lint import find_squawk, not_installed, run_lint
from .migrations import Kind, Migration
from .parsing import load_scripts, parse_migration
from .pipeline import discover
from .plan import evaluate
from .runner import Migrator, open_migrator
from .typing import DryRunResult, LintResult, PlannedFile, RehearsalResult, RehearsedFile

if TYPE_CHECKING:
    from .settings import Settings
    from .typing import Logger

NOT_IN_TRANSACTION = "no-transaction: it cannot run inside the rehearsal's transaction"
AFTER_NO_TRANSACTION = "after {name}, which was not rehearsed and which it may depend on"
AFTER_FAILURE = "not reached: {name} failed"


def dry_run(migrator: Migrator, migrations: list[Migration], *, to: int | None = None) -> DryRunResult:
    """
    What `migrate` would do, and nothing else: no lock, no ledger, no schema, no write.

    One read of the ledger (as migrate's first, refusing integrity problems
    the same way), every file that would run split by the real parser (its
    statement count; a file migrate would refuse is refused here), then linted.

    Raises:
        IntegrityError, ConfigError: as migrate would, before anything.
    """
    with migrator.session.guard():
        snap = migrator.ledger.snapshot()
        plan = migrator.plan(migrations, snap.applied, to)
    if plan.future:
        migrator.report_future(plan)
    files = [*plan.pending, *plan.repeatables]
    # Their variables are checked, their values never read: the plan shows the files as written.
    parsed = [*map(parse_migration, files), *load_scripts(migrator.settings.sql_dir, Kind.AFTER, None)]
    planned = [PlannedFile(p.migration, len(p.script.code_statements)) for p in parsed]
    wanted = dict.fromkeys([*migrator.settings.schemas, migrator.ledger.schema])
    creates = [f"schema {s}" for s in wanted if s not in snap.schemas]
    if not snap.ledger_exists:
        creates.append(f"ledger {migrator.ledger.name}")
    left = [] if to is None else [m for m in migrator.plan(migrations, snap.applied).pending
                                  if m.version is not None and m.version > to]
    result = DryRunResult(planned, creates, migrator.lint(files, block=False), left)
    migrator.log.info("migrate_planned", files=len(planned), creates=creates or None, left_pending=len(left) or None)
    return result


def rehearse(migrator: Migrator, migrations: list[Migration], *, to: int | None = None) -> RehearsalResult:
    """
    Apply the pending files, in migrate's order and with their ledger rows, then the
    after-migrate scripts, inside one transaction that is always rolled back, under the
    migration lock.

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
    log = migrator.log
    with migrator.session.guard():
        plan = migrator.plan(migrations, migrator.ledger.snapshot().applied, to)
        if plan.future:
            migrator.report_future(plan)
        files = [*plan.pending, *plan.repeatables]
        if not files:
            log.info("rehearsal_nothing_to_do", reason="nothing is pending")
            return RehearsalResult([], None, None)
        linted = migrator.lint(files, block=True)
        with migrator.locked():
            started = time.monotonic()
            # Under the lock: what is pending now (another runner may have applied some meanwhile).
            plan = migrator.plan(migrations, migrator.ledger.read(), to)
            environ = migrator.settings.environ
            todo = [*(parse_migration(m, environ) for m in (*plan.pending, *plan.repeatables)),
                    *load_scripts(migrator.settings.sql_dir, Kind.AFTER, environ)]
            runnable = next((i for i, p in enumerate(todo) if not p.migration.transactional), len(todo))
            durations, error = migrator.applier.rehearse(todo[:runnable]) if runnable else ([], None)
    if error is not None and not isinstance(error, MigrationFailedError):
        raise error  # not a file's fault (a pooler, a privilege): nothing to list
    rehearsed = _outcomes(log, [p.migration for p in todo], durations, error, runnable)
    log.info("rehearsal_rolled_back", passed=len(durations), failed=int(error is not None),
             not_rehearsed=sum(1 for f in rehearsed if f.outcome == "not rehearsed"),
             duration_ms=round((time.monotonic() - started) * 1000))
    return RehearsalResult(rehearsed, error, linted)


def _outcomes(log: Logger, files: list[Migration], durations: list[int], failure: MigrationFailedError | None,
              runnable: int) -> list[RehearsedFile]:
    """Each file's outcome, logged."""
    out: list[RehearsedFile] = []
    for i, m in enumerate(files):
        if i < len(durations):
            out.append(RehearsedFile(m, "passed", durations[i]))
            log.info("migration_rehearsed", migration=m.name, version=m.version, duration_ms=durations[i])
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
            log.warning("migration_rehearsal_skipped", migration=m.name, version=m.version, reason=why)
    return out


def lint_command(settings: Settings, log: Logger, *, all_files: bool) -> LintResult:
    """
    `bootstrap lint`: lint the pending files (every file with `all_files`), changing nothing.

    The database is tried once, without waiting: reached, it tells which files
    are pending and the server's version; not reached (CI before a deploy, or
    any failure to connect), every file is linted and the log says why.

    Raises:
        ConfigError: bad files, squawk not installed or failed (exit 3), or a lint-ignore
            rule squawk does not know.
        LintFindingsError: findings remain (exit 11), after the caller printed them.
    """
    migrations = discover(settings, log)
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
    result = run_lint(files, log, server_version=version, scope=scope)
    if result.unknown:
        raise ConfigError(f"bootstrap:lint-ignore names rules squawk does not know: {'; '.join(result.unknown)}",
                          unknown=result.unknown)
    return result
