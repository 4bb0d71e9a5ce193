"""
What a failed file's error says: where (file, line, column), what (the server's
message, detail, hint), and what was kept.

Pure builders: each takes the file and the driver's error (anything with
`sqlstate` and a `diag` of the server's fields) and returns the
`BootstrapError` to raise, so every message is unit-testable without a server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

from ..concurrently import Build
from ..errors import BootstrapError, IntegrityError, MigrationFailedError
from ..migrations import ParsedMigration
from ..sqlsplit import Script, Statement, line_col

NOTHING_KEPT = "the file was rolled back; nothing of it was kept"


class ServerError(Protocol):
    """What the builders read of a driver error (psycopg.Error has it)."""

    @property
    def sqlstate(self) -> str | None:
        """The SQLSTATE code."""
        ...

    @property
    def diag(self) -> Any:
        """The server's fields: message_primary, message_detail, statement_position..."""
        ...


class Leftover(NamedTuple):
    """An INVALID index a failed concurrent build left: dropped (why None), or kept because the drop failed."""

    name: str
    why: str | None


def kept_phrase(script: Script, kept: int, leftovers: Sequence[Leftover] = (),
                block: tuple[int, int] | None = None, failed: int | None = None) -> str:
    """
    What a `no-transaction` file kept when statement `kept + 1` failed (0: none
    ran), including the INVALID indexes its failed concurrent build left; or, when
    statement `failed` of a `block` the file opened itself (BEGIN ... COMMIT, index
    range) failed, that the block was rolled back whole.
    """
    if block is not None and failed is not None:
        return _block_phrase(script, block, failed)
    code = script.code_statements
    total = len(code)
    remaining = [left for left in leftovers if left.why is not None]
    dropped = "".join(f"; the INVALID index {left.name} its failed build left was dropped"
                      for left in leftovers if left.why is None)
    still = "".join(
        f"; its failed build left the INVALID index {left.name}, which could not be dropped ({left.why}): "
        f"drop it with DROP INDEX CONCURRENTLY {left.name}" for left in remaining)
    if kept == 0 and not remaining:
        return f"no statement of its {total} ran; nothing was kept and the ledger was not changed{dropped}"
    if kept == 0:
        return f"no statement of its {total} completed and the ledger was not changed{dropped}{still}"
    first_line = line_col(script.text, code[0].code_start)[0]
    last_line = line_col(script.text, code[kept - 1].end - 1)[0]
    return (
        f"statements 1-{kept} of {total} (lines {first_line}-{last_line}) ran and were kept, "
        f"statement {kept + 1} failed, {total - kept - 1} did not run; the ledger was not changed{dropped}{still}. "
        "Make it safe to re-run (IF NOT EXISTS), fix it, and run migrate again"
    )


def _block_phrase(script: Script, block: tuple[int, int], failed: int) -> str:
    code = script.code_statements
    first, last = block
    kept = (f"statements 1-{first} ran and were kept; " if first else "no statement before it ran; ")
    begin_line = line_col(script.text, code[first].code_start)[0]
    end_line = line_col(script.text, code[last].end - 1)[0]
    return (f"{kept}the transaction the file opened (statements {first + 1}-{last + 1}, lines {begin_line}-{end_line}) "
            f"failed at statement {failed + 1} and was rolled back whole, {len(code) - last - 1} after it did not "
            "run; the ledger was not changed. Fix it and run migrate again: the file runs from the top")


def stale_index(parsed: ParsedMigration, statement: Statement, kept: int, index: str, why: str) -> BootstrapError:
    """An INVALID index by the name this file builds (an earlier run's) could not be dropped before building."""
    path = parsed.migration.path
    line = line_col(parsed.script.text, parsed.written_offset(statement.code_start))[0]
    return MigrationFailedError(
        f"{path}:{line}: the index {index} is INVALID, left by an earlier failed build of this file, and could not "
        f"be dropped ({why}); statement {kept + 1} did not run. Drop it (DROP INDEX CONCURRENTLY {index}) and run "
        f"migrate again; {kept_phrase(parsed.script, kept) if kept else 'the ledger was not changed'}",
        file=str(path),
        line=line,
        index=index,
    )


def invalid_index(parsed: ParsedMigration, statement: Statement, number: int, indexes: Sequence[str]) -> BootstrapError:
    """A concurrent build finished, but an index it names is not valid: the file is not recorded."""
    path = parsed.migration.path
    line = line_col(parsed.script.text, parsed.written_offset(statement.code_start))[0]
    names = ", ".join(indexes)
    first = indexes[0]
    return MigrationFailedError(
        f"{path}:{line}: after statement {number} the index {names} {'is' if len(indexes) == 1 else 'are'} "
        "INVALID (a concurrent build of it failed): queries never use it and a unique one enforces nothing, so "
        f"the file was not recorded; statements 1-{number} ran and were kept. Rebuild it (REINDEX INDEX "
        f"CONCURRENTLY {first}) or drop it (DROP INDEX CONCURRENTLY {first}), then run migrate again",
        file=str(path),
        line=line,
        index=names,
    )


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _about(parsed: ParsedMigration, text: str, **fields: Any) -> MigrationFailedError:
    """A failed file's error: its path, then `text`; `file` and `fields` for the log line."""
    path = parsed.migration.path
    return MigrationFailedError(f"{path}: {text}", file=str(path), **fields)


def _primary(error: ServerError) -> str:
    return error.diag.message_primary or str(error).split("\n")[0]


def migration_failed(
    parsed: ParsedMigration,
    done: int,
    error: ServerError,
    *,
    kept: int | None,
    attempts: int,
    base: Statement | None = None,
    outcome: str | None = None,
    shift: int = 0,
    leftovers: Sequence[Leftover] = (),
    block: tuple[int, int] | None = None,
) -> MigrationFailedError:
    """
    The error for a file whose SQL failed: where, what, and what was kept.

    Args:
        parsed: the file.
        done: statements of the file that completed before the failing one
            (when the file ran as one query).
        error: the server's error.
        kept: for a `no-transaction` file, how many statements ran and were
            kept; None for a file that was rolled back.
        attempts: how many times the file was tried (named for a lock timeout).
        base: the statement that failed, when it ran on its own.
        outcome: what happened to the file, when not the default for `kept`.
        shift: characters sent before the file's text (`BEGIN;`), to correct
            the server's error position by.
        leftovers: INVALID indexes the failing concurrent build left (dropped or not).
        block: the transaction a `no-transaction` file opened itself (first, last statement)
            that `base` failed in: rolled back whole.
    """
    m = parsed.migration
    script = parsed.script  # as written: lines and columns are the file's, whatever values were sent
    code = script.code_statements
    sent = parsed.sent.code_statements
    diag = error.diag
    position = _int_or_none(diag.statement_position)
    if base is None:
        failing = code[done] if done < len(code) else None
        offset_base = -shift
    else:
        failing = code[sent.index(base)]
        offset_base = base.start
    if position is not None and 0 <= offset_base + position - 1 < len(parsed.sent.text):
        line, col = line_col(script.text, parsed.written_offset(offset_base + position - 1))
    elif failing is not None:
        line, col = line_col(script.text, failing.code_start)
    else:
        line, col = 0, 0
    where = f"{m.path}:{line}:{col}" if line else str(m.path)
    extras = []
    if diag.message_detail:
        extras.append(f"detail: {diag.message_detail}")
    if diag.message_hint:
        extras.append(f"hint: {diag.message_hint}")
    if diag.context:
        extras.append(f"context: {diag.context.strip().splitlines()[0]}")
    if error.sqlstate == "25001":
        extras.append("hint: put '-- bootstrap:no-transaction' on the first line of the file")
    if error.sqlstate == "55P03":
        extras.append(
            f"still locked after {attempts} attempts; a long transaction holds the "
            "table (raise --ddl-lock-timeout, or run when traffic is low)"
        )
    if outcome is None:
        failed = sent.index(base) if base is not None and block is not None else None
        outcome = NOTHING_KEPT if kept is None else kept_phrase(script, kept, leftovers, block, failed)
    text = f"{where}: {_primary(error)} (SQLSTATE {error.sqlstate})"
    if extras:
        text += "; " + "; ".join(extras)
    return MigrationFailedError(
        f"{text}; {outcome}",
        file=str(m.path),
        line=line or None,
        column=col or None,
        sqlstate=error.sqlstate,
    )


def commit_failed(parsed: ParsedMigration, error: ServerError, *, ledger_table: str) -> BootstrapError:
    """The file ran, but recording it (or its COMMIT) failed."""
    m = parsed.migration
    if error.sqlstate == "23505" and error.diag.table_name == ledger_table:
        return IntegrityError(
            f"{m.path}: version {m.version} was recorded by another runner while this one applied it; "
            "rolled back (is the ledger shared with a runner that ignores the lock?)",
            file=str(m.path),
        )
    detail = f"; detail: {error.diag.message_detail}" if error.diag.message_detail else ""
    outcome = (NOTHING_KEPT if m.transactional
               else "its statements ran and were kept, but the ledger was not changed")
    return _about(parsed, f"{_primary(error)} (SQLSTATE {error.sqlstate}) at COMMIT{detail}; {outcome}",
                  sqlstate=error.sqlstate)


def connection_lost(parsed: ParsedMigration, error: ServerError, kept: int | None = None, *,
                    building: Build | None = None, committing: bool = False) -> MigrationFailedError:
    """
    The connection dropped while the file ran.

    Args:
        kept: a `no-transaction` file's statements that completed (all of them:
            the break came while its ledger row was written).
        building: inside this concurrent index build.
        committing: the COMMIT was already sent, so the server may have committed
            the file, always together with its ledger change.
    """
    reason = ((error.diag.message_primary if error.diag else None) or str(error)).strip()
    undoing = parsed.migration.name.endswith(".down.sql")
    if undoing and committing:
        again = "Once the database is back, check `bootstrap status` before running rollback again (it would undo more)"
    else:
        again = f"Run {'rollback' if undoing else 'migrate'} again once the database is back"
    total = len(parsed.script.code_statements)
    if parsed.migration.transactional and committing and undoing:
        outcome = ("the server rolled the rollback back, unless the connection broke after its COMMIT: then the "
                   "down files ran and their ledger rows were removed, together")
    elif parsed.migration.transactional and committing:
        outcome = ("the server rolled the file back, unless the connection broke after its COMMIT: then the file "
                   "and its ledger row were both kept, never one without the other (migrate applies it only if "
                   "it is not recorded)")
    elif parsed.migration.transactional:
        outcome = "the server rolled the file back; nothing of it was kept"
    elif kept is not None and kept >= total:
        outcome = (f"all {total} statements ran and were kept; the ledger change was being written, and the server "
                   "kept or rolled back that change as a whole: `bootstrap status` shows which (still pending: the "
                   "next migrate runs the whole file again, so make it safe to re-run)")
    elif not building:
        outcome = kept_phrase(parsed.script, kept or 0)
    else:
        outcome = (kept_phrase(parsed.script, kept) if kept else
                   f"no statement of its {total} completed and the ledger was not changed")
        if building.verb == "create" and building.index_name is not None:
            then = f"the next migrate drops {building.index_name} before building it again"
        else:
            then = ("find it with SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid and drop it "
                    "(DROP INDEX CONCURRENTLY) before running migrate again")
        outcome += f". The concurrent index build that was cut off may have left an INVALID index: {then}"
    return _about(parsed, f"lost the connection while applying it ({reason}); {outcome}. {again}",
                  sqlstate=error.sqlstate)


def left_open(parsed: ParsedMigration) -> MigrationFailedError:
    """A `no-transaction` file ended with a transaction still open."""
    return _about(parsed, "the file left a transaction open (BEGIN without COMMIT); "
                  "that transaction was rolled back and the ledger was not changed")
