"""
The planner: compare the files with the ledger and decide what to do.

Pure: takes values, returns values. `evaluate` never raises, so `status` can
show every state; `build_plan` raises `IntegrityError` when the ledger and the
files disagree in a way `migrate` must not paper over. `plan_rollback`,
`plan_baseline` and `plan_repair` choose what those commands touch.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from .errors import ConfigError, IntegrityError, UsageError
from .migrations import Kind, Migration, versioned_files
from .typing import AppliedMigration, RepairChange

__all__ = ["AppliedMigration", "Entry", "Plan", "State", "build_plan", "check_sql_dir", "check_target", "evaluate",
           "plan_baseline", "plan_repair", "plan_retired", "plan_rollback", "up_to"]


class State(enum.StrEnum):
    """A migration's state, as `status` shows it."""

    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    MISSING = "missing"
    FUTURE = "future"  # applied by a newer release: newer than every local file (or a repeatable it wrote)


class Entry(NamedTuple):
    """One line of `status`: a file, a ledger row, or both."""

    kind: Kind
    version: int | None
    name: str
    state: State
    migration: Migration | None
    applied: AppliedMigration | None
    detail: str = ""


class Plan(NamedTuple):
    """
    What `migrate` will do, and what `status` shows.

    Attributes:
        entries: every migration known to the files or the ledger, in order.
        pending: versioned migrations to apply, ascending.
        repeatables: repeatable migrations to (re)apply, by name.
        problems: integrity problems, each naming its file.
    """

    entries: tuple[Entry, ...]
    pending: tuple[Migration, ...]
    repeatables: tuple[Migration, ...]
    problems: tuple[str, ...]

    @property
    def up_to_date(self) -> bool:
        """True when nothing is pending, changed or missing (future entries are fine, unless refused)."""
        return not self.problems and all(e.state in (State.APPLIED, State.FUTURE) for e in self.entries)

    @property
    def future(self) -> tuple[Entry, ...]:
        """What a newer release applied: versions newer than every local file, repeatables it wrote."""
        return tuple(e for e in self.entries if e.state is State.FUTURE)

    def counts(self) -> dict[str, int]:
        """How many entries are in each state."""
        out = {state.value: 0 for state in State}
        for entry in self.entries:
            out[entry.state.value] += 1
        return out

    def as_log(self) -> dict[str, int]:
        """The `bootstrap_completed` fields of `status`: the counts."""
        return self.counts()


def evaluate(
    available: list[Migration],
    applied: list[AppliedMigration],
    *,
    out_of_order: bool = False,
    refuse_future: bool = False,
) -> Plan:
    """
    Compare files with ledger rows.

    An applied version newer than every local versioned file is `future`: a newer
    release applied it (this is an older image, in a rolling deploy or after a
    rollback), so it is left alone; so is a repeatable that such a release wrote
    (its row was written after a version this release does not have). A
    version missing below the newest local file is still `missing`.

    Args:
        available: discovered migrations (versioned ascending, then repeatables).
        applied: ledger rows.
        out_of_order: allow pending versions older than the newest applied one.
        refuse_future: count future versions as problems (`--refuse-future`).

    Returns:
        The plan; `problems` lists what `build_plan` would refuse.
    """
    files_by_version = {m.version: m for m in available if m.kind is Kind.VERSIONED}
    files_by_name = {m.name: m for m in available if m.kind is Kind.REPEATABLE}
    rows_by_version = {r.version: r for r in applied if r.kind is Kind.VERSIONED}
    rows_by_name = {r.name: r for r in applied if r.kind is Kind.REPEATABLE}
    newest_applied = max((v for v in rows_by_version if v is not None), default=0)
    newest_local = max((v for v in files_by_version if v is not None), default=None)

    def newer(version: int | None) -> bool:
        return version is not None and (newest_local is None or version > newest_local)

    entries: list[Entry] = []
    pending: list[Migration] = []
    repeatables: list[Migration] = []
    problems: list[str] = []

    for version in sorted(v for v in files_by_version.keys() | rows_by_version.keys() if v is not None):
        migration = files_by_version.get(version)
        row = rows_by_version.get(version)
        if migration is None and newer(version):
            assert row is not None
            if refuse_future:
                problems.append(
                    f"{row.name} (version {version}) was applied by a newer release: it is newer than every "
                    "file in the sql directory (refused by --refuse-future)"
                )
            entries.append(Entry(Kind.VERSIONED, version, row.name, State.FUTURE, None, row,
                                 "applied by a newer release; left as it is"))
        elif migration is None:
            assert row is not None
            problems.append(
                f"{row.name} (version {version}) was applied but its file is missing from the sql directory"
            )
            entries.append(Entry(Kind.VERSIONED, version, row.name, State.MISSING, None, row,
                                 "applied, file missing"))
        elif row is None:
            detail = ""
            if version < newest_applied:
                detail = f"out of order: older than applied version {newest_applied}"
                if not out_of_order:
                    problems.append(
                        f"{migration.name} (version {version}) is pending but version "
                        f"{newest_applied} is already applied; give it a newer version, "
                        "or pass --out-of-order"
                    )
            pending.append(migration)
            entries.append(Entry(Kind.VERSIONED, version, migration.name, State.PENDING,
                                 migration, None, detail))
        elif not migration.matches(row.checksum):
            problems.append(
                f"{migration.name} (version {version}) changed after it was applied "
                f"(ledger checksum {row.checksum[:12]}, file {migration.checksum[:12]}); "
                "restore the file: a change to the schema belongs in a new migration file. Only when the edit "
                "changes nothing in the database (comments, formatting) does `bootstrap repair` record the new "
                "checksum"
            )
            entries.append(Entry(Kind.VERSIONED, version, migration.name, State.CHANGED,
                                 migration, row, "checksum differs from the ledger"))
        else:
            entries.append(Entry(Kind.VERSIONED, version, migration.name, State.APPLIED,
                                 migration, row))

    for name in sorted(files_by_name.keys() | rows_by_name.keys()):
        migration = files_by_name.get(name)
        row = rows_by_name.get(name)
        if row is not None and newer(row.after_version) and (migration is None or row.checksum != migration.checksum):
            # Written by a newer release (after a version this one lacks): re-applying this
            # release's older text would undo it.
            entries.append(Entry(Kind.REPEATABLE, None, name, State.FUTURE, migration, row,
                                 f"written by a newer release (after version {row.after_version}); left as it is"))
        elif migration is None:
            assert row is not None
            problems.append(f"{name} (repeatable) was applied but its file is missing; restore it, or retire it "
                            "with `bootstrap repair` (its ledger row goes; what it created stays)")
            entries.append(Entry(Kind.REPEATABLE, None, name, State.MISSING, None, row,
                                 "applied, file missing"))
        elif row is None or row.checksum != migration.checksum:
            repeatables.append(migration)
            detail = "" if row is None else "changed since last applied; will be re-applied"
            entries.append(Entry(Kind.REPEATABLE, None, name, State.PENDING, migration, row,
                                 detail))
        else:
            entries.append(Entry(Kind.REPEATABLE, None, name, State.APPLIED, migration, row))

    return Plan(
        entries=tuple(entries),
        pending=tuple(pending),
        repeatables=tuple(repeatables),
        problems=tuple(problems),
    )


def build_plan(
    available: list[Migration],
    applied: list[AppliedMigration],
    *,
    out_of_order: bool = False,
    refuse_future: bool = False,
) -> Plan:
    """
    The plan `migrate` follows.

    Raises:
        IntegrityError: an applied file changed or is missing, a pending
            version is older than the newest applied one (unless `out_of_order`),
            or a version is newer than every local file and `refuse_future` is set.
    """
    plan = evaluate(available, applied, out_of_order=out_of_order, refuse_future=refuse_future)
    if plan.problems:
        count = len(plan.problems)
        raise IntegrityError(
            f"ledger integrity: {count} problem{'s' if count > 1 else ''}, nothing was applied: "
            + "; ".join(plan.problems),
            problems=list(plan.problems),
        )
    return plan


def check_sql_dir(migrations: list[Migration], applied: list[AppliedMigration], sql_dir: object, ledger: str) -> None:
    """
    No versioned file at all while the ledger holds applied versions: the wrong
    directory (or an empty one), not a database every version of which is future.

    Raises:
        ConfigError: naming the directory (exit 3).
    """
    recorded = sum(r.kind is Kind.VERSIONED for r in applied)
    if recorded and not any(m.kind is Kind.VERSIONED for m in migrations):
        raise ConfigError(
            f"the migrations directory {sql_dir} holds no versioned file, but the ledger {ledger} records {recorded} "
            "applied versions: is BOOTSTRAP_SQL_DIR (--sql-dir) the right directory, and were the files copied into "
            "the image?", variable="BOOTSTRAP_SQL_DIR")


def check_target(migrations: list[Migration], to: int) -> None:
    """
    `migrate --to VERSION`: VERSION must be a local versioned file.

    Raises:
        UsageError: it is not (exit 2), before the database is touched.
    """
    files = versioned_files(migrations)
    if to not in files:
        below = max((v for v in files if v < to), default=None)
        near = f"; the nearest below is {files[below].name}" if below is not None else ""
        raise UsageError(f"--to {to}: no versioned file with version {to} in the sql directory{near}",
                         to_version=to)


def up_to(plan: Plan, to: int | None) -> Plan:
    """
    The plan of `migrate --to VERSION`: pending versions above VERSION stay pending
    (the repeatables run after the rest, as usual). `to` None: the plan as it is.
    """
    if to is None:
        return plan
    return plan._replace(pending=tuple(m for m in plan.pending if m.version is not None and m.version <= to))


def versioned_rows(applied: list[AppliedMigration]) -> dict[int, AppliedMigration]:
    """The versioned ledger rows by version."""
    return {r.version: r for r in applied if r.kind is Kind.VERSIONED and r.version is not None}


def plan_rollback(
    migrations: list[Migration], applied: list[AppliedMigration], *, steps: int | None, to: int | None
) -> list[Migration]:
    """
    Choose the versions to undo, newest first, and check each has its partner.

    Args:
        migrations: discovered files.
        applied: ledger rows.
        steps: undo this many of the newest applied versions.
        to: undo every applied version above this one (0: everything).

    Returns:
        The migrations to undo (each with its `.down.sql`), newest version first.

    Raises:
        UsageError: more steps than applied versions.
        IntegrityError: an applied file in range changed or is missing.
        ConfigError: a partner in range is missing.
    """
    versions = sorted(versioned_rows(applied).items(), reverse=True)  # (version, row), newest first
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
        elif not migration.matches(row.checksum):
            problems.append(f"{migration.name} (version {version}) changed after it was applied")
        elif migration.down_path is None:
            missing_partners.append(f"{migration.name} has no {migration.path.stem}.down.sql")
    if problems:
        raise IntegrityError("refusing to roll back, nothing was changed: " + "; ".join(problems),
                             problems=problems)
    if missing_partners:
        raise ConfigError("refusing to roll back, nothing was changed: " + "; ".join(missing_partners),
                          missing=missing_partners)
    return [files[version] for version, _row in chosen]


def plan_baseline(migrations: list[Migration], applied: list[AppliedMigration], version: int) -> list[Migration]:
    """The versioned files up to `version` that the ledger does not hold yet, in order."""
    recorded = versioned_rows(applied)
    return [m for m in migrations
            if m.kind is Kind.VERSIONED and m.version is not None and m.version <= version
            and m.version not in recorded]


def plan_repair(migrations: list[Migration], applied: list[AppliedMigration]) -> list[RepairChange]:
    """
    The applied versions whose file now differs (checksum or name) or is gone,
    in version order; matching ones are left out.
    """
    files = versioned_files(migrations)
    out: list[RepairChange] = []
    for version, row in sorted(versioned_rows(applied).items()):
        migration = files.get(version)
        if migration is not None and migration.matches(row.checksum) and migration.name == row.name:
            continue
        out.append(RepairChange(row=row, migration=migration))
    return out


def plan_retired(migrations: list[Migration], applied: list[AppliedMigration]) -> list[AppliedMigration]:
    """The rows of repeatables whose file was deleted (not those a newer release wrote): `repair` retires them."""
    return [e.applied for e in evaluate(migrations, applied, out_of_order=True).entries
            if e.kind is Kind.REPEATABLE and e.state is State.MISSING and e.applied is not None]
