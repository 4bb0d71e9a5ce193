"""
The shapes the layers agree on: ledger rows, what a read found, the seams
(Locker, Ledger, RecordQueue) and what each command returns.

Pure: no psycopg, no structlog at run time. The concrete PostgreSQL side lives
in `bootstrap.pg`; `bootstrap.runner` talks to it only through these shapes, so
a second locker (a lease table for transaction-mode poolers) or ledger can be
dropped in and held to the same contract tests.

Value types are NamedTuples (not dataclasses) because they are defined on every
container start: a NamedTuple class costs ~0.25 ms to create, a slotted
dataclass ~1.4 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from .migrations import Kind, Migration

if TYPE_CHECKING:
    from .adoption import Match, Tool
    from .errors import BootstrapError
    from .lint import Finding, Silenced

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


class Locker(Protocol):
    """
    Serialises runners (goose's SessionLocker). `AdvisoryLocker` now; a lease-table
    locker could follow for transaction-mode poolers, held to the same contract test.
    """

    def acquire(self, still_needed: Callable[[], bool] | None = None) -> bool:
        """Take the lock; False when `still_needed` said another runner did the work meanwhile."""
        ...

    def release(self) -> None:
        """Give the lock back (and wake the waiters)."""
        ...

    def holder(self) -> str:
        """Who holds the lock ("held by pid 42, ..."), or "" when nobody visible does."""
        ...

    def await_release(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken early by a holder releasing the lock."""
        ...


class RecordQueue(Protocol):
    """
    The one-trip fast path: the ledger rows of the files about to run, queued up
    front; each file's own query records its row with a constant SQL suffix.
    """

    sql: str
    remaining: int  # rows still queued

    def taken(self) -> None:
        """A file committed: its queued row was used."""
        ...

    def requeue(self) -> None:
        """A file was rolled back: the next attempt takes the same row again."""
        ...


class Ledger(Protocol):
    """goose's database.Store, for bootstrap's layout. Writes join the caller's open transaction."""

    name: str
    schema: str

    def snapshot(self, *, full: bool = False) -> Snapshot:
        """Whether the ledger exists, which schemas exist, the rows: one round trip, read-only."""
        ...

    def has_version(self, version: int) -> bool:
        """The cheap poll while waiting for the lock."""
        ...

    def needs_preparing(self, snap: Snapshot) -> bool:
        """Whether schemas or the ledger itself are missing."""
        ...

    def ensure(self, *, announce: bool = True) -> bool:
        """Create missing schemas and the ledger (logged unless not `announce`); True when the ledger existed."""
        ...

    def read(self) -> list[AppliedMigration]:
        """Every row, or none when the ledger does not exist yet."""
        ...

    def record(self, migration: Migration, duration_ms: int) -> None:
        """Write one applied file's row."""
        ...

    def forget(self, version: int | None) -> None:
        """A rolled-back version's row goes, and with it the repeatables' rows."""
        ...

    def queue(self, todo: Sequence[Migration]) -> RecordQueue | None:
        """Queue the rows of transactional files about to run; None when the session cannot."""
        ...

    def record_without_running(self, entries: Sequence[tuple[Migration, str, datetime | None]]) -> None:
        """Record versions as applied (baseline, adopt) in one transaction."""
        ...

    def rewrite_checksums(self, changes: Sequence[tuple[int, str, str]]) -> None:
        """Re-record (version, checksum, name) in one transaction (repair)."""
        ...

    def read_foreign(self, tool: Tool, table: tuple[str, str]) -> list[tuple[Any, ...]] | None:
        """Another tool's ledger rows, or None when that table does not exist."""
        ...


# -- what the commands return -------------------------------------------------------------


class MigrateResult(NamedTuple):
    """What `migrate` applied (file names, in order)."""

    applied: list[str]
    repeatables: list[str]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_applied": len(self.applied), "repeatables_applied": len(self.repeatables)}


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

    migrated: MigrateResult | None = None
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
    """What `repair` found, in version order; changes made unless `dry_run`."""

    dry_run: bool
    entries: list[RepairChange]

    @property
    def changes(self) -> list[RepairChange]:
        """The versions whose checksum or name is (or would be) re-recorded."""
        return [e for e in self.entries if e.migration is not None]

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_repaired": 0 if self.dry_run else len(self.changes)}


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
    """

    files: list[Migration]
    findings: list[Finding]
    silenced: list[Silenced]
    scope: str = "pending"
    skipped: str | None = None
    server_version: int | None = None

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
        """transactional, no-transaction, repeatable or repeatable, no-transaction."""
        if self.migration.kind is Kind.REPEATABLE:
            return "repeatable" if self.migration.transactional else "repeatable, no-transaction"
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

    @property
    def would_run(self) -> bool:
        """Whether migrate would apply anything."""
        return bool(self.files)

    def as_log(self) -> dict[str, Any]:
        """The `bootstrap_completed` fields."""
        return {"migrations_planned": len(self.files), **(self.lint.as_log() if self.lint else {})}


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
