"""
Taking over a database bootstrap did not migrate, or mending its ledger: the
order of work of `baseline`, `repair` and `adopt`.

`Takeover` is the part of `runner.Migrator` that records files as applied
without running them: `Migrator` inherits it, so these commands run on the
same session, ledger and locker as `migrate`, under the same lock. Matching
another tool's ledger to files is `adoption`'s; choosing what to record is
`plan`'s.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from .errors import ConfigError, IntegrityError
from .migrations import Migration
from .plan import plan_baseline, plan_repair, versioned_rows
from .typing import AdoptResult, BaselineResult, RepairResult

if TYPE_CHECKING:
    from .pg import Session
    from .settings import Settings
    from .typing import Ledger, Logger


class Takeover:
    """What `Migrator` does to adopt an existing database: baseline, repair, adopt."""

    settings: Settings
    log: Logger
    session: Session
    ledger: Ledger

    if TYPE_CHECKING:  # Migrator's

        def _locked(self) -> AbstractContextManager[None]: ...

    def baseline(self, migrations: list[Migration], *, version: int, allow_existing: bool) -> BaselineResult:
        """
        Record every versioned file up to `version` as applied without running it
        (`source = baseline`): adopting a database whose schema already exists.

        Raises:
            IntegrityError: the ledger already has rows (unless `allow_existing`:
                then only versions not yet recorded are added).
        """
        with self.session.guard(), self._locked():
            self.ledger.ensure()
            applied = self.ledger.read()
            if applied and not allow_existing:
                raise IntegrityError(
                    f"the ledger {self.ledger.name} already has {len(applied)} rows; baseline is for "
                    "adopting a database bootstrap has not migrated yet. Pass --allow-existing to record "
                    "only the versions up to the baseline that are not recorded yet",
                    rows=len(applied),
                )
            chosen = plan_baseline(migrations, applied, version)
            self.ledger.record_without_running([(m, "baseline", None) for m in chosen])
        for m in chosen:
            self.log.info("migration_baselined", migration=m.name, version=m.version)
        if not chosen:
            self.log.warning("baseline_nothing_recorded", version=version,
                             reason=f"no unrecorded file with a version up to {version} in {self.settings.sql_dir}")
        return BaselineResult(version, chosen)

    def repair(self, migrations: list[Migration], *, dry_run: bool) -> RepairResult:
        """
        Re-record the checksums (and names) of applied versioned files after a
        reviewed edit; change nothing else (missing files are listed, not
        touched; repeatables are re-applied by migrate, not repaired).
        """
        with self.session.guard(), self._locked():
            entries = plan_repair(migrations, self.ledger.read())
            result = RepairResult(dry_run, entries)
            changes = [(e.row.version, e.migration.checksum, e.migration.name)
                       for e in entries if e.migration is not None and e.row.version is not None]
            if changes and not dry_run:
                self.ledger.rewrite_checksums(changes)
        for entry in entries:
            row, migration = entry.row, entry.migration
            if migration is None:
                self.log.warning("repair_skipped_missing", version=row.version, migration=row.name)
                continue
            self.log.info("migration_repaired" if not dry_run else "migration_repair_planned",
                          version=row.version, migration=migration.name, old_checksum=row.checksum,
                          new_checksum=migration.checksum, old_name=row.name)
        return result

    def adopt(self, migrations: list[Migration], *, tool_name: str, table: tuple[str, str] | None,
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
        with self.session.guard():
            rows = self.ledger.read_foreign(tool, where)
            if rows is None:
                raise ConfigError(
                    f"no {tool.name} ledger {where[0]}.{where[1]} in this database; "
                    "pass --table schema.table if it lives elsewhere",
                    table=f"{where[0]}.{where[1]}",
                )
            found = match(entries(tool, rows), migrations, set(versioned_rows(self.ledger.snapshot().applied)))
            if found.matched and not dry_run:
                with self._locked():
                    self.ledger.ensure()
                    recorded = set(versioned_rows(self.ledger.read()))
                    todo = [(m, "adopted", e.applied_at) for m, e in found.matched if m.version not in recorded]
                    self.ledger.record_without_running(todo)
        for migration, entry in found.matched:
            self.log.info("migration_adopt_planned" if dry_run else "migration_adopted", tool=tool.name,
                          migration=migration.name, version=migration.version, source_entry=entry.label)
        for entry in found.unmatched:
            self.log.warning("adopt_unmatched", tool=tool.name, entry=entry.label, version=entry.version)
        return AdoptResult(tool, found, dry_run)
