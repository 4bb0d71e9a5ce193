"""
Bad input, table-driven, run as a user would (a subprocess per case): each case
gets a message naming the culprit, the documented exit code, nothing applied,
and the sentinel password in DATABASE_URL never appears in any output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.helpers import bootstrap_cmd, clean_env, ledger, logs

SENTINEL = "S3ntinel-Pa55w0rd-Never-Printed"
Setup = Callable[[Path, Path], None]  # (sql_dir, tmp) -> None


@dataclass(frozen=True)
class Case:
    """One bad input."""

    id: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Setup | None = None
    args: tuple[str, ...] = ("migrate",)
    env: dict[str, str] = field(default_factory=dict)
    code: int = 3
    message: str = ""
    applied: tuple[int, ...] = ()  # versions the ledger must hold afterwards (positive cases)
    unprivileged: bool = False  # run without the power to read any file (as root: drop DAC override)
    kept_tables: int = 0  # tables a no-transaction file keeps by design


def symlink_outside(sql_dir: Path, tmp: Path) -> None:
    """1_link.sql -> a file outside sql/."""
    (tmp / "outside.sql").write_text("SELECT 1;")
    os.symlink(tmp / "outside.sql", sql_dir / "1_link.sql")


def broken_symlink(sql_dir: Path, tmp: Path) -> None:
    """1_gone.sql -> nowhere."""
    os.symlink(sql_dir / "nowhere.sql", sql_dir / "1_gone.sql")


def directory_named_sql(sql_dir: Path, tmp: Path) -> None:
    """A directory called 1_dir.sql."""
    (sql_dir / "1_dir.sql").mkdir()


def unreadable_file(sql_dir: Path, tmp: Path) -> None:
    """A migration nobody may read."""
    path = sql_dir / "1_secret.sql"
    path.write_text("SELECT 1;")
    path.chmod(0)


def unreadable_dir(sql_dir: Path, tmp: Path) -> None:
    """An sql directory nobody may list."""
    (sql_dir / "1_a.sql").write_text("SELECT 1;")
    sql_dir.chmod(0)


def huge_file(sql_dir: Path, tmp: Path) -> None:
    """A 300 MiB file (sparse: made in no time)."""
    with open(sql_dir / "1_huge.sql", "wb") as fh:
        fh.truncate(300 * 2**20)


def big_file(sql_dir: Path, tmp: Path) -> None:
    """5 MB of INSERTs in one file: fine, applied."""
    rows = "".join(f"INSERT INTO big VALUES ({i}, 'row number {i} with some padding text');\n" for i in range(100_000))
    (sql_dir / "1_big.sql").write_text("CREATE TABLE big (id int, note text);\n" + rows)


def sql_dir_is_a_file(sql_dir: Path, tmp: Path) -> None:
    """BOOTSTRAP_SQL_DIR names a file."""
    shutil.rmtree(sql_dir)
    sql_dir.write_text("not a directory")


def foreign_ledger(sql_dir: Path, tmp: Path) -> None:
    """The ledger name points at another tool's table (created by the test, see PRE_SQL)."""
    (sql_dir / "1_a.sql").write_text("CREATE TABLE a (id int);")


def url_file(content: str) -> Setup:
    """DATABASE_URL_FILE's content."""

    def setup(sql_dir: Path, tmp: Path) -> None:
        (tmp / "url").write_text(content)

    return setup


ONE = {"1_a.sql": "CREATE TABLE a (id int);"}

CASES = [
    # -- file names ------------------------------------------------------------------
    Case("name-without-version", {**ONE, "create_users.sql": "SELECT 1;"}, message="create_users.sql: not a migration file name"),
    Case("name-with-dash", {**ONE, "001-init.sql": "SELECT 1;"}, message="001-init.sql: not a migration file name"),
    Case("name-without-description", {**ONE, "2_.sql": "SELECT 1;"}, message="2_.sql: not a migration file name"),
    Case("name-flyway-style", {"V2__init.sql": "SELECT 1;"}, message="V2__init.sql: not a migration file name; Flyway-style name; bootstrap expects 2_init.sql"),
    Case("name-uppercase-extension", {"1_init.SQL": "SELECT 1;"}, message="1_init.SQL: not a migration file name; the extension must be lowercase .sql"),
    Case("name-repeatable-down", {"R__v.down.sql": "SELECT 1;"}, message="R__v.down.sql: repeatable migrations have no rollback file"),
    Case("name-version-too-big", {"99999999999999999999_x.sql": "SELECT 1;"}, message="99999999999999999999_x.sql: version 99999999999999999999 does not fit in 63 bits"),
    Case("duplicate-version", {"1_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"}, message="duplicate version 1: 0001_b.sql and 1_a.sql"),
    Case("duplicate-rollback", {"1_a.sql": "SELECT 1;", "1_a.down.sql": "SELECT 1;", "01_b.down.sql": "SELECT 1;"}, message="version 1 has two rollback files"),
    Case("orphan-rollback", {**ONE, "2_b.down.sql": "SELECT 1;"}, message="2_b.down.sql: rollback file without a migration of version 2"),
    Case("directory-named-x-sql", ONE, setup=directory_named_sql, message="1_dir.sql: is a directory"),
    Case("symlink-outside", setup=symlink_outside, message="1_link.sql: symbolic link leads outside"),
    Case("broken-symlink", setup=broken_symlink, message="1_gone.sql: broken symbolic link"),
    Case("unreadable-file", setup=unreadable_file, message="1_secret.sql: cannot read the file: Permission denied", unprivileged=True),
    Case("unreadable-directory", setup=unreadable_dir, message="cannot be read: permission denied", unprivileged=True),
    Case("missing-directory", env={"BOOTSTRAP_SQL_DIR": "/nonexistent/sql"}, message="migrations directory /nonexistent/sql does not exist"),
    Case("sql-dir-is-a-file", setup=sql_dir_is_a_file, message="is not a directory"),
    # -- content -------------------------------------------------------------------------
    Case("not-utf8", {"1_a.sql": b"SELECT 1;\nSELECT '\xff\xfe';\n"}, message="1_a.sql:2:9: not valid UTF-8"),
    Case("latin1", {"1_a.sql": "SELECT 'café';".encode("latin-1")}, message="1_a.sql:1:12: not valid UTF-8 (byte 0xe9)"),
    Case("empty-file", {"1_a.sql": b""}, message="1_a.sql: the file is empty"),
    Case("blank-file", {"1_a.sql": "\n  \n\t\n"}, message="1_a.sql: the file is empty"),
    Case("comments-only", {"1_a.sql": "-- todo\n/* later */\n"}, message="1_a.sql: the file has only comments"),
    Case("unknown-directive", {"1_a.sql": "-- a comment\n-- bootstrap:transaction:false\nSELECT 1;"}, message="1_a.sql:2: unknown directive 'bootstrap:transaction:false'"),
    Case("empty-directive", {"1_a.sql": "-- bootstrap:\nSELECT 1;"}, message="1_a.sql:1: empty bootstrap directive"),
    Case("unterminated-string", {"1_a.sql": "CREATE TABLE a (id int);\nINSERT INTO a VALUES ('oops);\n"}, message="1_a.sql:2:23: unterminated string"),
    Case("unterminated-dollar-quote", {"1_a.sql": "DO $body$\nBEGIN\n  NULL;\nEND\n"}, message="1_a.sql:1:4: unterminated dollar-quoted string $body$"),
    Case("unterminated-comment", {"1_a.sql": "SELECT 1;\n/* never closed\n"}, message="1_a.sql:2:1: unterminated /* comment"),
    Case("psql-meta-command", {"1_a.sql": "\\set ON_ERROR_STOP on\nSELECT 1;\n"}, message="1_a.sql:1:1: '\\set ON_ERROR_STOP on' is a psql meta-command"),
    Case("commit-in-transactional-file", {"1_a.sql": "CREATE TABLE a (id int);\nCOMMIT;\n"}, message="1_a.sql:2: COMMIT in a transactional file"),
    Case("copy-to-stdout", {"1_a.sql": "CREATE TABLE a (id int);\nCOPY a TO STDOUT;\n"}, message="1_a.sql:2: COPY ... TO STDOUT sends rows to a client that keeps none"),
    Case("copy-from-a-query-naming-stdin", {"1_a.sql": "CREATE TABLE a (id int);\nCOPY (SELECT 'stdin') TO PROGRAM 'cat > /dev/null';\n"}, code=0, applied=(1,)),
    Case("discard-all-in-a-no-transaction-file", {"1_a.sql": "-- bootstrap:no-transaction\nCREATE TABLE a (id int);\nDISCARD ALL;\n"}, message="1_a.sql:3: DISCARD ALL releases bootstrap's migration lock"),
    Case("comment-about-a-down-file", {"1_a.sql": "-- Down migration: see 1_a.down.sql\nCREATE TABLE a (id int);\n"}, code=0, applied=(1,), kept_tables=1),
    Case("copy-from-stdin", {"1_a.sql": "CREATE TABLE a (id int);\nCOPY a FROM STDIN;\n1\n\\.\n"}, message="COPY ... FROM STDIN needs psql"),
    Case("huge-file", setup=huge_file, message="1_huge.sql: 300 MiB is more than bootstrap sends as one query"),
    # -- accepted as they are: BOM, CRLF, a big file ---------------------------------------------
    Case("bom-file", {"1_a.sql": b"\xef\xbb\xbfCREATE TABLE a (id int);\n"}, code=0, applied=(1,)),
    Case("crlf-file", {"1_a.sql": b"CREATE TABLE a (id int);\r\nINSERT INTO a VALUES (1);\r\n"}, code=0, applied=(1,)),
    Case("big-file", setup=big_file, code=0, applied=(1,)),
    # -- SQL errors: file, line and column -------------------------------------------------------
    Case("syntax-error-line-1", {"1_a.sql": "CREAT TABLE a (id int);"}, code=5, message="1_a.sql:1:1: syntax error at or near \"CREAT\""),
    Case("syntax-error-deep", {"1_a.sql": "-- header\n\nCREATE TABLE a (\n    id int,\n    name text,\n    oops oops oops\n);\n"}, code=5, message="1_a.sql:6:15: syntax error at or near \"oops\""),
    Case("undefined-table-third-statement", {"1_a.sql": "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nINSERT INTO missing VALUES (1);\n"}, code=5, message="1_a.sql:3:13: relation \"missing\" does not exist (SQLSTATE 42P01)"),
    Case("runtime-error-without-position", {"1_a.sql": "CREATE TABLE a (id int);\n\n\nSELECT 1 / 0;\n"}, code=5, message="1_a.sql:4:1: division by zero (SQLSTATE 22012)"),
    Case("error-inside-do-block", {"1_a.sql": "CREATE TABLE a (id int);\nDO $$\nBEGIN\n  RAISE EXCEPTION 'balance check failed';\nEND\n$$;\n"}, code=5, message="1_a.sql:2:1: balance check failed (SQLSTATE P0001)"),
    Case("server-error-echoing-a-url", {"1_a.sql": f"DO $$BEGIN RAISE EXCEPTION 'cannot reach postgresql://app:{SENTINEL}@db/x' USING DETAIL = 'password={SENTINEL}'; END$$;"}, code=5, message="cannot reach postgresql://app:***@db/x"),
    Case("unique-violation", {"1_a.sql": "CREATE TABLE a (id int PRIMARY KEY);\nINSERT INTO a VALUES (1);\nINSERT INTO a VALUES (1);\n"}, code=5, message="1_a.sql:3:1: duplicate key value violates unique constraint \"a_pkey\""),
    Case("no-transaction-fails-halfway", {"1_a.sql": "-- bootstrap:no-transaction\nCREATE TABLE IF NOT EXISTS a (id int);\nCREATE INDEX CONCURRENTLY a_id ON missing (id);\nSELECT 1;\n"}, code=5, message="statements 1-1 of 3 (lines 2-2) ran and were kept, statement 2 failed, 1 did not run", kept_tables=1),
    Case("concurrently-in-transaction", {"1_a.sql": "CREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n"}, code=5, message="put '-- bootstrap:no-transaction' on the first line"),
    # -- connection settings ---------------------------------------------------------------------
    Case("url-missing-colon", ONE, env={"DATABASE_URL": f"postgresql//app:{SENTINEL}@db/x"}, message="DATABASE_URL is not a valid PostgreSQL connection string"),
    Case("url-bad-port", ONE, env={"DATABASE_URL": f"postgresql://app:{SENTINEL}@127.0.0.1:port/x"}, message="DATABASE_URL"),
    Case("url-unknown-parameter", ONE, env={"DATABASE_URL": f"postgresql://app:{SENTINEL}@127.0.0.1/x?frobnicate=1"}, message="unknown URL parameter 'frobnicate'"),
    Case("url-prisma-parameters", ONE, env={"DATABASE_URL": "{url}?schema=public&connection_limit=5&pool_timeout=10&pgbouncer=true"}, code=0, applied=(1,)),
    Case("url-unencoded-at-in-password", ONE, env={"DATABASE_URL": f"postgresql://postgres:P1@{SENTINEL}@127.0.0.1/x"}, message="Percent-encode"),
    Case("url-slash-in-password", ONE, env={"DATABASE_URL": f"postgresql://postgres:s3cr3t/{SENTINEL}@127.0.0.1/x"}, message="Percent-encode"),
    Case("url-question-mark-in-password", ONE, env={"DATABASE_URL": "{url_password_q}"}, code=0, applied=(1,)),
    Case("conninfo-unquoted-password-with-spaces", ONE, env={"DATABASE_URL": f"host=127.0.0.1 password=correct horse {SENTINEL} staple"}, message="quote a value that holds spaces"),
    Case("usage-error-on-the-console", ONE, args=("migrate", "{url}"), env={"BOOTSTRAP_LOG_FORMAT": "console"}, code=2, message="unexpected extra argument"),
    Case("url-unknown-sslmode", ONE, env={"DATABASE_URL": f"postgresql://app:{SENTINEL}@127.0.0.1/x?sslmode=sometimes"}, message="DATABASE_URL: unknown sslmode 'sometimes'"),
    Case("pgsslmode-unknown", ONE, env={"PGSSLMODE": "always"}, message="unknown sslmode 'always'"),
    Case("url-password-with-space", ONE, env={"DATABASE_URL": f"postgresql://app:{SENTINEL} x@127.0.0.1/x?bad=1"}, message="DATABASE_URL"),
    Case("url-and-url-file", ONE, setup=url_file("postgresql://db/x"), env={"DATABASE_URL_FILE": "{tmp}/url"}, message="both DATABASE_URL and DATABASE_URL_FILE are set"),
    Case("migrator-url-and-file", ONE, setup=url_file("postgresql://db/x"), env={"BOOTSTRAP_DATABASE_URL": "postgresql://db/x", "BOOTSTRAP_DATABASE_URL_FILE": "{tmp}/url"}, message="both BOOTSTRAP_DATABASE_URL and BOOTSTRAP_DATABASE_URL_FILE are set"),
    Case("url-file-missing", ONE, env={"DATABASE_URL": "", "DATABASE_URL_FILE": "{tmp}/nope"}, message="DATABASE_URL_FILE: cannot read {tmp}/nope: No such file or directory"),
    Case("url-file-is-a-directory", ONE, env={"DATABASE_URL": "", "DATABASE_URL_FILE": "{tmp}"}, message="DATABASE_URL_FILE: cannot read {tmp}: Is a directory"),
    Case("unknown-database", ONE, env={"DATABASE_URL": "{base}/no_such_database_here"}, message='database "no_such_database_here" does not exist'),
    # -- other settings --------------------------------------------------------------------------
    Case("timeout-not-a-number", ONE, env={"BOOTSTRAP_WAIT_TIMEOUT": "soon"}, message="BOOTSTRAP_WAIT_TIMEOUT: 'soon' is not a duration"),
    Case("timeout-negative", ONE, env={"BOOTSTRAP_LOCK_TIMEOUT": "-1"}, message="BOOTSTRAP_LOCK_TIMEOUT: '-1' is not a duration"),
    Case("timeout-flag-not-a-number", ONE, args=("migrate", "--timeout", "soon"), code=2, message="'soon' is not a duration"),
    Case("ddl-lock-timeout-bad-unit", ONE, env={"BOOTSTRAP_DDL_LOCK_TIMEOUT": "5 fortnights"}, message="BOOTSTRAP_DDL_LOCK_TIMEOUT: '5 fortnights' is not a duration"),
    Case("ddl-lock-retries-not-a-number", ONE, env={"BOOTSTRAP_DDL_LOCK_RETRIES": "many"}, message="BOOTSTRAP_DDL_LOCK_RETRIES: 'many' is not a whole number"),
    Case("statement-timeout-garbage", ONE, env={"BOOTSTRAP_STATEMENT_TIMEOUT": "1e9s!"}, message="BOOTSTRAP_STATEMENT_TIMEOUT"),
    Case("ledger-three-parts", ONE, env={"BOOTSTRAP_LEDGER_TABLE": "a.b.c"}, message="BOOTSTRAP_LEDGER_TABLE: 'a.b.c' is not a table name"),
    Case("ledger-uppercase", ONE, env={"BOOTSTRAP_LEDGER_TABLE": "Migrations"}, message="table name 'Migrations' is not a plain lowercase identifier"),
    Case("ledger-quote", ONE, env={"BOOTSTRAP_LEDGER_TABLE": 'ops."x'}, message="table name '\"x' is not a plain lowercase identifier"),
    Case("ledger-reserved", ONE, env={"BOOTSTRAP_LEDGER_TABLE": "pg_catalog.migrations"}, message="schema name 'pg_catalog' is reserved"),
    Case("ledger-foreign-table", setup=foreign_ledger, env={"BOOTSTRAP_LEDGER_TABLE": "schema_migrations"}, message="ledger table public.schema_migrations exists but is not a bootstrap ledger"),
    Case("schema-with-space", ONE, env={"BOOTSTRAP_SCHEMAS": "fin ance"}, message="BOOTSTRAP_SCHEMAS: schema name 'fin ance' is not a plain lowercase identifier"),
    Case("schema-injection", ONE, env={"BOOTSTRAP_SCHEMAS": "a;drop table x"}, message="schema name 'a;drop table x' is not a plain lowercase identifier"),
    Case("schema-reserved", ONE, env={"BOOTSTRAP_SCHEMAS": "pg_temp"}, message="schema name 'pg_temp' is reserved"),
    Case("schema-too-long", ONE, env={"BOOTSTRAP_SCHEMAS": "s" * 64}, message="is longer than 63 bytes"),
    Case("schema-mixed-case", ONE, env={"BOOTSTRAP_SCHEMAS": "Financial"}, message="schema name 'Financial' is not a plain lowercase identifier"),
    Case("log-format-unknown", ONE, env={"BOOTSTRAP_LOG_FORMAT": "xml"}, message="BOOTSTRAP_LOG_FORMAT: 'xml' is not one of auto, json, console"),
    Case("log-level-unknown", ONE, env={"BOOTSTRAP_LOG_LEVEL": "chatty"}, message="BOOTSTRAP_LOG_LEVEL: 'chatty' is not one of"),
    Case("adopt-table-flag-bad", ONE, args=("adopt", "--from", "dbmate", "--table", "S.sm"), message="--table: schema name 'S' is not a plain lowercase identifier"),
    Case("adopt-table-variable-bad", ONE, args=("adopt", "--from", "dbmate"), env={"BOOTSTRAP_ADOPT_TABLE": "a.b.c"}, message="BOOTSTRAP_ADOPT_TABLE: 'a.b.c' is not a table name"),
    Case("boolean-variable-unknown", ONE, args=("run", "--", "true"), env={"BOOTSTRAP_NO_MIGRATE": "maybe"}, message="BOOTSTRAP_NO_MIGRATE: 'maybe' is not a boolean"),
    # -- the command line --------------------------------------------------------------------------
    Case("run-without-command", ONE, args=("run", "--"), code=2, message="missing command"),
    Case("run-unknown-option", ONE, args=("run", "--no-wiat", "--", "true"), code=2, message="No such option '--no-wiat'"),
    Case("unknown-command", ONE, args=("migrat",), code=2, message="No such command 'migrat'"),
    Case("rollback-without-target", ONE, args=("rollback",), code=2, message="give exactly one of --steps N or --to VERSION"),
    Case("run-command-not-found", ONE, args=("run", "--", "no-such-program-xyz"), code=127, message="no-such-program-xyz: command not found"),
]
PRE_SQL = {"ledger-foreign-table": "CREATE TABLE schema_migrations (version varchar PRIMARY KEY)"}


def test_at_least_forty_cases() -> None:
    """The table tries at least 40 bad inputs."""
    assert len([c for c in CASES if c.code != 0]) >= 40


def _unprivileged(argv: list[str]) -> list[str]:
    """Run without the power to read any file: root loses DAC override; others are already bound by modes."""
    if os.geteuid() == 0:
        return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *argv]
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fdb: str, fconn: psycopg.Connection, tmp_path: Path) -> None:
    """Bad input: the documented exit code, a message naming the culprit, nothing applied, no password shown."""
    base = fdb.rsplit("/", 1)[0]
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    for name, content in case.files.items():
        path = sql_dir / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if case.setup:
        case.setup(sql_dir, tmp_path)
    if case.id in PRE_SQL:
        fconn.execute(PRE_SQL[case.id])
    url = fdb.replace("postgres@", f"postgres:{SENTINEL}@", 1)
    env = clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), BOOTSTRAP_WAIT_TIMEOUT="3")
    fields = {"tmp": tmp_path, "base": base.replace("postgres@", f"postgres:{SENTINEL}@", 1), "url": url,
              "url_password_q": fdb.replace("postgres@", f"postgres:p?q{SENTINEL}@", 1)}
    for key, value in case.env.items():
        env[key] = value.format(**fields)
    argv = bootstrap_cmd(*(arg.format(**fields) for arg in case.args))
    if case.unprivileged:
        argv = _unprivileged(argv)
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False,
                                stdin=subprocess.DEVNULL)
    finally:
        sql_dir.chmod(0o755) if sql_dir.is_dir() else None
    output = result.stdout + result.stderr
    assert case.code == result.returncode, output[-2000:]
    assert SENTINEL not in output
    if case.message:
        message = case.message.format(tmp=tmp_path)
        if case.code in (2,) and "bootstrap_failed" not in result.stderr:
            assert message in result.stderr
        else:
            errors = [e.get("error", "") for e in logs(result.stderr) if e.get("event") == "bootstrap_failed"]
            assert errors and message in errors[-1], output[-2000:]
    rows = [r[0] for r in ledger(fconn)]
    assert list(case.applied) == rows
    if not case.applied:
        user_tables = fconn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
            " AND tablename NOT IN ('bootstrap_migrations', 'schema_migrations')").fetchone()[0]
        assert case.kept_tables == user_tables
