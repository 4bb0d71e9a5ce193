"""`bootstrap run` in real processes: exec, PID, signals, exit status, environment."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.helpers import bootstrap_cmd, clean_env, events, ledger, logs, run_cli, write

PY = sys.executable


def env_for(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """The environment a container would give bootstrap."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), **extra)


def test_app_keeps_the_pid(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """The app's PID is the PID that was spawned: bootstrap exec'd, it did not fork."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["run", "--", PY, "-c", "import os; print(os.getpid())"], env_for(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    proc_pid = int(result.stdout.strip())
    # run_cli's child is the bootstrap process; compare with a Popen we control:
    proc = subprocess.Popen(bootstrap_cmd("run", "--", PY, "-c", "import os; print(os.getpid())"),
                            env=env_for(fresh_url, sql_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert 0 == proc.returncode, err
    assert proc.pid == int(out.strip())
    assert proc_pid > 0
    assert [(1, "1_t.sql", "versioned")] == ledger(db)
    assert ["bootstrap_completed", "app_exec_started"] == events(err)[-2:]


def test_exit_status_is_the_apps(fresh_url: str, sql_dir: Path) -> None:
    """The container's exit status is the app's."""
    result = run_cli(["run", "--", PY, "-c", "raise SystemExit(42)"], env_for(fresh_url, sql_dir))
    assert 42 == result.returncode


def test_sigterm_reaches_the_app(fresh_url: str, sql_dir: Path) -> None:
    """SIGTERM sent to the spawned PID is handled by the app itself."""
    # The handler writes with os.write: a print() there can land inside the main thread's print of
    # "ready" and fail as a reentrant call (seen with Debian's Python 3.11.2 under load).
    app = ("import os, signal, sys, time\n"
           "def bye(n, f):\n    os.write(1, f'got {n}\\n'.encode()); sys.exit(0)\n"
           "signal.signal(signal.SIGTERM, bye)\nprint('ready', flush=True)\n"
           "while True: time.sleep(0.05)\n")
    with subprocess.Popen(bootstrap_cmd("run", "--", PY, "-c", app), env=env_for(fresh_url, sql_dir),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            assert "ready\n" == proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            assert f"got {int(signal.SIGTERM)}\n" == proc.stdout.readline()
            assert 0 == proc.wait(timeout=30)
        finally:
            proc.kill()


def test_app_gets_default_signal_dispositions(fresh_url: str, sql_dir: Path) -> None:
    """Python ignores SIGPIPE; the exec'd app must not inherit that (nothing ignored, nothing blocked)."""
    result = run_cli(["run", "--", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], env_for(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    assert ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"] == result.stdout.split("\n")[:2]


def test_command_not_found_is_127_and_nothing_ran(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """A missing command exits 127 before anything touches the database."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["run", "--", "no-such-command-xyz"], env_for(fresh_url, sql_dir))
    assert 127 == result.returncode
    assert "no-such-command-xyz: command not found" in result.stderr
    assert [] == ledger(db)


def test_command_not_executable_is_126(fresh_url: str, sql_dir: Path, tmp_path: Path) -> None:
    """A file without the execute bit exits 126."""
    script = write(tmp_path, "app.sh", "#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_cli(["run", "--", str(script)], env_for(fresh_url, sql_dir))
    assert 126 == result.returncode
    assert "permission denied" in result.stderr


def test_missing_command_is_a_usage_error(fresh_url: str, sql_dir: Path) -> None:
    """`run --` with nothing after it exits 2."""
    result = run_cli(["run", "--"], env_for(fresh_url, sql_dir))
    assert 2 == result.returncode
    assert "missing command" in result.stderr


def test_migrator_connection_hidden_from_the_app(fresh_url: str, sql_dir: Path, tmp_path: Path,
                                                 db: psycopg.Connection) -> None:
    """BOOTSTRAP_DATABASE_URL(_FILE) migrate, then vanish; the app keeps its own DATABASE_URL."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    secret = write(tmp_path, "migrator-url", fresh_url + "\n")
    show = [PY, "-c", "import os; print(sorted(k for k in os.environ if 'DATABASE_URL' in k))"]
    env = env_for("postgresql://app@unreachable.invalid/app", sql_dir, BOOTSTRAP_DATABASE_URL_FILE=str(secret))
    result = run_cli(["run", "--", *show], env)
    assert 0 == result.returncode, result.stderr
    assert "['DATABASE_URL']" == result.stdout.strip()
    assert [(1, "1_t.sql", "versioned")] == ledger(db)
    env = env_for("postgresql://app@unreachable.invalid/app", sql_dir, BOOTSTRAP_DATABASE_URL=fresh_url)
    result = run_cli(["run", "--", *show], env)
    assert "['DATABASE_URL']" == result.stdout.strip()


def test_no_migrate_replica_does_not_migrate(fresh_url: str, sql_dir: Path, db: psycopg.Connection) -> None:
    """`run --no-migrate` waits then execs without touching the ledger."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["run", "--no-migrate", "--", "true"], env_for(fresh_url, sql_dir))
    assert 0 == result.returncode, result.stderr
    assert [] == ledger(db)
    assert "database_ready" in events(result.stderr)


def test_no_wait_makes_one_attempt(sql_dir: Path) -> None:
    """`run --no-wait` against a closed port fails at once with exit 4 (no retries)."""
    from pgcluster import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    result = run_cli(["run", "--no-wait", "--", "true"], env_for(url, sql_dir))
    assert 4 == result.returncode
    assert "database_connect_retried" not in events(result.stderr)


def test_migration_failure_stops_the_app(fresh_url: str, sql_dir: Path) -> None:
    """When migrate fails, the app never starts and the exit code says why."""
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);\nSELECT * FROM nope;\n")
    result = run_cli(["run", "--", PY, "-c", "print('app started')"], env_for(fresh_url, sql_dir))
    assert 5 == result.returncode
    assert "" == result.stdout


def test_python_m_and_console_script_agree(fresh_url: str, sql_dir: Path) -> None:
    """Both `python -m bootstrap` and the installed `bootstrap` script run."""
    script = Path(sys.executable).parent / "bootstrap"
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    by_module = run_cli(["--version"])
    assert (0, result.stdout) == (by_module.returncode, by_module.stdout)
    assert result.stdout.startswith("bootstrap ")


def test_replica_without_wait_migrate_or_verify_needs_no_database(sql_dir: Path) -> None:
    """`run --no-wait --no-migrate --no-verify` execs without contacting the database at all."""
    from pgcluster import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    result = run_cli(["run", "--no-wait", "--no-migrate", "--no-verify", "--", "echo", "up"], env_for(url, sql_dir))
    assert (0, "up\n") == (result.returncode, result.stdout)
    env = env_for(url, sql_dir, BOOTSTRAP_NO_WAIT="1", BOOTSTRAP_NO_MIGRATE="true", BOOTSTRAP_NO_VERIFY="yes")
    by_variables = run_cli(["run", "--", "echo", "up"], env)
    assert (0, "up\n") == (by_variables.returncode, by_variables.stdout)


def test_mistyped_run_option_is_a_usage_error(fresh_url: str, sql_dir: Path) -> None:
    """`run --no-wiat -- app` is refused (exit 2), not run as a command called --no-wiat."""
    result = run_cli(["run", "--no-wiat", "--", "true"], env_for(fresh_url, sql_dir))
    assert 2 == result.returncode
    error = json.loads(result.stderr.strip().splitlines()[-1])
    assert "bootstrap_failed" == error["event"] and "--no-wiat" in error["error"]


def test_usage_errors_are_json_lines_off_a_tty(fresh_url: str, sql_dir: Path) -> None:
    """Off a TTY every stderr line is JSON, usage errors included."""
    for args in (["rollback"], ["status", "--timeout", "soon"], ["nonsense"]):
        result = run_cli(args, env_for(fresh_url, sql_dir))
        assert 2 == result.returncode
        assert ["bootstrap_failed"] == [json.loads(line)["event"] for line in result.stderr.splitlines()]


def test_script_without_shebang_runs_with_sh(fresh_url: str, sql_dir: Path, tmp_path: Path) -> None:
    """An executable text file without #! runs under /bin/sh, as shells do."""
    script = write(tmp_path, "app", "echo from-sh $0\n")
    script.chmod(0o755)
    result = run_cli(["run", "--no-migrate", "--", str(script)], env_for(fresh_url, sql_dir))
    assert (0, f"from-sh {script}\n") == (result.returncode, result.stdout)


def test_a_script_whose_interpreter_is_missing_is_127_with_one_summary(fresh_url: str, sql_dir: Path,
                                                                      tmp_path: Path) -> None:
    """A #! naming a missing interpreter: exit 127 before anything, one summary line naming the interpreter."""
    script = write(tmp_path, "app", "#!/usr/bin/no-such-interpreter\necho never\n")
    script.chmod(0o755)
    write(sql_dir, "1_t.sql", "CREATE TABLE t (id int);")
    result = run_cli(["run", "--", str(script)], env_for(fresh_url, sql_dir))
    assert 127 == result.returncode
    summaries = [e for e in logs(result.stderr) if e["event"] in ("bootstrap_completed", "bootstrap_failed")]
    assert ["bootstrap_failed"] == [e["event"] for e in summaries]
    assert "/usr/bin/no-such-interpreter" in summaries[0]["error"]
    assert "database_ready" not in [e["event"] for e in logs(result.stderr)]
