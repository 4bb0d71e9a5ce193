"""
The images, built and run for real with podman: migrate, wait-db, both example
gateways (Python on the bootstrap image, Node with the bundle) answering after
bootstrap, tini as PID 1, non-root, secrets, signals, orphans.

Slow (minutes on a first run: a debootstrap base, then builds on vfs storage);
the base image and build layers are cached between runs.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import container
from pgcluster import free_port
from tests.container.containers import APP_PASSWORD, MIGRATOR_PASSWORD, Container, Process, superuser_url, url
from tests.helpers import REPO, ledger, poll, repo_versions

pytestmark = pytest.mark.container

# Each gateway: its image fixture, the app bootstrap execs, the uid it runs as.
GATEWAYS = {
    "python": ("gateway_image", ["python", "/app/gateway/server.py"], "10001"),
    "node": ("node_gateway_image", ["node", "server.js"], "1000"),
}
# An app that never installs a SIGTERM handler, in each image's own language.
SLEEPERS = {
    "python": ("bootstrap_image", "python -c 'import time; print(\"up\", flush=True); time.sleep(100000)'"),
    "node": ("node_gateway_image", "node -e 'console.log(\"up\"); setInterval(() => {}, 1e8)'"),
}


@pytest.fixture
def bootstrap_image(images: tuple[str, str]) -> str:
    """The bootstrap image (Python, venv)."""
    return images[0]


@pytest.fixture
def gateway_image(images: tuple[str, str]) -> str:
    """The Python example gateway image."""
    return images[1]


def app_of(gateway: Container) -> tuple[tuple[list[str], list[str]], list[Process]]:
    """tini's command line and environment (PID 1), and the app it runs (its one child), as the host sees them."""
    processes = gateway.processes()
    children = [p for p in processes if p.parent_host_pid == processes[0].host_pid]
    assert 1 == len(children), processes
    return (processes[0].argv, processes[0].env_names), children


def test_dockerfiles_pass_hadolint() -> None:
    """hadolint reports nothing at warning level or above."""
    containerfiles = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests" / "container" / "bases").glob("*"))
    result = subprocess.run(["hadolint", "--failure-threshold", "warning", "Dockerfile",
                             "examples/gateway/Dockerfile", "examples/node-gateway/Dockerfile",
                             "examples/prisma-users/Dockerfile", *containerfiles],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_migrate_and_wait_db_commands(images: tuple[str, str], fresh_db: str, pg_base_dsn: str,
                                      db: psycopg.Connection) -> None:
    """
    `IMAGE wait-db` and `IMAGE migrate` run those commands. The image holds no
    migrations of its own: migrate without any is exit 3 naming /app/sql; with
    the app's sql/ mounted there, it applies exactly those.
    """
    target = superuser_url(pg_base_dsn, fresh_db)
    bootstrap_image = images[0]
    waited = container.podman("run", "--rm", "--network", "host", "-e", f"DATABASE_URL={target}",
                              bootstrap_image, "wait-db", check=False)
    assert 0 == waited.returncode, waited.stderr
    bare = container.podman("run", "--rm", "--network", "host", "-e", f"DATABASE_URL={target}",
                            bootstrap_image, "migrate", check=False)
    assert 3 == bare.returncode, bare.stderr
    assert "migrations directory /app/sql does not exist" in bare.stderr
    assert [] == ledger(db)
    result = container.podman("run", "--rm", "--network", "host", "-e", f"DATABASE_URL={target}",
                              "-v", f"{REPO / 'sql'}:/app/sql:ro", bootstrap_image, "migrate", check=False)
    assert 0 == result.returncode, result.stderr
    assert repo_versions() == [row[0] for row in ledger(db)]
    version = container.podman("run", "--rm", bootstrap_image, "--version").stdout
    assert version.startswith("bootstrap ")


@pytest.mark.parametrize("kind", sorted(GATEWAYS))
def test_gateway_serves_after_bootstrap(kind: str, request: pytest.FixtureRequest, start, roles: dict[str, str],
                                        pg_base_dsn: str, tmp_path: Path) -> None:
    """
    Each gateway image (Python, Node with the bundle): bootstrap migrates and
    verifies as the migrator (a _FILE secret), then execs the gateway under tini
    as a non-root user holding only the app's connection; GET returns the seeded
    rows, encrypted values withheld; podman stop ends it cleanly.
    """
    fixture, app_argv, app_uid = GATEWAYS[kind]
    image = request.getfixturevalue(fixture)
    migrator_url = url(pg_base_dsn, roles["dbname"], roles["migrator"], MIGRATOR_PASSWORD)
    app_url = url(pg_base_dsn, roles["dbname"], roles["app"], APP_PASSWORD)
    secret = tmp_path / "migrator_url"
    secret.write_text(migrator_url + "\n")
    secret.chmod(0o644)
    port = free_port()
    gateway = start(image, env={"DATABASE_URL": app_url, "PORT": str(port),
                                "BOOTSTRAP_DATABASE_URL_FILE": "/run/secrets/migrator_url"},
                    volumes=[f"{secret}:/run/secrets/migrator_url:ro"])

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            assert gateway.state()["Running"], gateway.logs()
            return False

    poll(healthy, timeout=120, interval=0.2, message=f"the {kind} gateway to answer /healthz")
    names = [e.get("event") for e in gateway.events()]
    assert {"migration_applied", "verify_completed", "bootstrap_completed", "app_exec_started",
            "gateway_listening"} <= set(names), gateway.logs()
    assert MIGRATOR_PASSWORD not in gateway.logs() and APP_PASSWORD not in gateway.logs()

    with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
        assert repo_versions() == [row[0] for row in ledger(conn)]
        assert roles["migrator"] == conn.execute(
            "SELECT DISTINCT applied_by FROM bootstrap.bootstrap_migrations").fetchone()[0]
        conn.execute("INSERT INTO financial.integration_configs (integration_type, config_key, config_value)"
                     " VALUES ('stripe', 'api_url', 'https://api.stripe.test')")
        conn.execute("INSERT INTO financial.integration_configs (user_id, integration_type, config_key,"
                     " config_value, is_encrypted) VALUES ('66666666-6666-4666-8666-666666666666', 'stripe',"
                     " 'secret_key', 'sk_live_DO_NOT_SHOW', true)")

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/integrations/configs?integration_type=stripe",
                                timeout=5) as response:
        body = json.loads(response.read())
    rows = {(r["config_key"], r["user_id"]): r for r in body["configs"]}
    assert "https://api.stripe.test" == rows[("api_url", None)]["config_value"]
    assert rows[("api_url", None)]["is_global"] is True
    encrypted = rows[("secret_key", "66666666-6666-4666-8666-666666666666")]
    assert (None, True) == (encrypted["config_value"], encrypted["value_redacted"])
    assert b"sk_live_DO_NOT_SHOW" not in json.dumps(body).encode()

    (tini, tini_env), (app,) = app_of(gateway)
    assert "tini" == Path(tini[0]).name
    assert app_argv == app.argv
    exec_line = next(e for e in gateway.events() if e.get("event") == "app_exec_started")
    assert exec_line["pid"] == app.pid  # bootstrap exec'd the gateway over its own PID, a child of tini
    assert app_uid == app.uid
    assert "DATABASE_URL" in app.env_names
    # exactly what the container gave PID 1, minus the migrator's connection
    assert sorted(set(tini_env) - {"BOOTSTRAP_DATABASE_URL_FILE"}) == app.env_names

    container.podman("stop", "-t", "10", gateway.name)
    assert 0 == gateway.state()["ExitCode"]


@pytest.mark.parametrize("kind", sorted(SLEEPERS))
def test_app_without_signal_handler_stops_on_sigterm(kind: str, request: pytest.FixtureRequest, start) -> None:
    """tini forwards SIGTERM: an app that never installed a handler dies of it (143), not of SIGKILL (137)."""
    fixture, app = SLEEPERS[kind]
    sleeper = start(request.getfixturevalue(fixture), "--no-wait", "--no-migrate", "--no-verify", "sh", "-c",
                    f"exec {app}")
    poll(lambda: "up" in sleeper.logs(), timeout=60, message="the app to start")
    container.podman("stop", "-t", "10", sleeper.name)
    assert 143 == sleeper.state()["ExitCode"]


@pytest.mark.parametrize("kind", sorted(SLEEPERS))
def test_orphans_are_reaped(kind: str, request: pytest.FixtureRequest, start) -> None:
    """A child orphaned by the app is reaped by tini (PID 1) when it exits: no zombie stays."""
    fixture, app = SLEEPERS[kind]
    orphaner = start(request.getfixturevalue(fixture), "sh", "-c", f"(sleep 0.5 &); exec {app}",
                     env={"BOOTSTRAP_NO_WAIT": "1", "BOOTSTRAP_NO_MIGRATE": "1", "BOOTSTRAP_NO_VERIFY": "1"})
    poll(lambda: "up" in orphaner.logs(), timeout=60, message="the app to start")

    def left() -> list[str]:
        return [f"{p.name}:{p.state}" for p in orphaner.processes() if p.name == "sleep" or p.state == "Z"]

    poll(lambda: [] == left(), timeout=30, interval=0.2,
         message="the orphaned sleep to exit and be reaped (a zombie would stay)")
