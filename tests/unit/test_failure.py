"""What a failed file's error says, built from the server's fields alone (no server)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bootstrap.errors import ExitCode, IntegrityError
from bootstrap.migrations import Kind, Migration, ParsedMigration
from bootstrap.pg import failure
from bootstrap.sqlsplit import split_statements


def parsed(text: str, *, transactional: bool = True, name: str = "2_x.sql") -> ParsedMigration:
    """A file about to run, built directly."""
    migration = Migration(Kind.VERSIONED, 2, "x", name, Path("sql") / name, "c" * 64, transactional)
    return ParsedMigration(migration, split_statements(text))


def error(sqlstate: str, message: str, **diag: Any) -> Any:
    """A driver error as the builders read it: sqlstate and the server's diagnostic fields."""
    fields = {"message_primary": message, "message_detail": None, "message_hint": None, "context": None,
              "statement_position": None, "table_name": None}
    fields.update(diag)
    return SimpleNamespace(sqlstate=sqlstate, diag=SimpleNamespace(**fields))


def test_position_becomes_line_and_column() -> None:
    """The server's character position (after the BEGIN bootstrap sent first) is the file's line:column."""
    text = "CREATE TABLE a (id int);\nSELECT * FROM nope;\n"
    err = error("42P01", 'relation "nope" does not exist', statement_position=str(len("BEGIN;\n") + 40))
    exc = failure.migration_failed(parsed(text), 1, err, kept=None, attempts=1, shift=len("BEGIN;\n"))
    assert 'sql/2_x.sql:2:15: relation "nope" does not exist (SQLSTATE 42P01); the file was rolled back; ' \
           "nothing of it was kept" == exc.message
    assert (ExitCode.MIGRATION_FAILED, 2, 15) == (exc.exit_code, exc.fields["line"], exc.fields["column"])


def test_without_a_position_the_failing_statement_is_named() -> None:
    """A runtime error has no position: the line is that of the statement that failed."""
    text = "SELECT 1;\n\nSELECT 1/0;\n"
    exc = failure.migration_failed(parsed(text), 1, error("22012", "division by zero"), kept=None, attempts=1)
    assert exc.message.startswith("sql/2_x.sql:3:1: division by zero (SQLSTATE 22012)")


def test_detail_hint_and_context_are_kept() -> None:
    """The server's detail, hint and first context line follow the message."""
    err = error("23505", "duplicate key", message_detail="Key (id)=(1) already exists.", message_hint="check it",
                context="SQL statement \"INSERT ...\"\nPL/pgSQL function f()")
    exc = failure.migration_failed(parsed("INSERT INTO t VALUES (1);"), 0, err, kept=None, attempts=1)
    assert "; detail: Key (id)=(1) already exists.; hint: check it; context: SQL statement \"INSERT ...\";" \
           in exc.message


@pytest.mark.parametrize(("sqlstate", "expected"), [
    ("25001", "hint: put '-- bootstrap:no-transaction' on the first line of the file"),
    ("55P03", "still locked after 6 attempts; a long transaction holds the table (raise --ddl-lock-timeout"),
], ids=["no-transaction-hint", "lock-timeout"])
def test_our_own_hints(sqlstate: str, expected: str) -> None:
    """CREATE INDEX CONCURRENTLY in a transaction, and a lock still held after every retry, say what to do."""
    exc = failure.migration_failed(parsed("SELECT 1;"), 0, error(sqlstate, "x"), kept=None, attempts=6)
    assert expected in exc.message


def test_a_no_transaction_file_says_what_it_kept() -> None:
    """Statements 1-2 ran and stay; the message says so, with their lines, and what to do."""
    text = "-- bootstrap:no-transaction\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\nSELECT 1/0;\nSELECT 2;\n"
    script = parsed(text, transactional=False)
    statement = script.script.code_statements[2]
    exc = failure.migration_failed(script, 0, error("22012", "division by zero"), kept=2, attempts=1, base=statement)
    assert exc.message.endswith(
        "statements 1-2 of 4 (lines 2-3) ran and were kept, statement 3 failed, 1 did not run; the ledger was "
        "not changed. Make it safe to re-run (IF NOT EXISTS), fix it, and run migrate again")


def test_kept_nothing() -> None:
    """When the first statement fails, nothing was kept and the message says that."""
    script = parsed("-- bootstrap:no-transaction\nSELECT 1;\nSELECT 2;\n", transactional=False)
    assert "no statement of its 2 ran; nothing was kept and the ledger was not changed" == \
        failure.kept_phrase(script.script, 0)


def test_a_duplicate_ledger_row_is_an_integrity_error() -> None:
    """Another runner recorded the version meanwhile (it ignored the lock): exit 6, not a failed file."""
    err = error("23505", "duplicate key value", table_name="bootstrap_migrations")
    exc = failure.commit_failed(parsed("SELECT 1;"), err, ledger_table="bootstrap_migrations")
    assert isinstance(exc, IntegrityError)
    assert "version 2 was recorded by another runner while this one applied it" in exc.message


def test_an_error_at_commit_keeps_nothing_of_a_transactional_file() -> None:
    """A deferred constraint failing at COMMIT: the file was rolled back."""
    err = error("23503", "insert or update violates foreign key constraint", message_detail="Key (p)=(42)")
    exc = failure.commit_failed(parsed("INSERT INTO child VALUES (42);"), err, ledger_table="bootstrap_migrations")
    assert "sql/2_x.sql: insert or update violates foreign key constraint (SQLSTATE 23503) at COMMIT; " \
           "detail: Key (p)=(42); the file was rolled back; nothing of it was kept" == exc.message


def test_a_lost_connection_says_what_the_server_kept() -> None:
    """Transactional: the server rolled it back. No-transaction: the statements before the break stay."""
    err = error("57P01", "terminating connection due to administrator command")
    exc = failure.connection_lost(parsed("SELECT 1;"), err)
    assert "lost the connection while applying it (terminating connection due to administrator command); " \
           "the server rolled the file back; nothing of it was kept. Run migrate again" in exc.message
    script = parsed("-- bootstrap:no-transaction\nSELECT 1;\nSELECT 2;\n", transactional=False)
    assert "statements 1-1 of 2 (lines 2-2) ran and were kept" in failure.connection_lost(script, err, kept=1).message


def test_a_connection_lost_at_commit_does_not_claim_a_rollback() -> None:
    """Cut off after COMMIT was sent, the file may have committed (with its ledger row): the message says so."""
    err = error("08006", "server closed the connection unexpectedly")
    message = failure.connection_lost(parsed("SELECT 1;"), err, committing=True).message
    assert "nothing of it was kept" not in message
    assert "unless the connection broke after its COMMIT: then the file and its ledger row were both kept, " \
           "never one without the other" in message


def test_a_connection_lost_while_a_no_transaction_file_is_recorded() -> None:
    """Every statement ran; the break came at the ledger write: says so, and where to look (no garbled counts)."""
    err = error("57P01", "terminating connection due to administrator command")
    script = parsed("-- bootstrap:no-transaction\nSELECT 1;\nSELECT 2;\n", transactional=False)
    message = failure.connection_lost(script, err, kept=2).message
    assert "all 2 statements ran and were kept; the ledger change was being written" in message
    assert "`bootstrap status` shows which" in message and "-1" not in message


def test_a_rollback_cut_off_at_commit_says_to_check_before_rolling_back_again() -> None:
    """A down file's COMMIT may have gone through: running rollback again could undo more."""
    migration = Migration(Kind.VERSIONED, 2, "x", "2_x.down.sql", Path("sql") / "2_x.down.sql", "c" * 64, True)
    down = ParsedMigration(migration, split_statements("DROP TABLE x;"))
    err = error("08006", "server closed the connection unexpectedly")
    message = failure.connection_lost(down, err, committing=True).message
    assert "the down files ran and their ledger rows were removed, together" in message
    assert message.endswith("check `bootstrap status` before running rollback again (it would undo more)")
    assert "Run migrate again" not in message
    before = failure.connection_lost(down, err).message  # cut off before its COMMIT: nothing was undone
    assert before.endswith("the server rolled the file back; nothing of it was kept. Run rollback again once the "
                           "database is back")


def test_a_cut_off_concurrent_build_says_how_its_index_goes() -> None:
    """A named CREATE INDEX CONCURRENTLY is dropped by the next migrate; another build says how to find the index."""
    from bootstrap.concurrently import concurrent_build

    err = error("57P01", "terminating connection due to administrator command")
    text = "-- bootstrap:no-transaction\nCREATE INDEX CONCURRENTLY ix ON t (a);\n"
    build = concurrent_build("CREATE INDEX CONCURRENTLY ix ON t (a)")
    assert build is not None
    named = failure.connection_lost(parsed(text, transactional=False), err, kept=0, building=build).message
    assert "may have left an INVALID index: the next migrate drops ix before building it again" in named
    build = concurrent_build("REINDEX TABLE CONCURRENTLY t")
    assert build is not None
    other = failure.connection_lost(parsed("-- bootstrap:no-transaction\nREINDEX TABLE CONCURRENTLY t;\n",
                                           transactional=False), err, kept=0, building=build).message
    assert "SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid" in other
