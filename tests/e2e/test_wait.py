"""wait-db in real processes: retries, backoff, permanent failures, timeouts, signals."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pgcluster import Cluster, free_port
from tests.helpers import Spawned, bootstrap_cmd, clean_env, events, last_error, logs, run_cli

SENTINEL = "S3ntinel-Pa55word"


def test_waits_for_a_server_that_starts_late(new_cluster, tmp_path: Path) -> None:
    """wait-db keeps retrying a refused port and succeeds once the server answers (each attempt at debug level)."""
    cluster = new_cluster()
    cluster.init()
    env = clean_env(DATABASE_URL=cluster.dsn(), BOOTSTRAP_WAIT_TIMEOUT="120", BOOTSTRAP_LOG_LEVEL="debug")
    with Spawned(bootstrap_cmd("wait-db"), env) as proc:
        first = proc.wait_for_event("database_connect_retried")
        assert "connection_refused" == first["error_type"]
        cluster.start(wait=False)
        assert 0 == proc.wait(60)
        retries = [e for e in proc.events() if e["event"] == "database_connect_retried"]
        assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
        assert all(0 < e["delay_s"] <= 1.0 for e in retries)
        assert retries[0]["delay_s"] < 0.1
        ready = [e for e in proc.events() if e["event"] == "database_ready"]
        assert 1 == len(ready)
        assert len(retries) + 1 == ready[0]["attempts"]


def test_backoff_grows_to_one_second(tmp_path: Path) -> None:
    """Pauses start at tens of milliseconds and grow, never beyond 1 s; then exit 4 with the last error."""
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_WAIT_TIMEOUT="4",
                    BOOTSTRAP_LOG_LEVEL="debug")
    result = run_cli(["wait-db"], env)
    assert 4 == result.returncode
    delays = [e["delay_s"] for e in logs(result.stderr) if e["event"] == "database_connect_retried"]
    assert delays[0] < 0.1
    assert max(delays) <= 1.0
    assert max(delays) >= 0.5
    failed = last_error(result.stderr)
    assert "Connection refused" in failed["error"]
    assert "connection_refused" == failed["error_type"]


def test_a_long_wait_says_so_once_then_every_five_seconds() -> None:
    """A wrong port waits out the timeout with a line at the first retry and one 5 s later, not one per attempt."""
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_WAIT_TIMEOUT="7")
    result = run_cli(["status"], env)
    assert 4 == result.returncode
    lines = [e for e in logs(result.stderr) if e["event"] == "database_connect_retried"]
    assert [1, 5] == [e["attempt"] if e["attempt"] == 1 else round(e["waited_s"] // 5 * 5) for e in lines]
    attempts = last_error(result.stderr)["attempts"]
    assert attempts > 8, attempts
    assert lines[1]["attempt"] < attempts
    assert all("Connection refused" in e["error"] for e in lines)
    assert len(result.stderr.splitlines()) == 3, result.stderr


def test_on_a_terminal_the_wait_is_one_updating_line() -> None:
    """On a TTY the wait is one line rewritten in place, cleared before the summary line."""
    import os
    import pty
    import subprocess

    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_WAIT_TIMEOUT="2")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(bootstrap_cmd("wait-db"), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=follower)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    assert 4 == proc.wait(30)
    text = screen.decode()
    updates = text.count("waiting for the database at 127.0.0.1:")
    assert updates >= 2, text
    assert "database_connect_retried" not in text
    assert text.count("\n") <= 2, text  # the one summary line (a terminal may end it with \r\n)
    assert "bootstrap_failed" in text.rsplit("\r\x1b[K", 1)[-1]


def test_unresolvable_host_is_transient() -> None:
    """A host that does not resolve (yet) is retried until the timeout: exit 4, not 3."""
    env = clean_env(DATABASE_URL="postgresql://postgres@db-not-yet-there.invalid/x", BOOTSTRAP_WAIT_TIMEOUT="1")
    result = run_cli(["wait-db"], env)
    assert 4 == result.returncode
    assert "dns_unresolved" == last_error(result.stderr)["error_type"]
    assert "database_connect_retried" in events(result.stderr)


@pytest.fixture(scope="module")
def password_cluster() -> Cluster:
    """A cluster that wants a password over TCP (scram-sha-256)."""
    cluster = Cluster(password=SENTINEL)
    cluster.start()
    cluster.wait_ready()
    yield cluster
    cluster.destroy()


def test_wrong_password_fails_fast_without_leaking(password_cluster: Cluster) -> None:
    """Authentication refused is permanent: exit 3 at once, and the password is never printed."""
    wrong = "Wr0ng-" + SENTINEL
    env = clean_env(DATABASE_URL=password_cluster.dsn(password=wrong), BOOTSTRAP_WAIT_TIMEOUT="60")
    result = run_cli(["wait-db"], env)
    assert 3 == result.returncode
    assert "database_connect_retried" not in events(result.stderr)
    assert "password authentication failed" in last_error(result.stderr)["error"]
    assert wrong not in result.stderr + result.stdout
    assert SENTINEL not in result.stderr + result.stdout


def test_right_password_from_a_file(password_cluster: Cluster, tmp_path: Path) -> None:
    """DATABASE_URL_FILE works with a password, which never appears in the logs."""
    secret = tmp_path / "db-url"
    secret.write_text(password_cluster.dsn() + "\n")
    result = run_cli(["wait-db"], clean_env(DATABASE_URL_FILE=str(secret)))
    assert 0 == result.returncode, result.stderr
    assert SENTINEL not in result.stderr + result.stdout
    ready = next(e for e in logs(result.stderr) if e["event"] == "database_ready")
    assert ("127.0.0.1", str(password_cluster.port), "postgres") == (ready["host"], ready["port"], ready["user"])


def test_unknown_database_is_permanent(pg_base_dsn: str) -> None:
    """A database that does not exist fails at once with exit 3."""
    from psycopg.conninfo import make_conninfo

    env = clean_env(DATABASE_URL=make_conninfo(pg_base_dsn, dbname="no_such_db_xyz"))
    result = run_cli(["wait-db"], env)
    assert 3 == result.returncode
    assert 'database "no_such_db_xyz" does not exist' in last_error(result.stderr)["error"]


def test_role_that_may_not_log_in_is_permanent(pg_base_dsn: str) -> None:
    """A NOLOGIN role fails at once with exit 3, like a wrong password: waiting cannot fix it."""
    import uuid

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    role = f"bootstrap_nologin_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_base_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        try:
            result = run_cli(["wait-db", "--timeout", "60"], clean_env(DATABASE_URL=make_conninfo(pg_base_dsn, user=role)))
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    assert 3 == result.returncode
    assert "database_connect_retried" not in events(result.stderr)
    assert f'role "{role}" is not permitted to log in' in last_error(result.stderr)["error"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"postgresql//postgres:{SENTINEL}@127.0.0.1/x", "DATABASE_URL is not a valid PostgreSQL connection string"),
        (f"postgresql://postgres:{SENTINEL}@127.0.0.1/x?sslmode=sometimes", "DATABASE_URL: unknown sslmode 'sometimes'"),
        (f"postgresql://postgres:{SENTINEL}@127.0.0.1:port/x", "DATABASE_URL"),
        (f"postgresql://postgres:{SENTINEL}@127.0.0.1/x?frobnicate=1", "unknown URL parameter 'frobnicate'"),
        (f"postgresql://postgres:P1@{SENTINEL}@127.0.0.1/x", "Percent-encode"),
    ],
    ids=["no-scheme-colon", "sslmode", "port", "unknown-param", "unencoded-at"],
)
def test_malformed_url_is_a_config_error_without_the_password(url: str, message: str) -> None:
    """A malformed URL exits 3 naming the variable, with the password masked."""
    result = run_cli(["wait-db"], clean_env(DATABASE_URL=url))
    assert 3 == result.returncode
    assert message in last_error(result.stderr)["error"]
    assert SENTINEL not in result.stderr + result.stdout


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_signal_while_waiting_exits_128_plus_n(sig: signal.Signals, code: int) -> None:
    """A stop signal during wait-db ends it at once with 128+N."""
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_WAIT_TIMEOUT="300")
    with Spawned(bootstrap_cmd("wait-db"), env) as proc:
        proc.wait_for_event("database_connect_retried")
        proc.proc.send_signal(sig)
        assert code == proc.wait(20)
        interrupted = [e for e in proc.events() if e["event"] == "bootstrap_interrupted"]
        assert sig.name == interrupted[0]["signal"]


def test_too_many_clients_is_waited_out(new_cluster) -> None:
    """A full server ('too many clients') is transient: wait-db succeeds once a slot frees up."""
    import psycopg

    cluster = new_cluster(settings=("max_connections=2", "superuser_reserved_connections=0"))
    cluster.start()
    cluster.wait_ready()
    held = [psycopg.connect(cluster.dsn()) for _ in range(2)]
    try:
        with Spawned(bootstrap_cmd("wait-db"), clean_env(DATABASE_URL=cluster.dsn())) as proc:
            retried = proc.wait_for_event("database_connect_retried")
            assert "too_many_connections" == retried["error_type"]
            held.pop().close()
            assert 0 == proc.wait(60)
    finally:
        for conn in held:
            conn.close()


def test_waits_the_whole_timeout() -> None:
    """wait-db makes its last attempt at --timeout, not a pause earlier."""
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/x", BOOTSTRAP_WAIT_TIMEOUT="1.5")
    result = run_cli(["wait-db"], env)
    assert 4 == result.returncode
    assert last_error(result.stderr)["waited_ms"] >= 1500
