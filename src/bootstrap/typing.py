"""
The shapes the layers agree on: ledger rows, what a read found, lint findings,
and what each command returns (each with `as_log()`, the fields of the run's
`bootstrap_completed` line).

Pure: no psycopg, no structlog at run time.

Value types are NamedTuples (not dataclasses) because they are defined on every
container start: a NamedTuple class costs ~0.25 ms to create, a slotted
dataclass ~1.4 ms.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from .migrations import Kind, Migration

if TYPE_CHECKING:
    from .adoption import Match, Tool
    from .errors import BootstrapError

# A structlog bound logger (kept as Any: structlog's own protocol would load structlog).
Logger = Any


class AppliedMigration(NamedTuple):
    """
    One ledger row.

    Attributes:
        after_version: for a repeatable, the newest version applied before its row
            was written: a release that lacks that version is older than the one
            that wrote it, and leaves it alone. None for versioned rows.
    """

    version: int | None
    name: str
    kind: Kind
    checksum: str
    applied_at: datetime | None = None
    source: str = "applied"
    after_version: int | None = None

    @property
    def key(self) -> str:
        """Identity: the version for versioned rows, the name for repeatables."""
        return str(self.version) if self.version is not None else self.name


class Snapshot(NamedTuple):
    """What a read-only look at the database found."""

    ledger_exists: bool
    schemas: set[str]
    applied: list[AppliedMigration]


class Finding(NamedTuple):
    """
    One lint finding.

    Attributes:
        file: the file's path, as discovery found it.
        name: the file's name (as the ledger records it).
        line: 1-based line of the statement squawk points at.
        column: 1-based column.
        rule: squawk's rule name.
        message: what is wrong.
        help: how to fix it (None when squawk gives no help).
        level: `warning` or `error` (squawk's level; both count as findings).
    """

    file: str
    name: str
    line: int
    column: int
    rule: str
    message: str
    help: str | None
    level: str

    def where(self) -> str:
        """`file:line:column`, as errors name places."""
        return f"{self.file}:{self.line}:{self.column}"


class Silenced(NamedTuple):
    """A file's findings silenced by its `-- bootstrap:lint-ignore` directive."""

    name: str
    rules: tuple[str, ...]
    findings: int


# -- what the commands return -------------------------------------------------------------


class MigrateResult(NamedTuple):
    """What `migrate` applied (file names, in order)."""

    applied: list[str]
    repeatables: list[str]
    after: list[str]  # the after-migrate scripts that ran (sql/after/)

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_applied": len(self.applied), "repeatables_applied": len(self.repeatables),
                **({"after_scripts": len(self.after)} if self.after else {})}


class VerifyResult(NamedTuple):
    """How many verify scripts ran (all passed: a failure raises)."""

    scripts: int

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"verify_scripts": self.scripts}


class WaitResult(NamedTuple):
    """How long `wait-migrated` waited for another runner to apply the files."""

    waited_ms: int

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_waited_ms": self.waited_ms}


class RunResult(NamedTuple):
    """What `run` did before handing over to the app."""

    migrated: MigrateResult | FleetMigrateResult | None = None
    verified: VerifyResult | None = None
    waited: WaitResult | None = None

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields of the phases that ran."""
        out: dict[str, Any] = {}
        for part in (self.migrated, self.waited, self.verified):
            if part is not None:
                out.update(part.as_log())
        return out


class RollbackResult(NamedTuple):
    """The down files that ran, newest first, with their durations."""

    rolled_back: list[tuple[Migration, int]]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_rolled_back": len(self.rolled_back)}


class BaselineResult(NamedTuple):
    """The versions `baseline` recorded without running them."""

    version: int
    recorded: list[Migration]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_baselined": len(self.recorded)}


class RepairChange(NamedTuple):
    """One applied version `repair` looked at: its file was edited or renamed (migration), or is gone (None)."""

    row: AppliedMigration
    migration: Migration | None


class RepairResult(NamedTuple):
    """What `repair` found, in version order, and the deleted repeatables it retires; changes made unless `dry_run`."""

    dry_run: bool
    entries: list[RepairChange]
    retired: list[AppliedMigration] = []  # noqa: RUF012 - a NamedTuple default, never mutated

    @property
    def changes(self) -> list[RepairChange]:
        """The versions whose checksum or name is (or would be) re-recorded."""
        return [e for e in self.entries if e.migration is not None]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_repaired": 0 if self.dry_run else len(self.changes),
                "repeatables_retired": 0 if self.dry_run else len(self.retired)}


class AdoptResult(NamedTuple):
    """What `adopt` matched in another tool's ledger, and what it recorded."""

    tool: Tool
    match: Match
    dry_run: bool

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {
            "adopted": 0 if self.dry_run else len(self.match.matched),
            "matched": len(self.match.matched),
            "unmatched": len(self.match.unmatched),
            "pending": len(self.match.pending),
        }


# -- before a deploy: lint, dry run, rehearsal ---------------------------------------------


class LintResult(NamedTuple):
    """
    What linting found.

    Attributes:
        files: the files linted, in the order they would run.
        findings: what remains after each file's lint-ignore.
        silenced: what each file's lint-ignore silenced.
        scope: `pending`, `all`, or `all (no database)`.
        skipped: why nothing was linted (squawk not installed, squawk failed); None when it ran.
        server_version: the server's version squawk was told (None: unknown).
        unknown: lint-ignore rule names squawk does not know ("file: rule (did you mean ...?)").
    """

    files: list[Migration]
    findings: list[Finding]
    silenced: list[Silenced]
    scope: str = "pending"
    skipped: str | None = None
    server_version: int | None = None
    unknown: list[str] = []  # noqa: RUF012 - a NamedTuple default, never mutated

    def of(self, migration: Migration) -> list[Finding]:
        """One file's findings."""
        return [f for f in self.findings if f.name == migration.name]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"lint_files": len(self.files), "lint_findings": len(self.findings),
                **({"lint_skipped": self.skipped} if self.skipped else {})}


class PlannedFile(NamedTuple):
    """One file `migrate --dry-run` says would run: its statement count (from the real parser)."""

    migration: Migration
    statements: int

    @property
    def kind(self) -> str:
        """transactional, no-transaction, repeatable or after (each `, no-transaction` when it says so)."""
        if self.migration.kind in (Kind.REPEATABLE, Kind.AFTER):
            kind = self.migration.kind.value
            return kind if self.migration.transactional else f"{kind}, no-transaction"
        return "transactional" if self.migration.transactional else "no-transaction"


class DryRunResult(NamedTuple):
    """
    `migrate --dry-run`: the files that would run, in order, and what would be created.

    Attributes:
        files: each file that would run.
        creates: schemas and the ledger that migrate would create first.
        lint: what linting them found (None with --lint off or nothing to run).
        left_pending: versions `--to` leaves pending.
    """

    files: list[PlannedFile]
    creates: list[str]
    lint: LintResult | None
    left_pending: list[Migration]
    tenants_behind: list[str] | None = None  # a fleet: the tenants whose files migrate would apply

    @property
    def migrations(self) -> list[PlannedFile]:
        """The migrations that would run (after-migrate scripts run on every migrate that takes the lock)."""
        return [p for p in self.files if p.migration.kind is not Kind.AFTER]

    @property
    def would_run(self) -> bool:
        """Whether migrate would apply a migration (to the database, or to a tenant)."""
        return bool(self.migrations or self.tenants_behind)

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_planned": len(self.migrations), **(self.lint.as_log() if self.lint else {})}


class RehearsedFile(NamedTuple):
    """
    One file of a rehearsal.

    Attributes:
        outcome: `passed`, `failed` or `not rehearsed`.
        duration_ms: how long it ran (None when it did not run).
        detail: why it was not rehearsed, or its error.
    """

    migration: Migration
    outcome: str
    duration_ms: int | None = None
    detail: str = ""


class RehearsalResult(NamedTuple):
    """
    `migrate --rehearse`: each pending file's outcome, in order; always rolled back.

    Attributes:
        files: every file migrate would run.
        failure: the error of the file that failed (raised after printing), or None.
        lint: what linting them found (None with --lint off or nothing to run).
    """

    files: list[RehearsedFile]
    failure: BootstrapError | None
    lint: LintResult | None

    def count(self, outcome: str) -> int:
        """How many files had this outcome."""
        return sum(1 for f in self.files if f.outcome == outcome)

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_rehearsed": self.count("passed"), "rehearsal_failed": self.count("failed"),
                "not_rehearsed": self.count("not rehearsed"), **(self.lint.as_log() if self.lint else {})}


class TenantResult(NamedTuple):
    """
    One tenant of a fleet run.

    Attributes:
        tenant: its schema (or database) name.
        outcome: `applied` (files ran), `current` (nothing to do, or another runner did it), `failed`,
            or `missing` (no such schema: dropped, or listed without existing; never created).
        applied: the files applied to it, in order.
        error: what failed (or why it is missing).
        duration_ms: the time spent on it.
    """

    tenant: str
    outcome: str
    applied: tuple[str, ...] = ()
    error: str | None = None
    duration_ms: int = 0


class FleetResult(NamedTuple):
    """A fleet run: each tenant's outcome, in the tenants query's order."""

    tenants: list[TenantResult]
    duration_ms: int

    def by(self, outcome: str) -> list[TenantResult]:
        """The tenants with that outcome."""
        return [t for t in self.tenants if t.outcome == outcome]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` (or `bootstrap_failed`) fields."""
        return {"tenants": len(self.tenants), **{f"tenants_{o}": len(self.by(o))
                                                for o in ("applied", "current", "failed", "missing")}}


class FleetStatus(NamedTuple):
    """`status` over a fleet: each tenant's counts by state, in the tenants query's order."""

    tenants: dict[str, dict[str, int]]

    @property
    def behind(self) -> list[str]:
        """The tenants with something pending, changed or missing (not those missing themselves: `absent`)."""
        return [name for name, counts in self.tenants.items()
                if any(counts.get(s) for s in ("pending", "changed", "missing"))]

    @property
    def absent(self) -> list[str]:
        """The tenants the query lists whose schema (or database) does not exist."""
        return [name for name, counts in self.tenants.items() if counts.get("absent")]


class FleetMigrateResult(NamedTuple):
    """`migrate` (or `run`) with a fleet: the shared files, then the tenants."""

    shared: MigrateResult | None
    fleet: FleetResult

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {**(self.shared.as_log() if self.shared is not None else {}), **self.fleet.as_log()}
