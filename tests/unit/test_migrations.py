"""Discovering and parsing migration files: names, versions, checksums, directives."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bootstrap.errors import ConfigError, ExitCode
from bootstrap.migrations import (
    Kind,
    discover_migrations,
    discover_scripts,
)
from bootstrap.parsing import parse_migration
from tests.helpers import write


def test_versions_compare_as_integers(sql_dir: Path) -> None:
    """2_x runs before 10_x, and long timestamp versions are valid."""
    for name in ("10_c.sql", "2_b.sql", "0001_a.sql", "1765802400000_d.sql", "R__views.sql"):
        write(sql_dir, name, "SELECT 1;")
    found = discover_migrations(sql_dir)
    assert [1, 2, 10, 1765802400000, None] == [m.version for m in found]
    assert [Kind.VERSIONED] * 4 + [Kind.REPEATABLE] == [m.kind for m in found]


def test_version_zero_is_a_version(sql_dir: Path) -> None:
    """0000_init.sql is version 0, the first of all."""
    write(sql_dir, "1_b.sql", "SELECT 1;")
    write(sql_dir, "0000_init.sql", "SELECT 1;")
    assert [0, 1] == [m.version for m in discover_migrations(sql_dir)]


def test_down_partner_is_attached(sql_dir: Path) -> None:
    """A .down.sql file is the rollback partner of its version, not a migration."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a();")
    down = write(sql_dir, "1_a.down.sql", "DROP TABLE a;")
    [migration] = discover_migrations(sql_dir)
    assert down == migration.down_path


def test_other_files_and_folders_are_ignored(sql_dir: Path) -> None:
    """README, hidden files and sub-folders (verify/) are not migrations."""
    write(sql_dir, "1_a.sql", "SELECT 1;")
    write(sql_dir, "README.md", "docs")
    write(sql_dir, ".#1_a.sql", "editor lock")
    write(sql_dir, "verify/check.sql", "SELECT 1;")
    assert ["1_a.sql"] == [m.name for m in discover_migrations(sql_dir)]
    assert ["check.sql"] == [p.name for p in discover_scripts(sql_dir, "verify")]


def test_checksum_ignores_bom_and_crlf(sql_dir: Path) -> None:
    """A BOM and CRLF line ends do not change the checksum (SHA-256 of the LF text)."""
    text = "CREATE TABLE a (id int);\nSELECT 1;\n"
    expected = hashlib.sha256(text.encode()).hexdigest()
    write(sql_dir, "1_a.sql", text)
    write(sql_dir, "2_a.sql", b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    assert [expected, expected] == [m.checksum for m in discover_migrations(sql_dir)]


def test_no_transaction_directive(sql_dir: Path) -> None:
    """`-- bootstrap:no-transaction` in the leading comments makes a file non-transactional."""
    write(sql_dir, "1_a.sql", "-- adds an index\n-- bootstrap:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);")
    write(sql_dir, "2_b.sql", "SELECT 1;\n-- bootstrap:no-transaction\n")
    assert [False, True] == [m.transactional for m in discover_migrations(sql_dir)]


BAD_NAMES = [
    ("no-version", "create_users.sql", "not a migration file name"),
    ("dash", "001-init.sql", "not a migration file name"),
    ("empty-description", "1_.sql", "not a migration file name"),
    ("flyway", "V1__init.sql", "Flyway-style name; bootstrap expects 1_init.sql"),
    ("upper-extension", "1_init.SQL", "extension must be lowercase .sql"),
    ("too-big", "99999999999999999999_x.sql", "does not fit in 63 bits"),
    ("repeatable-down", "R__v.down.sql", "repeatable migrations have no rollback file"),
]


@pytest.mark.parametrize(("name", "message"), [(c[1], c[2]) for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_bad_names_are_refused_naming_the_file(sql_dir: Path, name: str, message: str) -> None:
    """A *.sql file that is not a migration name is a configuration error naming it."""
    write(sql_dir, "1_ok.sql", "SELECT 1;")
    write(sql_dir, name, "SELECT 1;")
    with pytest.raises(ConfigError) as info:
        discover_migrations(sql_dir)
    assert ExitCode.CONFIG == info.value.exit_code
    assert name in str(info.value)
    assert message in str(info.value)


def test_duplicate_version_names_both_files(sql_dir: Path) -> None:
    """0001_a and 1_b share version 1: refused, naming both."""
    write(sql_dir, "0001_a.sql", "SELECT 1;")
    write(sql_dir, "1_b.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match=r"duplicate version 1: 0001_a\.sql and 1_b\.sql"):
        discover_migrations(sql_dir)


def test_orphan_down_file(sql_dir: Path) -> None:
    """A rollback file without its migration is refused."""
    write(sql_dir, "2_b.down.sql", "SELECT 1;")
    with pytest.raises(ConfigError, match=r"2_b\.down\.sql: rollback file without a migration of version 2"):
        discover_migrations(sql_dir)


def test_directory_named_like_a_file(sql_dir: Path) -> None:
    """A directory called x.sql is refused, not silently skipped."""
    (sql_dir / "1_x.sql").mkdir()
    with pytest.raises(ConfigError, match=r"1_x\.sql: is a directory"):
        discover_migrations(sql_dir)


def test_symlink_outside_is_refused(sql_dir: Path, tmp_path: Path) -> None:
    """A link leading outside the sql directory is refused; one inside it is followed."""
    outside = write(tmp_path, "elsewhere.sql", "SELECT 1;")
    os.symlink(outside, sql_dir / "1_link.sql")
    with pytest.raises(ConfigError, match="symbolic link leads outside"):
        discover_migrations(sql_dir)
    (sql_dir / "1_link.sql").unlink()
    write(sql_dir, "shared/base.sql", "SELECT 1;")
    os.symlink(sql_dir / "shared" / "base.sql", sql_dir / "1_link.sql")
    assert ["1_link.sql"] == [m.name for m in discover_migrations(sql_dir)]


def test_broken_symlink(sql_dir: Path) -> None:
    """A dangling link is refused naming it."""
    os.symlink(sql_dir / "nowhere.sql", sql_dir / "1_gone.sql")
    with pytest.raises(ConfigError, match=r"1_gone\.sql: broken symbolic link"):
        discover_migrations(sql_dir)


def test_missing_directory(tmp_path: Path) -> None:
    """A missing sql directory is a configuration error naming it and the variable."""
    with pytest.raises(ConfigError, match=r"does not exist .*BOOTSTRAP_SQL_DIR"):
        discover_migrations(tmp_path / "nope")


BAD_CONTENT = [
    ("not-utf8", b"SELECT 1;\nSELECT '\xff';\n", "1_a.sql:2:9: not valid UTF-8"),
    ("empty", b"", "the file is empty"),
    ("blank", b"  \n\n", "the file is empty"),
    ("unknown-directive", b"-- bootstrap:transaction:false\nSELECT 1;", "1_a.sql:1: unknown directive 'bootstrap:transaction:false'"),
    ("empty-directive", b"-- bootstrap:\nSELECT 1;", "1_a.sql:1: empty bootstrap directive"),
]


@pytest.mark.parametrize(("content", "message"), [(c[1], c[2]) for c in BAD_CONTENT], ids=[c[0] for c in BAD_CONTENT])
def test_bad_content_found_at_discovery(sql_dir: Path, content: bytes, message: str) -> None:
    """Unreadable content is refused before anything runs, naming the file and line."""
    write(sql_dir, "1_a.sql", content)
    with pytest.raises(ConfigError) as info:
        discover_migrations(sql_dir)
    assert message in str(info.value)


BAD_SQL = [
    ("comments-only", "-- nothing\n/* here */\n", "the file has only comments"),
    ("unterminated", "SELECT 1;\nSELECT 'oops;\n", "1_a.sql:2:8: unterminated string"),
    ("psql-meta", "SELECT 1;\n\\i other.sql\n", "1_a.sql:2:1: '\\i other.sql' is a psql meta-command"),
    ("commit", "CREATE TABLE a();\nCOMMIT;\n", "1_a.sql:2: COMMIT in a transactional file"),
    ("begin", "BEGIN;\nCREATE TABLE a();\n", "1_a.sql:1: BEGIN in a transactional file"),
    ("copy-stdin", "COPY t FROM STDIN;\n", "COPY ... FROM STDIN needs psql"),
    ("copy-stdout", "SELECT 1;\nCOPY (SELECT 1) TO STDOUT;\n", "1_a.sql:2: COPY ... TO STDOUT sends rows to a client"),
    ("discard-all", "-- bootstrap:no-transaction\nSELECT 1;\nDISCARD ALL;\n",
     "1_a.sql:3: DISCARD ALL releases bootstrap's migration lock"),
    ("unlock-all", "SELECT pg_advisory_unlock_all();\n", "1_a.sql:1: pg_advisory_unlock_all() releases bootstrap's"),
    ("dbmate-down", "CREATE TABLE a();\n-- migrate:down transaction:false\nDROP TABLE a;\n",
     "1_a.sql:2: '-- migrate:down transaction:false' starts another tool's rollback section"),
    ("node-pg-migrate-down", "CREATE TABLE a();\n\n  -- Down Migration\nDROP TABLE a;\n",
     "1_a.sql:3: '-- Down Migration' starts another tool's rollback section"),
    ("goose-down", "-- +goose Up\nCREATE TABLE a();\n-- +goose Down\nDROP TABLE a;\n", "1_a.sql:3: '-- +goose Down'"),
]

LOOKALIKES = [
    ("a-comment-about-the-down-file", "-- Down migration: see 1_audit.down.sql\nCREATE TABLE audit();\n"),
    ("stdin-in-a-string", "COPY (SELECT 'stdin') TO '/tmp/x.csv';\n"),
    ("stdin-in-a-subquery", "COPY (SELECT stdin FROM t) TO '/tmp/x.csv';\n"),
    ("marker-in-a-string", "INSERT INTO notes VALUES ('\n-- migrate:down\n');\n"),
    ("marker-in-a-block-comment", "/*\n-- +goose Down\n*/\nSELECT 1;\n"),
    ("marker-in-a-function-body", "CREATE FUNCTION f() RETURNS int AS $$\n-- Down Migration\nSELECT 1\n$$ LANGUAGE sql;\n"),
    ("commit-in-a-string", "SELECT 'COMMIT; DISCARD ALL; pg_advisory_unlock_all()';\n"),
]


@pytest.mark.parametrize("content", [c[1] for c in LOOKALIKES], ids=[c[0] for c in LOOKALIKES])
def test_words_in_strings_and_comments_are_never_code(sql_dir: Path, content: str) -> None:
    """Every check reads the file through the lexer: strings, comments and bodies never look like code."""
    write(sql_dir, "1_a.sql", content)
    [migration] = discover_migrations(sql_dir)
    assert parse_migration(migration).script.code_statements


@pytest.mark.parametrize(("content", "message"), [(c[1], c[2]) for c in BAD_SQL], ids=[c[0] for c in BAD_SQL])
def test_bad_sql_found_before_running(sql_dir: Path, content: str, message: str) -> None:
    """What only matters for running a file is checked when it is parsed, before any file runs."""
    write(sql_dir, "1_a.sql", content)
    [migration] = discover_migrations(sql_dir)
    with pytest.raises(ConfigError) as info:
        parse_migration(migration)
    assert message in str(info.value)


def test_transaction_control_allowed_without_transaction(sql_dir: Path) -> None:
    """A no-transaction file may manage its own transactions."""
    write(sql_dir, "1_a.sql", "-- bootstrap:no-transaction\nBEGIN;\nCREATE TABLE a();\nCOMMIT;\n")
    [migration] = discover_migrations(sql_dir)
    assert 3 == len(parse_migration(migration).script.code_statements)


def test_valid_checksum_accepts_an_earlier_text(sql_dir: Path) -> None:
    """A file naming an earlier text's checksum is current for a ledger holding either one; a bad value is exit 3."""
    from bootstrap.plan import AppliedMigration, build_plan

    earlier = "a" * 64
    write(sql_dir, "1_a.sql", f"-- bootstrap:valid-checksum {earlier}\nSELECT 2;\n")
    files = discover_migrations(sql_dir)
    assert {earlier} == files[0].valid_checksums
    for checksum in (earlier, files[0].checksum):
        plan = build_plan(files, [AppliedMigration(1, "1_a.sql", Kind.VERSIONED, checksum)])
        assert plan.up_to_date
    write(sql_dir, "1_a.sql", "-- bootstrap:valid-checksum d922cce5\nSELECT 2;\n")
    with pytest.raises(ConfigError, match=r"1_a\.sql:1: bootstrap:valid-checksum takes SHA-256 checksums"):
        discover_migrations(sql_dir)
