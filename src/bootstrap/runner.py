"""
The commands' work, in order: wait -> lock -> schemas -> ledger -> plan -> apply -> verify.

Files are discovered and checked before the database is touched; the
connection opened to wait is the one that migrates (one connection per run).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .db import Database
from .errors import ConfigError, IntegrityError, UsageError, VerifyFailedError
from .migrations import (
    Kind,
    Migration,
    ParsedMigration,
    discover_migrations,
    discover_verify_scripts,
    parse_file,
    parse_migration,
    versioned_files,
)
from .plan import AppliedMigration, Plan, build_plan, evaluate
from .settings import Settings

Log = Any


class Outcome:
    """What a run did, for its one summary line (a plain class: cheaper to define than a dataclass)."""

    __slots__ = ("applied", "extra", "migrated", "repeatables", "verified")

    def __init__(self) -> None:
        self.migrated = False
        self.applied: list[str] = []
        self.repeatables: list[str] = []
        self.verified: int | None = None
        self.extra: dict[str, Any] = {}

    def as_log(self) -> dict[str, Any]:
        """The summary's fields (only those the command produced)."""
        out: dict[str, Any] = {}
        if self.migrated:
            out["migrations_applied"] = len(self.applied)
            out["repeatables_applied"] = len(self.repeatables)
        if self.verified is not None:
            out["verify_scripts"] = self.verified
        out.update(self.extra)
        return out


def wait_for_database(settings: Settings, log: Log, *, wait: bool = True) -> Database:
    """Connect once `SELECT 1` answers (retrying transient failures unless `wait` is False)."""
    return Database.connect(settings, log, wait=wait)


def migrate(settings: Settings, log: Log, db: Database, outcome: Outcome,
            migrations: list[Migration] | None = None) -> None:
    """
    Check, then lock, create schemas and the ledger, and apply what is pending.

    One read-only round trip fetches the ledger first: integrity problems are
    refused there, before anything else. When nothing is pending (the common
    container start), that read is all: no lock is taken. Otherwise the runner
    takes the advisory lock (waiting runners stop as soon as another has done
    the work), reads the ledger again, splits and checks every file about to
    run, and only then creates schemas and the ledger and applies the files.

    Args:
        settings: the settings.
        log: logger.
        db: a connected database.
        outcome: filled with what was applied.
        migrations: already discovered files (discovered here when None).
    """
    if migrations is None:
        migrations = discover_migrations(settings.sql_dir)
    outcome.migrated = True
    with db.guard():
        _migrate(settings, log, db, outcome, migrations)


def _migrate(settings: Settings, log: Log, db: Database, outcome: Outcome,
             migrations: list[Migration]) -> None:
    snap = db.snapshot()
    plan = build_plan(migrations, snap.applied, out_of_order=settings.out_of_order)
    if not (plan.pending or plan.repeatables) and not db.needs_preparing(snap):
        log.info("migrations_up_to_date", applied=len(snap.applied))
        return

    newest = max((m.version for m in plan.pending if m.version is not None), default=None)

    def still_needed() -> bool:
        # While another runner holds the lock: has it finished our work meanwhile? One
        # indexed lookup per poll (fifty waiters must not re-read the whole ledger twice
        # a second); the full read only once the newest pending version is recorded.
        if newest is not None and not db.version_recorded(newest):
            return True
        now = db.snapshot()
        later = build_plan(migrations, now.applied, out_of_order=settings.out_of_order)
        return bool(later.pending or later.repeatables) or db.needs_preparing(now)

    # Taking the (advisory) lock writes nothing. Files are parsed only by the runner
    # that will apply them: fifty replicas racing must not each lex every pending file.
    if not db.acquire_lock(still_needed):
        log.info("migrations_up_to_date", applied=len(migrations), by="another runner")
        return
    try:
        applied = db.read_ledger_if_exists()
        plan = build_plan(migrations, applied, out_of_order=settings.out_of_order)
        # Every file about to run is split and checked before anything is written.
        todo = _parse_all(plan)
        db.prepare()
        if not todo:
            log.info("migrations_up_to_date", applied=len(applied))
            return
        db.use_migration_settings(todo)
        for item in todo:
            m = item.migration
            duration_ms = db.apply(item)
            if m.kind is Kind.VERSIONED:
                outcome.applied.append(m.name)
                log.info("migration_applied", migration=m.name, version=m.version,
                         duration_ms=duration_ms, transactional=m.transactional)
            else:
                outcome.repeatables.append(m.name)
                log.info("repeatable_applied", migration=m.name, duration_ms=duration_ms,
                         transactional=m.transactional)
    finally:
        db.release_lock()


def _parse_all(plan: Plan) -> list[ParsedMigration]:
    """Split and check every file the plan would run (before anything is written)."""
    return [parse_migration(m) for m in (*plan.pending, *plan.repeatables)]


def status(settings: Settings, log: Log, db: Database,
           migrations: list[Migration] | None = None) -> Plan:
    """The state of every migration; reads only, takes no lock."""
    if migrations is None:
        migrations = discover_migrations(settings.sql_dir)
    with db.guard():
        applied = db.snapshot(full=True).applied
    return evaluate(migrations, applied, out_of_order=settings.out_of_order)


def load_verify_scripts(sql_dir: Path, *, required: bool = False) -> list[tuple[str, str]]:
    """
    Read and check the verify scripts (before touching the database).

    Args:
        sql_dir: the migrations directory.
        required: the directory must exist (`bootstrap verify`); `run` verifies
            only when scripts exist.
    """
    if required and not sql_dir.is_dir():
        raise ConfigError(
            f"migrations directory {sql_dir} does not exist (set BOOTSTRAP_SQL_DIR or --sql-dir)",
            variable="BOOTSTRAP_SQL_DIR",
        )
    scripts = []
    for path in discover_verify_scripts(sql_dir):
        read, _script = parse_file(path)
        if not read.transactional:
            raise ConfigError(
                f"{path}: verify scripts always run inside bootstrap's transaction, which is rolled "
                "back; remove the '-- bootstrap:no-transaction' line",
                file=str(path),
            )
        scripts.append((path.name, read.text))
    return scripts


def verify(log: Log, db: Database, scripts: list[tuple[str, str]], outcome: Outcome) -> None:
    """
    Run the verify scripts in a transaction that is always rolled back.

    Raises:
        VerifyFailedError: one or more scripts raised an error; each is named.
    """
    started = time.monotonic()
    with db.guard():
        failures = db.verify(scripts)
    outcome.verified = len(scripts)
    if failures:
        raise VerifyFailedError(
            f"{len(failures)} of {len(scripts)} verify script{'s' if len(scripts) != 1 else ''} "
            "failed: " + "; ".join(failures),
            failures=failures,
        )
    log.info("verify_completed", scripts=len(scripts),
             duration_ms=round((time.monotonic() - started) * 1000))


def plan_rollback(
    migrations: list[Migration], applied: list[AppliedMigration], *, steps: int | None, to: int | None
) -> list[ParsedMigration]:
    """
    Choose the versions to undo (newest first) and read their `.down.sql` partners.

    Args:
        migrations: discovered files.
        applied: ledger rows.
        steps: undo this many of the newest applied versions.
        to: undo every applied version above this one (0: everything).

    Returns:
        The down files to run, newest version first.

    Raises:
        UsageError: more steps than applied versions.
        IntegrityError: an applied file in range changed or is missing.
        ConfigError: a partner in range is missing or cannot be parsed.
    """
    versions = sorted(_versioned_rows(applied).items(), reverse=True)  # (version, row), newest first
    if steps is not None:
        if steps > len(versions):
            raise UsageError(
                f"--steps {steps}, but only {len(versions)} versioned migration"
                f"{'s are' if len(versions) != 1 else ' is'} applied; nothing was rolled back",
                applied=len(versions),
            )
        chosen = versions[:steps]
    else:
        assert to is not None
        chosen = [(version, row) for version, row in versions if version > to]
    files = versioned_files(migrations)
    problems = []
    missing_partners = []
    for version, row in chosen:
        migration = files.get(version)
        if migration is None:
            problems.append(f"{row.name} (version {version}) is applied but its file is missing")
        elif migration.checksum != row.checksum:
            problems.append(f"{migration.name} (version {version}) changed after it was applied")
        elif migration.down_path is None:
            missing_partners.append(f"{migration.name} has no {migration.path.stem}.down.sql")
    if problems:
        raise IntegrityError("refusing to roll back, nothing was changed: " + "; ".join(problems),
                             problems=problems)
    if missing_partners:
        raise ConfigError("refusing to roll back, nothing was changed: " + "; ".join(missing_partners),
                          missing=missing_partners)
    downs = []
    for version, _row in chosen:
        migration = files[version]
        assert migration.down_path is not None
        read, script = parse_file(migration.down_path)
        downs.append(ParsedMigration(
            migration=migration._replace(location=migration.down_path, name=migration.down_path.name,
                                         checksum=read.checksum, transactional=read.transactional,
                                         down_location=None, text=None),
            script=script,
        ))
    return downs


def rollback(settings: Settings, log: Log, db: Database, outcome: Outcome, *,
             steps: int | None, to: int | None, migrations: list[Migration] | None = None) -> None:
    """
    Undo applied versions newest first with their `.down.sql` partners, each in
    a transaction with the removal of its ledger row, under the migration lock.
    Every partner is found and parsed before the first one runs.
    """
    if migrations is None:
        migrations = discover_migrations(settings.sql_dir)
    with db.guard():
        _rollback(log, db, outcome, steps=steps, to=to, migrations=migrations)


def _rollback(log: Log, db: Database, outcome: Outcome, *, steps: int | None, to: int | None,
              migrations: list[Migration]) -> None:
    with db.holding_lock():
        applied = db.read_ledger_if_exists()
        downs = plan_rollback(migrations, applied, steps=steps, to=to)
        outcome.extra["migrations_rolled_back"] = 0
        if not downs:
            log.info("rollback_nothing_to_do", to=to)
            return
        db.use_migration_settings()
        durations = db.unapply_all(downs)
        outcome.extra["migrations_rolled_back"] = len(durations)
        for down, duration_ms in zip(downs, durations, strict=True):
            log.info("migration_rolled_back", migration=down.migration.name, version=down.migration.version,
                     duration_ms=duration_ms)
        repeatables = sorted(r.name for r in applied if r.kind is Kind.REPEATABLE)
        if repeatables:
            log.info("repeatables_reset", migrations=repeatables,
                     reason="they may stand on what was rolled back; the next migrate re-applies them")


def _versioned_rows(applied: list[AppliedMigration]) -> dict[int, AppliedMigration]:
    return {r.version: r for r in applied if r.kind is Kind.VERSIONED and r.version is not None}


def baseline(settings: Settings, log: Log, db: Database, outcome: Outcome, *, version: int,
             allow_existing: bool, migrations: list[Migration], echo: Callable[[str], None]) -> None:
    """
    Record every versioned file up to `version` as applied without running it
    (`source = baseline`): adopting a database whose schema already exists.

    Raises:
        IntegrityError: the ledger already has rows (unless `allow_existing`:
            then only versions not yet recorded are added).
    """
    with db.guard(), db.holding_lock():
        db.prepare()
        applied = db.read_ledger()
        if applied and not allow_existing:
            raise IntegrityError(
                f"the ledger {settings.ledger_name} already has {len(applied)} rows; baseline is for "
                "adopting a database bootstrap has not migrated yet. Pass --allow-existing to record "
                "only the versions up to the baseline that are not recorded yet",
                rows=len(applied),
            )
        recorded = _versioned_rows(applied)
        chosen = [m for m in migrations
                  if m.kind is Kind.VERSIONED and m.version is not None and m.version <= version
                  and m.version not in recorded]
        db.record_without_running([(m, "baseline", None) for m in chosen])
    for m in chosen:
        log.info("migration_baselined", migration=m.name, version=m.version)
        echo(f"baselined  {m.version}  {m.name}")
    if not chosen:
        log.warning("baseline_nothing_recorded", version=version,
                    reason=f"no unrecorded file with a version up to {version} in {settings.sql_dir}")
        echo(f"nothing to record: no unrecorded file with a version up to {version}")
    outcome.extra["migrations_baselined"] = len(chosen)


def repair(settings: Settings, log: Log, db: Database, outcome: Outcome, *, dry_run: bool,
           migrations: list[Migration], echo: Callable[[str], None]) -> None:
    """
    Re-record the checksums (and names) of applied versioned files after a
    reviewed edit; list each change; change nothing else (missing files are
    listed, not touched; repeatables are re-applied by migrate, not repaired).
    """
    files = versioned_files(migrations)
    with db.guard(), db.holding_lock():
        applied = db.read_ledger_if_exists()
        changes: list[tuple[int, str, str]] = []
        for version, row in sorted(_versioned_rows(applied).items()):
            migration = files.get(version)
            if migration is None:
                echo(f"missing    {version}  {row.name}: no file; left as it is")
                log.warning("repair_skipped_missing", version=version, migration=row.name)
                continue
            if migration.checksum == row.checksum and migration.name == row.name:
                continue
            changes.append((version, migration.checksum, migration.name))
            what = []
            if migration.checksum != row.checksum:
                what.append(f"checksum {row.checksum[:12]} -> {migration.checksum[:12]}")
            if migration.name != row.name:
                what.append(f"name {row.name} -> {migration.name}")
            echo(f"{'would fix' if dry_run else 'repaired '}  {version}  {migration.name}: {', '.join(what)}")
            log.info("migration_repaired" if not dry_run else "migration_repair_planned",
                     version=version, migration=migration.name, old_checksum=row.checksum,
                     new_checksum=migration.checksum, old_name=row.name)
        if changes and not dry_run:
            db.rewrite_checksums(changes)
    if not changes:
        echo("nothing to repair: every applied file matches the ledger")
    outcome.extra["migrations_repaired"] = 0 if dry_run else len(changes)


def adopt(settings: Settings, log: Log, db: Database, outcome: Outcome, *, tool_name: str,
          table: tuple[str, str] | None, dry_run: bool, migrations: list[Migration],
          echo: Callable[[str], None]) -> None:
    """
    Record as applied what another tool (node-pg-migrate, dbmate, Flyway)
    already applied, matching its ledger to files in sql/ by version.

    Raises:
        ConfigError: the tool's ledger is not in this database.
    """
    from .adoption import TOOLS, entries, match

    tool = TOOLS[tool_name]
    where = table or (tool.schema, tool.table)
    with db.guard():
        rows = db.read_foreign_ledger(tool.columns, tool.order_by, where)
        if rows is None:
            raise ConfigError(
                f"no {tool.name} ledger {where[0]}.{where[1]} in this database; "
                "pass --table schema.table if it lives elsewhere",
                table=f"{where[0]}.{where[1]}",
            )
        found = entries(tool, rows)
        result = match(found, migrations, set(_versioned_rows(db.snapshot().applied)))
        for migration, entry in result.matched:
            verb = "would adopt" if dry_run else "adopted    "
            echo(f"{verb}  {migration.version}  {migration.name}  <- {entry.label}")
        for migration in result.already:
            echo(f"already     {migration.version}  {migration.name}")
        for entry in result.unmatched:
            echo(f"unmatched   {entry.label}: no file in {settings.sql_dir} with version {entry.version}")
        for migration in result.pending:
            echo(f"pending     {migration.version}  {migration.name}: "
                 f"not in {tool.name}'s ledger; migrate will apply it")
        for entry in result.repeatables:
            echo(f"repeatable  {entry.label}: not adopted; migrate re-applies it once (repeatables are idempotent)")
        if result.matched and not dry_run:
            with db.holding_lock():
                db.prepare()
                recorded = set(_versioned_rows(db.read_ledger()))
                todo = [(m, "adopted", e.applied_at) for m, e in result.matched if m.version not in recorded]
                db.record_without_running(todo)
    for migration, entry in result.matched:
        log.info("migration_adopt_planned" if dry_run else "migration_adopted", tool=tool.name,
                 migration=migration.name, version=migration.version, source_entry=entry.label)
    for entry in result.unmatched:
        log.warning("adopt_unmatched", tool=tool.name, entry=entry.label, version=entry.version)
    outcome.extra.update({
        "adopted": 0 if dry_run else len(result.matched),
        "matched": len(result.matched),
        "unmatched": len(result.unmatched),
        "pending": len(result.pending),
    })
