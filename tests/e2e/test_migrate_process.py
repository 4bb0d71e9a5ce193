"""migrate in real processes: racing runners, signals mid-migration, logs, secrets."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from bootstrap.pg import advisory_key
from tests.helpers import Spawned, bootstrap_cmd, clean_env, events, ledger, logs, poll, run_cli, table_exists, write

SENTINEL = "S3ntinel-Pa55word"


def with_password(url: str) -> str:
    """The same URL carrying a password (trust auth ignores it; the logs must not show it)."""
    return url.replace("postgres@", f"postgres:{SENTINEL}@", 1)


def test_racing_runners_apply_each_file_once(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """Six runners started at once: every file applied exactly once, every runner succeeds."""
    write(sql_dir, "1_counter.sql", "CREATE TABLE applied (file int PRIMARY KEY);")
    for n in range(2, 31):
        write(sql_dir, f"{n}_m.sql", f"CREATE TABLE t{n} (id int);\nINSERT INTO applied VALUES ({n});\n")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    procs = [subprocess.Popen(bootstrap_cmd("migrate"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(120), p.communicate()) for p in procs]
    assert [0] * 6 == [code for code, _ in results], [err for _, (_, err) in results]
    applied = sum(len([e for e in logs(err) if e["event"] == "migration_applied"]) for _, (_, err) in results)
    assert 30 == applied
    assert 29 == db.execute("SELECT count(*) FROM applied").fetchone()[0]
    assert 30 == len(ledger(db))


def test_sigterm_mid_migration_keeps_nothing_and_releases_the_lock(fresh_url: str, sql_dir: Path,
                                                                   db: psycopg.Connection) -> None:
    """SIGTERM while a file runs: exit 143, the file rolled back, the query cancelled, the lock free."""
    write(sql_dir, "1_slow.sql", "CREATE TABLE half (id int);\nSELECT pg_sleep(300);\n")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    with Spawned(bootstrap_cmd("migrate"), env) as proc:
        poll(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(300)%%'"
                                " AND pid <> pg_backend_pid()").fetchone()[0], message="the slow file to run")
        proc.proc.send_signal(signal.SIGTERM)
        assert 143 == proc.wait(30)
        interrupted = proc.events()[-1]
    assert "bootstrap_interrupted" == interrupted["event"]
    assert str(sql_dir / "1_slow.sql") == interrupted["file"]
    assert "the file was rolled back; nothing of it was kept" == interrupted["outcome"]
    assert not table_exists(db, "half")
    assert [] == ledger(db)
    poll(lambda: not db.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(300)%%'"
                                " AND pid <> pg_backend_pid()").fetchone()[0], message="the query to end")
    assert db.execute("SELECT pg_try_advisory_lock(%s)", [advisory_key("public", "bootstrap_migrations")]).fetchone()[0]


def test_logs_are_json_lines_on_stderr(fresh_url: str, sql_dir: Path) -> None:
    """Off a TTY: one JSON object per line on stderr with event, level and an ISO UTC timestamp; stdout empty."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["migrate"], clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir)))
    assert 0 == result.returncode
    assert "" == result.stdout
    for entry in logs(result.stderr):
        assert entry["event"].replace("_", "").isalpha() and entry["event"].islower()
        assert entry["level"] in ("debug", "info", "warning", "error")
        assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"]
    names = [n for n in events(result.stderr) if not n.startswith("lint_")]  # what squawk finds is lint's business
    assert ["database_ready", "lock_acquired", "schema_created", "ledger_created", "migration_applied",
            "bootstrap_completed"] == names
    summary = logs(result.stderr)[-1]
    assert (1, 0) == (summary["migrations_applied"], summary["repeatables_applied"])
    assert isinstance(summary["duration_ms"], int)


def test_console_logs_on_a_tty(fresh_url: str, sql_dir: Path) -> None:
    """On a TTY the logs are human-readable lines, not JSON."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(bootstrap_cmd("migrate"), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert 0 == proc.wait(60)
    text = b"".join(chunks).decode()
    assert "migration_applied" in text
    assert not text.lstrip().startswith("{")


def test_password_never_printed(fresh_url: str, sql_dir: Path) -> None:
    """A password in DATABASE_URL appears in no output: success, failure, status, debug level."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "2_bad.sql", "SELECT * FROM nope;")
    env = clean_env(DATABASE_URL=with_password(fresh_url), BOOTSTRAP_SQL_DIR=str(sql_dir),
                    BOOTSTRAP_LOG_LEVEL="debug")
    outputs = [run_cli(args, env) for args in (["migrate"], ["status"], ["status", "--json"], ["wait-db"],
                                               ["run", "--", "true"])]
    assert [5, 0, 0, 0, 5] == [r.returncode for r in outputs]
    for result in outputs:
        assert SENTINEL not in result.stdout + result.stderr


def test_status_json_goes_to_stdout(fresh_url: str, sql_dir: Path) -> None:
    """status --json prints one JSON document on stdout; --exit-code exits 8 when behind."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    write(sql_dir, "2_u.sql", "CREATE TABLE u (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    result = run_cli(["status", "--json"], env)
    assert 0 == result.returncode
    doc = json.loads(result.stdout)
    assert [("1_t.sql", "pending"), ("2_u.sql", "pending")] == [(m["name"], m["state"]) for m in doc["migrations"]]
    assert 8 == run_cli(["status", "--exit-code"], env).returncode
    assert 0 == run_cli(["migrate"], env).returncode
    result = run_cli(["status", "--json", "--exit-code"], env)
    assert 0 == result.returncode
    assert json.loads(result.stdout)["up_to_date"] is True


def test_status_shows_changed_and_missing(fresh_url: str, sql_dir: Path) -> None:
    """status reports drift as states and exits 0; migrate refuses it with exit 6 naming each file."""
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    a = write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    b = write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    write(sql_dir, "3_c.sql", "CREATE TABLE c (id int);")
    assert 0 == run_cli(["migrate"], env).returncode
    a.write_text("CREATE TABLE a (id bigint);")
    b.unlink()  # missing below the newest local file (above it would be `future`)
    result = run_cli(["status", "--json"], env)
    assert 0 == result.returncode
    assert {"1_a.sql": "changed", "2_b.sql": "missing", "3_c.sql": "applied"} == {
        m["name"]: m["state"] for m in json.loads(result.stdout)["migrations"]}
    result = run_cli(["migrate"], env)
    assert 6 == result.returncode
    error = next(e for e in logs(result.stderr) if e["event"] == "bootstrap_failed")["error"]
    assert "1_a.sql" in error and "2_b.sql" in error


def test_status_table_keeps_its_columns(fresh_url: str, sql_dir: Path) -> None:
    """The human status table: every cell under its heading, a pending file's detail under DETAIL."""
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    write(sql_dir, "3_c.sql", "CREATE TABLE c (id int);")
    assert 0 == run_cli(["migrate"], env).returncode
    write(sql_dir, "1_early.sql", "CREATE TABLE early (id int);")
    write(sql_dir, "4_d.sql", "CREATE TABLE d (id int);")
    result = run_cli(["status"], env)
    assert 0 == result.returncode, result.stderr
    header, *lines = result.stdout.splitlines()
    columns = {name: header.index(name) for name in ("VERSION", "STATE", "NAME", "APPLIED AT", "DETAIL")}
    rows = {line.split()[2]: line for line in lines[:3]}
    assert set(rows) == {"1_early.sql", "3_c.sql", "4_d.sql"}
    for name, line in rows.items():
        assert line[columns["NAME"]:].startswith(name)
    assert rows["3_c.sql"][columns["APPLIED AT"]:].startswith("20")
    assert rows["1_early.sql"][columns["DETAIL"]:].startswith("out of order")
    assert rows["1_early.sql"][columns["STATE"]:].startswith("pending")


def test_entrypoint_dispatches(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """entrypoint.py runs bootstrap commands by name and treats anything else as the app."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    entry = str(Path(__file__).resolve().parents[2] / "entrypoint.py")
    assert 0 == subprocess.run([sys.executable, entry, "migrate"], env=env, capture_output=True, check=False).returncode
    assert [(1, "1_t.sql", "versioned")] == ledger(db)
    with subprocess.Popen([sys.executable, entry, sys.executable, "-c", "import os; print(os.getpid())"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate(timeout=60)
    assert 0 == proc.returncode, err
    assert proc.pid == int(out)
    version = subprocess.run([sys.executable, entry, "--version"], env=env, capture_output=True, text=True, check=False)
    assert version.stdout.startswith("bootstrap ")


def test_a_start_with_nothing_to_do_loads_nothing_of_the_apply_path(fresh_url: str, sql_dir: Path) -> None:
    """
    The container's common start (everything applied) stays lean: no SQL lexer, no
    applier, no linter, no rehearsal, no retry library is even imported.
    """
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    env = clean_env(DATABASE_URL=fresh_url, BOOTSTRAP_SQL_DIR=str(sql_dir))
    assert 0 == run_cli(["migrate"], env).returncode
    code = ("import sys\nfrom bootstrap._entry import run_cli\ntry:\n    run_cli(['migrate'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0, e.code\n"
            "heavy = ('bootstrap.sqlsplit', 'bootstrap.pg.applier', 'bootstrap.lint',\n"
            "         'bootstrap.pg.failure', 'bootstrap.render', 'tenacity')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert "[]" == out.stdout.strip(), out.stderr
