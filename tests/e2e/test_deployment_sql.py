"""
SQL that fits the deployment, in real processes on real PostgreSQL: placeholders (`-- bootstrap:vars`, with
psql as the oracle of what a file means), an owner role (`--role`), after-migrate scripts (`sql/after/`) and
short-lived passwords (`BOOTSTRAP_PASSWORD_COMMAND`).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgcluster import Cluster
from pgcluster import psql as find_psql
from tests.helpers import Spawned, bootstrap_cmd, clean_env, events, last_error, ledger, logs, run_cli, write

SECRET = "S3cr3t-o'Brien\\x\"; DROP TABLE t; --"


def migrate(url: str, sql_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["migrate", *args], clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), **env))


# -- placeholders ------------------------------------------------------------------------------------------

PLACEHOLDERS = """-- bootstrap:vars NOTE,TABLE_NAME
CREATE TABLE :"TABLE_NAME" (id int, note text, kind text);
INSERT INTO :"TABLE_NAME" VALUES (1, :'NOTE', 'plain');
-- :'NOTE' in a comment stays a comment
INSERT INTO :"TABLE_NAME" VALUES (2, ':''NOTE''', $$ :'NOTE' $$);
INSERT INTO :"TABLE_NAME" VALUES (3, 'x'::"text", E'\\\\:''NOTE''');
"""


def rows(url: str, table: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))).fetchall()


def test_placeholders_mean_what_psql_makes_of_them(fresh_url: str, admin: psycopg.Connection, pg_base_dsn: str,
                                                    sql_dir: Path) -> None:
    """A value is a literal or an identifier, never SQL; outside strings, comments and dollar quotes only: as psql -v."""
    write(sql_dir, "0001_notes.sql", PLACEHOLDERS)
    result = migrate(fresh_url, sql_dir, NOTE=SECRET, TABLE_NAME="Notes Table")
    assert 0 == result.returncode, result.stderr
    ours = rows(fresh_url, "Notes Table")
    assert (1, SECRET, "plain") == ours[0]
    assert [(2, ":'NOTE'", " :'NOTE' "), (3, "x", "\\:'NOTE'")] == ours[1:]
    psql = str(find_psql())
    oracle_db = f"bootstrap_psql_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(oracle_db)))
    try:
        params = conninfo_to_dict(pg_base_dsn)
        oracle = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"NOTE={SECRET}",
                                 "-v", "TABLE_NAME=Notes Table", "-h", str(params.get("host", "127.0.0.1")),
                                 "-p", str(params.get("port", 5432)), "-U", str(params.get("user", "postgres")),
                                 "-d", oracle_db, "-f", str(sql_dir / "0001_notes.sql")],
                                capture_output=True, text=True, check=False)
        assert 0 == oracle.returncode, oracle.stderr
        with psycopg.connect(pg_base_dsn, dbname=oracle_db) as conn:
            assert ours == conn.execute('SELECT * FROM "Notes Table" ORDER BY id').fetchall()
    finally:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(oracle_db)))
    assert SECRET not in result.stderr + result.stdout


def test_a_changed_value_is_not_drift_and_values_never_reach_the_logs(fresh_url: str, sql_dir: Path) -> None:
    """The checksum is the file's as written; a failing statement's message masks the value it holds."""
    write(sql_dir, "0001_t.sql", "-- bootstrap:vars NOTE\nCREATE TABLE t (note text);\nINSERT INTO t VALUES (:'NOTE');\n")
    assert 0 == migrate(fresh_url, sql_dir, NOTE=SECRET).returncode
    status = run_cli(["status", "--exit-code"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir),
                                                          NOTE="rotated-value-42"))
    assert 0 == status.returncode, status.stdout + status.stderr
    write(sql_dir, "0002_bad.sql", "-- bootstrap:vars NOTE\nSELECT (:'NOTE')::int;\n")
    failed = migrate(fresh_url, sql_dir, NOTE=SECRET)
    assert 5 == failed.returncode
    error = last_error(failed.stderr)
    assert "invalid input syntax for type integer" in error["error"]
    assert (str(sql_dir / "0002_bad.sql"), 2) == (error["file"], error["line"])
    assert SECRET not in failed.stderr + failed.stdout
    assert "***" in error["error"]


@pytest.mark.parametrize(("text", "where", "message"), [
    ("-- bootstrap:vars A\nSELECT :'A', :'B';\n", ":2:14", ":'B' uses B, which the file's -- bootstrap:vars line "
                                                         "does not list"),
    ("-- bootstrap:vars A,UNSET_ONE\nSELECT :'A';\nSELECT :\"UNSET_ONE\";\n", ":3:8",
     "UNSET_ONE is not set: set UNSET_ONE (or UNSET_ONE_FILE)"),
    ("-- bootstrap:vars A\nSELECT :A;\n", ":2:8", ":A would paste the value of A into the SQL as it is"),
], ids=["not-listed", "unset", "raw"])
def test_a_variable_that_cannot_be_used_stops_everything_before_it_runs(
        text: str, where: str, message: str, fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Exit 3 naming the file, line and variable; no file of the run (not even the one before it) is applied."""
    write(sql_dir, "0001_first.sql", "CREATE TABLE first (id int);")
    write(sql_dir, "0002_vars.sql", text)
    result = migrate(fresh_url, sql_dir, A="value-a")
    assert 3 == result.returncode
    error = last_error(result.stderr)["error"]
    assert error.startswith(f"{sql_dir / '0002_vars.sql'}{where}: "), error
    assert message in error
    assert db.execute("SELECT to_regclass('first')").fetchone()[0] is None
    assert db.execute("SELECT to_regclass('bootstrap.bootstrap_migrations')").fetchone()[0] is None


def test_a_value_the_server_quotes_back_is_masked_as_sent(fresh_url: str, sql_dir: Path) -> None:
    """A syntax error quoting the literal as sent (quotes doubled, E'' with backslashes) shows none of it."""
    write(sql_dir, "0001_bad.sql", "-- bootstrap:vars PW\nSELECT 1 :'PW';\n")
    for value in ("hunter2's-secret", "back\\slash-secret"):
        result = migrate(fresh_url, sql_dir, "--lint", "off", PW=value)
        assert 5 == result.returncode
        error = last_error(result.stderr)["error"]
        assert "syntax error at or near" in error and "***" in error
        escaped = value.replace("'", "''").replace("\\", "\\\\")
        assert value not in result.stderr and escaped not in result.stderr, error


def test_an_empty_value_is_a_value_as_for_psql(fresh_url: str, sql_dir: Path, tmp_path: Path) -> None:
    """NOTE= is the empty string (psql -v NOTE=); NOTE with NOTE_FILE both set is exit 3, even when NOTE is empty."""
    write(sql_dir, "0001_t.sql", "-- bootstrap:vars NOTE\nCREATE TABLE t (note text);\nINSERT INTO t VALUES (:'NOTE');\n")
    note = tmp_path / "note"
    note.write_text("from-file\n")
    both = migrate(fresh_url, sql_dir, NOTE="", NOTE_FILE=str(note))
    assert 3 == both.returncode
    assert "both NOTE and NOTE_FILE are set" in last_error(both.stderr)["error"]
    assert 0 == migrate(fresh_url, sql_dir, NOTE="").returncode
    assert [("",)] == rows(fresh_url, "t")


def test_values_come_from_name_file_and_lint_and_dry_run_never_read_them(fresh_url: str, sql_dir: Path,
                                                                         tmp_path: Path) -> None:
    """NOTE_FILE gives the value; lint and --dry-run work on the file as written, without any value set."""
    write(sql_dir, "0001_t.sql", "-- bootstrap:vars NOTE\nCREATE TABLE t (note text);\nINSERT INTO t VALUES (:'NOTE');\n")
    linted = run_cli(["lint", "--all"], clean_env(BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 0 == linted.returncode, linted.stdout + linted.stderr
    planned = migrate(fresh_url, sql_dir, "--dry-run")
    assert 8 == planned.returncode, planned.stderr
    assert "0001_t.sql" in planned.stdout
    secret_file = tmp_path / "note"
    secret_file.write_text(SECRET + "\n")
    applied = migrate(fresh_url, sql_dir, NOTE_FILE=str(secret_file))
    assert 0 == applied.returncode, applied.stderr
    assert [(SECRET,)] == rows(fresh_url, "t")


# -- --role ------------------------------------------------------------------------------------------------

@pytest.fixture
def roles(admin: psycopg.Connection, fresh_url: str) -> Iterator[tuple[str, str]]:
    """An owner role (NOLOGIN) and a login that is a member of it; dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    owner, login = f"bootstrap_owner_{suffix}", f"bootstrap_login_{suffix}"
    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(sql.Identifier(login), sql.Identifier(owner)))
    dbname = conninfo_to_dict(fresh_url)["dbname"]
    admin.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(login)))
    yield owner, login
    for role in (login, owner):
        with psycopg.connect(fresh_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def owner_of(db: psycopg.Connection, relation: str) -> str:
    return db.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)",
                      [relation]).fetchone()[0]


def test_every_file_runs_as_the_role_and_the_ledger_is_written_by_the_login(
        roles: tuple[str, str], fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Tables, a concurrent index's table, a view and an after-script's object: the role's; ledger rows: the login's."""
    owner, login = roles
    write(sql_dir, "0001_t.sql", "CREATE TABLE app.t (id int);\nCREATE TABLE app.u (id int);")
    write(sql_dir, "0002_nt.sql", "-- bootstrap:no-transaction\nCREATE TABLE app.nt (id int);\n"
                                  "CREATE INDEX CONCURRENTLY nt_id ON app.nt (id);")
    write(sql_dir, "R__v.sql", "CREATE OR REPLACE VIEW app.v AS SELECT * FROM app.t;")
    write(sql_dir, "after/01_seq.sql", "CREATE SEQUENCE IF NOT EXISTS app.after_seq;")
    url = fresh_url.replace("postgres@", f"{login}@", 1)
    result = migrate(url, sql_dir, BOOTSTRAP_SCHEMAS="app", BOOTSTRAP_ROLE=owner)
    assert 0 == result.returncode, result.stderr
    assert [owner] * 5 == [owner_of(db, r) for r in ("app.t", "app.u", "app.nt", "app.v", "app.after_seq")]
    assert owner == db.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'app'").fetchone()[0]
    assert {login} == {r[0] for r in db.execute("SELECT applied_by FROM bootstrap.bootstrap_migrations")}
    assert login == db.execute("SELECT pg_get_userbyid(relowner) FROM pg_class "
                               "WHERE oid = 'bootstrap.bootstrap_migrations'::regclass").fetchone()[0]


@pytest.mark.parametrize("which", ["not-a-member", "no-such-role"])
def test_a_role_the_login_cannot_take_is_exit_3_before_anything(which: str, roles: tuple[str, str], fresh_url: str,
                                                                sql_dir: Path, db: psycopg.Connection,
                                                                admin: psycopg.Connection) -> None:
    """Not a member (or no such role): exit 3 naming both and the fix; no schema, no ledger, no file."""
    owner, login = roles
    role = owner if which == "not-a-member" else f"no_such_role_{uuid.uuid4().hex[:6]}"
    if which == "not-a-member":
        admin.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(owner), sql.Identifier(login)))
    write(sql_dir, "0001_t.sql", "CREATE TABLE app.t (id int);")
    result = migrate(fresh_url.replace("postgres@", f"{login}@", 1), sql_dir, BOOTSTRAP_SCHEMAS="app",
                     BOOTSTRAP_ROLE=role)
    assert 3 == result.returncode
    error = last_error(result.stderr)["error"]
    assert f"--role {role} (BOOTSTRAP_ROLE): the login {login} cannot SET ROLE to it" in error
    with_set = " WITH SET TRUE" if db.info.server_version >= 160000 else ""  # 16: membership and SET are apart
    assert error.endswith(f'; GRANT "{role}" TO "{login}"{with_set}' if which == "not-a-member" else
                          f'; create it (CREATE ROLE "{role}" NOLOGIN) and GRANT "{role}" TO "{login}"'), error
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname IN ('app', 'bootstrap')").fetchone()[0] == 0


# -- sql/after/ --------------------------------------------------------------------------------------------

def test_after_scripts_run_in_order_on_every_migrate_and_are_never_recorded(fresh_url: str, sql_dir: Path,
                                                                           db: psycopg.Connection) -> None:
    """Name order, after the migrations, again on a migrate with nothing pending; not in the ledger or status."""
    write(sql_dir, "0001_t.sql", "CREATE TABLE t (id int); CREATE TABLE runs (script text, at serial);")
    write(sql_dir, "after/02_second.sql", "INSERT INTO runs (script) VALUES ('02');")
    write(sql_dir, "after/01_first.sql", "INSERT INTO runs (script) VALUES ('01');")
    first = migrate(fresh_url, sql_dir)
    assert 0 == first.returncode, first.stderr
    assert ["migration_applied", "after_script_ran", "after_script_ran"] == [
        e for e in events(first.stderr) if e in ("migration_applied", "after_script_ran")]
    again = migrate(fresh_url, sql_dir)
    assert 0 == again.returncode, again.stderr
    assert "lock_acquired" in events(again.stderr)
    assert ["01", "02", "01", "02"] == [r[0] for r in db.execute("SELECT script FROM runs ORDER BY at")]
    assert ["0001_t.sql"] == [r[1] for r in ledger(db)]
    status = run_cli(["status", "--exit-code"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 0 == status.returncode and "1 migrations: 1 applied" in status.stdout


def test_a_failing_after_script_is_exit_5_naming_it_and_the_migrations_stay(fresh_url: str, sql_dir: Path,
                                                                           db: psycopg.Connection) -> None:
    """The migrations before it are kept and recorded; the failing script's own work is rolled back."""
    write(sql_dir, "0001_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "after/01_fails.sql", "INSERT INTO t VALUES (1);\nSELECT 1 / 0;\n")
    result = migrate(fresh_url, sql_dir)
    assert 5 == result.returncode
    error = last_error(result.stderr)
    assert (str(sql_dir / "after" / "01_fails.sql"), 2) == (error["file"], error["line"])
    assert "division by zero" in error["error"]
    assert ["0001_t.sql"] == [r[1] for r in ledger(db)]
    assert 0 == db.execute("SELECT count(*) FROM t").fetchone()[0]


def test_dry_run_lists_after_scripts_and_rehearse_runs_them(fresh_url: str, sql_dir: Path,
                                                            db: psycopg.Connection) -> None:
    """--dry-run shows them after the migrations; --rehearse runs them in its rolled-back transaction (exit 5)."""
    write(sql_dir, "0001_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "after/01_grant.sql", "SELECT 1 / (SELECT count(*) FROM t);")
    planned = migrate(fresh_url, sql_dir, "--dry-run")
    assert 8 == planned.returncode
    assert ["0001_t.sql", "01_grant.sql"] == [line.split()[4] for line in planned.stdout.splitlines()[1:3]]
    assert "1 file would run; then 1 after-migrate script" in planned.stdout
    rehearsed = migrate(fresh_url, sql_dir, "--rehearse")
    assert 5 == rehearsed.returncode
    assert "division by zero" in last_error(rehearsed.stderr)["error"]
    assert db.execute("SELECT to_regclass('t')").fetchone()[0] is None


# -- BOOTSTRAP_PASSWORD_COMMAND ----------------------------------------------------------------------------

TOKEN = "Tok3n-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[Cluster]:
    """A cluster that wants TOKEN as the password over TCP (scram-sha-256), not started."""
    cluster = Cluster(password=TOKEN)
    cluster.init()
    yield cluster
    cluster.destroy()


def test_the_password_command_runs_before_each_attempt_and_is_masked(token_cluster: Cluster, tmp_path: Path) -> None:
    """A wait that outlives a token gets a fresh one: the command runs at every attempt; its output never shows."""
    calls = tmp_path / "calls"
    command = f"echo call >> {calls}; printf '%s\\n' {TOKEN}"
    env = clean_env(DATABASE_URL=token_cluster.dsn(password=""), BOOTSTRAP_PASSWORD_COMMAND=command,
                    BOOTSTRAP_WAIT_TIMEOUT="60", BOOTSTRAP_LOG_LEVEL="debug")
    with Spawned(bootstrap_cmd("wait-db"), env) as proc:
        proc.wait_for_event("database_connect_retried")
        token_cluster.start()
        assert 0 == proc.wait(60), proc.err
    ready = next(e for e in proc.events() if e["event"] == "database_ready")
    assert ready["attempts"] == len(calls.read_text().splitlines()) >= 2
    assert TOKEN not in proc.err + proc.out
    wrong = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": f"printf 'x{TOKEN}'"})
    assert 3 == wrong.returncode
    assert "password authentication failed" in last_error(wrong.stderr)["error"]
    assert TOKEN not in wrong.stderr + wrong.stdout


def test_the_password_command_says_nothing_of_its_output_or_environment() -> None:
    """A leading NAME=value is not the program's name; its standard error is never quoted; --timeout bounds it."""
    env = clean_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/x", BOOTSTRAP_WAIT_TIMEOUT="3")
    prefixed = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": "TOKEN=SUPERSECRET1 getpw-missing"})
    assert 3 == prefixed.returncode
    assert "BOOTSTRAP_PASSWORD_COMMAND (getpw-missing ...) failed (exit 127)" in last_error(prefixed.stderr)["error"]
    noisy = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": "echo 'token AKIASECRETKEY123 rejected' >&2; "
                                                                        "exit 2"})
    assert 3 == noisy.returncode
    assert "SUPERSECRET1" not in prefixed.stderr and "AKIASECRETKEY123" not in noisy.stderr
    import time

    started = time.monotonic()
    slow = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": "sleep 40; echo pw"})
    assert 3 == slow.returncode and time.monotonic() - started < 20
    assert "did not finish within" in last_error(slow.stderr)["error"]


def test_a_failing_password_command_is_exit_3_naming_it(tmp_path: Path) -> None:
    """The command failed (or printed nothing): exit 3 at once, naming the variable and the program, no retries."""
    env = clean_env(DATABASE_URL="postgresql://postgres@127.0.0.1:1/x", BOOTSTRAP_WAIT_TIMEOUT="60")
    failed = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": "aws-token-helper --region eu"})
    assert 3 == failed.returncode
    error = last_error(failed.stderr)
    assert error["error"].startswith("BOOTSTRAP_PASSWORD_COMMAND (aws-token-helper ...) failed (exit 127)")
    assert "--region" not in error["error"]
    assert "database_connect_retried" not in events(failed.stderr)
    empty = run_cli(["wait-db"], {**env, "BOOTSTRAP_PASSWORD_COMMAND": "true"})
    assert 3 == empty.returncode
    assert "BOOTSTRAP_PASSWORD_COMMAND (true ...) printed no password" == last_error(empty.stderr)["error"]
    assert [] == [e for e in logs(empty.stderr) if e["event"] == "database_ready"]
