"""
Exit codes and the error tree.

Every failure bootstrap reports on purpose is a `BootstrapError` subclass that
declares its `exit_code`; only `command.run_command` turns one into a process exit.
This module imports nothing from the package, to avoid import loops.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class ExitCode(enum.IntEnum):
    """The process exit codes, as CONTRACT.md and the README list them."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    CONFIG = 3
    UNAVAILABLE = 4
    MIGRATION_FAILED = 5
    INTEGRITY = 6
    LOCK_TIMEOUT = 7
    NOT_UP_TO_DATE = 8
    VERIFY_FAILED = 9
    MIGRATIONS_PENDING = 10
    LINT_FINDINGS = 11
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127
    # 128+N: stopped by signal N before exec (computed, see SignalReceived).


EXIT_CODE_MEANINGS: dict[int, str] = {
    ExitCode.OK: "success",
    ExitCode.INTERNAL: "unexpected internal error",
    ExitCode.USAGE: "usage error",
    ExitCode.CONFIG: (
        "configuration error: bad URL, missing directory, bad file name, "
        "duplicate version, authentication refused"
    ),
    ExitCode.UNAVAILABLE: "database unavailable when the wait timeout ran out",
    ExitCode.MIGRATION_FAILED: (
        "a migration failed; nothing of that file was kept (a `no-transaction` file keeps the statements before "
        "the failing one, and says so)"
    ),
    ExitCode.INTEGRITY: (
        "ledger integrity: an applied file changed or is missing, or an out-of-order version"
    ),
    ExitCode.LOCK_TIMEOUT: "another runner held the lock past the lock timeout",
    ExitCode.NOT_UP_TO_DATE: "`status --exit-code`: not up to date",
    ExitCode.VERIFY_FAILED: "a verify script failed",
    ExitCode.MIGRATIONS_PENDING: "`wait-migrated` / `run --wait-migrated`: migrations not applied before the timeout",
    ExitCode.LINT_FINDINGS: "lint findings remain: `lint`, or `migrate --lint error` refusing before anything changed",
    ExitCode.NOT_EXECUTABLE: "`run`: the command is not executable",
    ExitCode.NOT_FOUND: "`run`: the command is not found",
}


class BootstrapError(Exception):
    """
    Base of every error bootstrap reports deliberately.

    Args:
        message: one sentence a user can act on; never a secret.
        **fields: structured context logged with the `bootstrap_failed` event
            (file, line, variable, ...).
    """

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL
    event: ClassVar[str] = "bootstrap_failed"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


class UsageError(BootstrapError):
    """Raised when the command line itself is wrong (missing `run --` command, ...)."""

    exit_code = ExitCode.USAGE


class ConfigError(BootstrapError):
    """
    Raised for a bad setting or bad migration files: a bad URL or variable, a
    missing directory, a bad file name, a duplicate version, an unknown
    directive, or authentication refused. Always raised before anything changes.
    """

    exit_code = ExitCode.CONFIG


class TenantMissingError(ConfigError):
    """A fleet's tenant schema does not exist (dropped during the run): that tenant is reported, not created."""


class DatabaseUnavailableError(BootstrapError):
    """
    Raised when the database did not answer before `--timeout` ran out
    (fields: attempts, waited_ms, error_type), or when the connection was lost
    between files, where nothing is half-applied.
    """

    exit_code = ExitCode.UNAVAILABLE


class MigrationFailedError(BootstrapError):
    """
    Raised when a migration or rollback file fails (fields: file, line,
    column, sqlstate). A transactional file was rolled back whole; a
    `no-transaction` file kept the statements before the failing one, and the
    message says which ran, which failed and which did not run.
    """

    exit_code = ExitCode.MIGRATION_FAILED


class IntegrityError(BootstrapError):
    """
    Raised when the ledger and the files disagree: an applied file changed or
    is missing, or a pending version is older than the newest applied one.
    Every problem is listed (`problems`); nothing was applied.
    """

    exit_code = ExitCode.INTEGRITY


class LockTimeoutError(BootstrapError):
    """Raised when another runner held the migration lock past `--lock-timeout`; names the holder."""

    exit_code = ExitCode.LOCK_TIMEOUT


class NotUpToDateError(BootstrapError):
    """Raised by `status --exit-code` when anything is pending, changed or missing (the counts as fields)."""

    exit_code = ExitCode.NOT_UP_TO_DATE
    event = "status_not_up_to_date"


class VerifyFailedError(BootstrapError):
    """
    Raised when one or more verify scripts raised an error; each failing
    script is named with the server's message (`failures`).
    """

    exit_code = ExitCode.VERIFY_FAILED


class MigrationsPendingError(BootstrapError):
    """
    Raised by `wait-migrated` and `run --wait-migrated` when files were still
    pending at `--timeout`; names them (`pending`).
    """

    exit_code = ExitCode.MIGRATIONS_PENDING


class LintFindingsError(BootstrapError):
    """
    Raised by `lint` when findings remain, and by `migrate`/`run --lint error`
    before the lock when the files about to run have findings (counts as fields).
    """

    exit_code = ExitCode.LINT_FINDINGS


class CommandNotFoundError(BootstrapError):
    """Raised by `run` when the command to exec does not exist (exit 127, as shells do)."""

    exit_code = ExitCode.NOT_FOUND


class CommandNotExecutableError(BootstrapError):
    """Raised by `run` when the command exists but cannot be executed: a directory, no x bit (exit 126)."""

    exit_code = ExitCode.NOT_EXECUTABLE


class SignalReceived(KeyboardInterrupt):
    """
    Raised in the main thread when SIGTERM, SIGINT, SIGHUP or SIGQUIT arrives
    before `exec`.

    It subclasses KeyboardInterrupt on purpose: psycopg cancels the running
    query when a KeyboardInterrupt interrupts it, so the server stops work at
    once and rolls back the open transaction.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.fields: dict[str, Any] = {}  # what was interrupted, and what became of it (the file, its outcome)

    @property
    def exit_code(self) -> int:
        """128+N, as shells report a process stopped by signal N."""
        return 128 + self.signum
