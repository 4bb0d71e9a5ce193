"""
The planner: compare the files with the ledger and decide what to do.

Pure: takes values, returns values. `evaluate` never raises, so `status` can
show every state; `build_plan` raises `IntegrityError` when the ledger and the
files disagree in a way `migrate` must not paper over.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import NamedTuple

from .errors import IntegrityError
from .migrations import Kind, Migration


class State(enum.StrEnum):
    """A migration's state, as `status` shows it."""

    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    MISSING = "missing"


class AppliedMigration(NamedTuple):
    """One ledger row."""

    version: int | None
    name: str
    kind: Kind
    checksum: str
    applied_at: datetime | None = None
    source: str = "applied"

    @property
    def key(self) -> str:
        """Identity: the version for versioned rows, the name for repeatables."""
        return str(self.version) if self.version is not None else self.name


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
        """True when nothing is pending, changed or missing."""
        return all(e.state is State.APPLIED for e in self.entries)

    def counts(self) -> dict[str, int]:
        """How many entries are in each state."""
        out = {state.value: 0 for state in State}
        for entry in self.entries:
            out[entry.state.value] += 1
        return out


def evaluate(
    available: list[Migration],
    applied: list[AppliedMigration],
    *,
    out_of_order: bool = False,
) -> Plan:
    """
    Compare files with ledger rows.

    Args:
        available: discovered migrations (versioned ascending, then repeatables).
        applied: ledger rows.
        out_of_order: allow pending versions older than the newest applied one.

    Returns:
        The plan; `problems` lists what `build_plan` would refuse.
    """
    files_by_version = {m.version: m for m in available if m.kind is Kind.VERSIONED}
    files_by_name = {m.name: m for m in available if m.kind is Kind.REPEATABLE}
    rows_by_version = {r.version: r for r in applied if r.kind is Kind.VERSIONED}
    rows_by_name = {r.name: r for r in applied if r.kind is Kind.REPEATABLE}
    newest_applied = max((v for v in rows_by_version if v is not None), default=0)

    entries: list[Entry] = []
    pending: list[Migration] = []
    repeatables: list[Migration] = []
    problems: list[str] = []

    for version in sorted(v for v in files_by_version.keys() | rows_by_version.keys() if v is not None):
        migration = files_by_version.get(version)
        row = rows_by_version.get(version)
        if migration is None:
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
        elif row.checksum != migration.checksum:
            problems.append(
                f"{migration.name} (version {version}) changed after it was applied "
                f"(ledger checksum {row.checksum[:12]}, file {migration.checksum[:12]}); "
                "restore the file, or run `bootstrap repair` after reviewing the edit"
            )
            entries.append(Entry(Kind.VERSIONED, version, migration.name, State.CHANGED,
                                 migration, row, "checksum differs from the ledger"))
        else:
            entries.append(Entry(Kind.VERSIONED, version, migration.name, State.APPLIED,
                                 migration, row))

    for name in sorted(files_by_name.keys() | rows_by_name.keys()):
        migration = files_by_name.get(name)
        row = rows_by_name.get(name)
        if migration is None:
            assert row is not None
            problems.append(f"{name} (repeatable) was applied but its file is missing")
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
) -> Plan:
    """
    The plan `migrate` follows.

    Raises:
        IntegrityError: an applied file changed or is missing, or a pending
            version is older than the newest applied one (unless `out_of_order`).
    """
    plan = evaluate(available, applied, out_of_order=out_of_order)
    if plan.problems:
        count = len(plan.problems)
        raise IntegrityError(
            f"ledger integrity: {count} problem{'s' if count > 1 else ''}, nothing was applied: "
            + "; ".join(plan.problems),
            problems=list(plan.problems),
        )
    return plan
