"""
Taking over a database bootstrap did not migrate, or mending its ledger: the
order of work of `baseline`, `repair` and `adopt`, each a function of a
`runner.Migrator`, so they run on the same session, ledger and locker as
`migrate`, under the same lock. Matching another tool's ledger to files is
`adoption`'s; choosing what to record is `plan`'s.
"""

from __future__ import annotations

from .errors import ConfigError, IntegrityError
from .migrations import Migration
from .plan import plan_baseline, plan_repair, plan_retired, versioned_rows
from .runner import Migrator
from .typing import AdoptResult, BaselineResult, RepairResult


def baseline(migrator: Migrator, migrations: list[Migration], *, version: int, allow_existing: bool) -> BaselineResult:
    """
    Record every versioned file up to `version` as applied without running it
    (`source = baseline`): adopting a database whose schema already exists.

    Raises:
        IntegrityError: the ledger already has rows (unless `allow_existing`:
            then only versions not yet recorded are added).
    """
    with migrator.session.guard(), migrator.locked():
        migrator.ledger.ensure()
        applied = migrator.ledger.read()
        if applied and not allow_existing:
            raise IntegrityError(
                f"the ledger {migrator.ledger.name} already has {len(applied)} rows; baseline is for "
                "adopting a database bootstrap has not migrated yet. Pass --allow-existing to record "
                "only the versions up to the baseline that are not recorded yet",
                rows=len(applied),
            )
        chosen = plan_baseline(migrations, applied, version)
        migrator.ledger.record_without_running([(m, "baseline", None) for m in chosen])
    for m in chosen:
        migrator.log.info("migration_baselined", migration=m.name, version=m.version)
    if not chosen:
        migrator.log.warning("baseline_nothing_recorded", version=version,
                         reason=f"no unrecorded file with a version up to {version} in {migrator.settings.sql_dir}")
    return BaselineResult(version, chosen)

def repair(migrator: Migrator, migrations: list[Migration], *, dry_run: bool) -> RepairResult:
    """
    Re-record the checksums (and names) of applied versioned files after a
    reviewed, cosmetic edit, and retire deleted repeatables (their rows go; what
    they created stays). Nothing else changes: missing versioned files are listed,
    not touched; changed repeatables are re-applied by migrate, not repaired.
    """
    with migrator.session.guard(), migrator.locked():
        applied = migrator.ledger.read()
        entries = plan_repair(migrations, applied)
        result = RepairResult(dry_run, entries, plan_retired(migrations, applied))
        changes = [(e.row.version, e.migration.checksum, e.migration.name)
                   for e in entries if e.migration is not None and e.row.version is not None]
        if (changes or result.retired) and not dry_run:
            migrator.ledger.rewrite_checksums(changes, [r.name for r in result.retired])
    for entry in entries:
        row, migration = entry.row, entry.migration
        if migration is None:
            migrator.log.warning("repair_skipped_missing", version=row.version, migration=row.name)
            continue
        migrator.log.info("migration_repaired" if not dry_run else "migration_repair_planned",
                          version=row.version, migration=migration.name, old_checksum=row.checksum,
                          new_checksum=migration.checksum, old_name=row.name)
    for row in result.retired:
        migrator.log.info("repeatable_retired" if not dry_run else "repeatable_retire_planned", migration=row.name,
                          reason="its file was deleted; what it created stays in the database")
    return result


def adopt(migrator: Migrator, migrations: list[Migration], *, tool_name: str, table: tuple[str, str] | None,
          dry_run: bool) -> AdoptResult:
    """
    Record as applied what another tool (node-pg-migrate, dbmate, Flyway,
    goose, golang-migrate) already applied, matching its ledger to files in
    sql/ by version.

    Raises:
        ConfigError: the tool's ledger is not in this database.
        IntegrityError: golang-migrate's ledger is dirty.
    """
    from .adoption import TOOLS, entries, match

    tool = TOOLS[tool_name]
    where = table or (tool.schema, tool.table)
    with migrator.session.guard():
        rows = migrator.ledger.read_foreign(tool, where)
        if rows is None:
            raise ConfigError(
                f"no {tool.name} ledger {where[0]}.{where[1]} in this database; "
                "pass --table schema.table if it lives elsewhere",
                table=f"{where[0]}.{where[1]}",
            )
        found = match(entries(tool, rows), migrations, set(versioned_rows(migrator.ledger.snapshot().applied)))
        if found.matched and not dry_run:
            with migrator.locked():
                migrator.ledger.ensure()
                recorded = set(versioned_rows(migrator.ledger.read()))
                todo = [(m, "adopted", e.applied_at) for m, e in found.matched if m.version not in recorded]
                migrator.ledger.record_without_running(todo)
    for migration, entry in found.matched:
        migrator.log.info("migration_adopt_planned" if dry_run else "migration_adopted", tool=tool.name,
                      migration=migration.name, version=migration.version, source_entry=entry.label)
    for entry in found.unmatched:
        migrator.log.warning("adopt_unmatched", tool=tool.name, entry=entry.label, version=entry.version)
    return AdoptResult(tool, found, dry_run)
