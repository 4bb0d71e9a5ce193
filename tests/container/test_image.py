"""
The image, built and run for real with podman: migrate, wait-db, the example
gateway answering after bootstrap, tini as PID 1, non-root, secrets.

Slow (minutes on a first run: a debootstrap base, then builds on vfs storage);
the base image and build layers are cached between runs.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import container
from pgcluster import free_port
from tests.helpers import REPO, ledger, poll

pytestmark = pytest.mark.container

MIGRATOR_PASSWORD = "M1grator-" + uuid.uuid4().hex[:10]
APP_PASSWORD = "App-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def images() -> tuple[str, str]:
    """The bootstrap image and the example gateway image, built on the local debootstrap base."""
    try:
        return container.build_images()
    except Exception as exc:  # noqa: BLE001 - a build that cannot run must fail the suite, not skip
        pytest.fail(f"could not build the images with podman: {exc}")


def url(base_dsn: str, dbname: str, user: str, password: str) -> str:
    """A URL for `user` on the test server, reachable from a --network host container."""
    params = conninfo_to_dict(base_dsn)
    host = params.get("host", "127.0.0.1")
    if host.startswith("/"):
        host = "127.0.0.1"
    return f"postgresql://{user}:{password}@{host}:{params.get('port', '5432')}/{dbname}"


@pytest.fixture
def roles(admin: psycopg.Connection, fresh_db: str) -> Iterator[dict[str, str]]:
    """A migrator role (creates objects) and the app's least-privilege role, as a DBA would provision them."""
    suffix = uuid.uuid4().hex[:8]
    migrator, app = f"bootstrap_migrator_{suffix}", f"gateway_app_{suffix}"
    dbname = conninfo_to_dict(fresh_db)["dbname"]
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(migrator), sql.Literal(MIGRATOR_PASSWORD)))
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(app), sql.Literal(APP_PASSWORD)))
    admin.execute(sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(sql.Identifier(dbname), sql.Identifier(migrator)))
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for statement in (
            "GRANT CREATE ON SCHEMA public TO {m}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {m} GRANT USAGE ON SCHEMAS TO {a}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {m} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {a}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {m} GRANT USAGE ON SEQUENCES TO {a}",
        ):
            conn.execute(sql.SQL(statement).format(m=sql.Identifier(migrator), a=sql.Identifier(app)))
    try:
        yield {"migrator": migrator, "app": app, "dbname": dbname}
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        for role in (migrator, app):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


class Container:
    """A detached container and what it printed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def logs(self) -> str:
        result = container.podman("logs", self.name, check=False)
        return (result.stdout or "") + (result.stderr or "")

    def events(self) -> list[dict]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def state(self) -> dict:
        return json.loads(container.podman("inspect", self.name).stdout)[0]["State"]

    def python(self, code: str) -> str:
        """Run Python inside the container (as its user) and return stdout."""
        return container.podman("exec", self.name, "python", "-c", code).stdout


@pytest.fixture
def start(images: tuple[str, str]) -> Iterator:
    """Start detached containers (--network host); all removed afterwards."""
    started: list[Container] = []

    def run(image: str, *args: str, env: dict[str, str] | None = None, volumes: list[str] | None = None) -> Container:
        name = f"bootstrap-test-{uuid.uuid4().hex[:10]}"
        cmd = ["run", "-d", "--name", name, "--network", "host"]
        for key, value in (env or {}).items():
            cmd += ["-e", f"{key}={value}"]
        for volume in volumes or []:
            cmd += ["-v", volume]
        container.podman(*cmd, image, *args)
        started.append(Container(name))
        return started[-1]

    yield run
    for c in started:
        container.podman("rm", "-f", "-t", "0", c.name, check=False)


FIND_APP = """
import os, sys
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    try:
        cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
    except OSError:
        continue
    if len(cmd) > 1 and cmd[1].endswith(b'server.py'):  # python server.py (tini's argv mentions it too)
        status = open(f'/proc/{pid}/status').read()
        uid = [l.split()[1] for l in status.splitlines() if l.startswith('Uid:')][0]
        env = [e.split(b'=')[0].decode() for e in open(f'/proc/{pid}/environ', 'rb').read().split(b'\\0') if e]
        print(pid, uid, ','.join(sorted(env)))
        break
"""


def test_dockerfiles_pass_hadolint() -> None:
    """hadolint reports nothing at warning level or above."""
    result = subprocess.run(["hadolint", "--failure-threshold", "warning", "Dockerfile",
                             "examples/gateway/Dockerfile", "examples/node-gateway/Dockerfile"],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert 0 == result.returncode, result.stdout + result.stderr


def test_migrate_and_wait_db_commands(images: tuple[str, str], fresh_db: str, pg_base_dsn: str,
                                      db: psycopg.Connection) -> None:
    """`IMAGE wait-db` and `IMAGE migrate` run those commands; the image carries sql/."""
    target = url(pg_base_dsn, conninfo_to_dict(fresh_db)["dbname"], conninfo_to_dict(pg_base_dsn).get("user", "postgres"),
                 conninfo_to_dict(pg_base_dsn).get("password", ""))
    bootstrap_image = images[0]
    for command in ("wait-db", "migrate"):
        result = container.podman("run", "--rm", "--network", "host", "-e", f"DATABASE_URL={target}",
                                  bootstrap_image, command, check=False)
        assert 0 == result.returncode, result.stderr
    assert [1, 2, 3] == [row[0] for row in ledger(db)]
    version = container.podman("run", "--rm", bootstrap_image, "--version").stdout
    assert version.startswith("bootstrap ")


def test_gateway_serves_after_bootstrap(images: tuple[str, str], start, roles: dict[str, str], pg_base_dsn: str,
                                        tmp_path: Path, admin: psycopg.Connection) -> None:
    """
    The gateway image: bootstrap migrates and verifies as the migrator (a _FILE
    secret), then execs the gateway as a non-root user holding only the app's
    connection; GET returns the seeded rows, encrypted values withheld; podman
    stop ends it cleanly.
    """
    migrator_url = url(pg_base_dsn, roles["dbname"], roles["migrator"], MIGRATOR_PASSWORD)
    app_url = url(pg_base_dsn, roles["dbname"], roles["app"], APP_PASSWORD)
    secret = tmp_path / "migrator_url"
    secret.write_text(migrator_url + "\n")
    secret.chmod(0o644)
    port = free_port()
    gateway = start(images[1], env={"DATABASE_URL": app_url, "PORT": str(port),
                                    "BOOTSTRAP_DATABASE_URL_FILE": "/run/secrets/migrator_url"},
                    volumes=[f"{secret}:/run/secrets/migrator_url:ro"])

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            assert gateway.state()["Running"], gateway.logs()
            return False

    poll(healthy, timeout=120, interval=0.2, message="the gateway to answer /healthz")
    names = [e.get("event") for e in gateway.events()]
    assert {"migration_applied", "verify_completed", "bootstrap_completed", "app_exec_started",
            "gateway_listening"} <= set(names), gateway.logs()
    assert MIGRATOR_PASSWORD not in gateway.logs() and APP_PASSWORD not in gateway.logs()

    with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
        assert [1, 2, 3] == [row[0] for row in ledger(conn)]
        assert roles["migrator"] == conn.execute(
            "SELECT DISTINCT applied_by FROM bootstrap_migrations").fetchone()[0]
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

    pid, uid, env_names = gateway.python(FIND_APP).split()
    assert "tini" in gateway.python("print(open('/proc/1/cmdline').read().split(chr(0))[0])")
    exec_line = [e for e in gateway.events() if e.get("event") == "app_exec_started"][0]
    assert str(exec_line["pid"]) == pid  # bootstrap exec'd the gateway over its own PID, a child of tini
    assert "10001" == uid
    assert "DATABASE_URL" in env_names.split(",")
    assert not [n for n in env_names.split(",") if n.startswith("BOOTSTRAP_DATABASE_URL")]

    container.podman("stop", "-t", "10", gateway.name)
    assert 0 == gateway.state()["ExitCode"]


def test_app_without_signal_handler_stops_on_sigterm(images: tuple[str, str], start) -> None:
    """tini forwards SIGTERM: an app that never installed a handler dies of it (143), not of SIGKILL (137)."""
    app = start(images[0], "--no-wait", "--no-migrate", "--no-verify",
                "python", "-c", "import time; print('up', flush=True); time.sleep(100000)")
    poll(lambda: "up" in app.logs(), timeout=60, message="the app to start")
    container.podman("stop", "-t", "10", app.name)
    assert 143 == app.state()["ExitCode"]


def test_orphans_are_reaped(images: tuple[str, str], start) -> None:
    """A child orphaned by the app is reaped by tini (PID 1) when it exits: no zombie stays."""
    app = start(images[0], "sh", "-c",
                "(sleep 0.5 &); echo up; exec python -c 'import time; time.sleep(100000)'",
                env={"BOOTSTRAP_NO_WAIT": "1", "BOOTSTRAP_NO_MIGRATE": "1", "BOOTSTRAP_NO_VERIFY": "1"})
    poll(lambda: "up" in app.logs(), timeout=60, message="the app to start")
    sleepers = """
import os
found = []
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            status = open(f'/proc/{pid}/status').read()
        except OSError:
            continue
        fields = dict(l.split(':', 1) for l in status.splitlines() if ':' in l)
        if fields['Name'].strip() == 'sleep' or fields['State'].strip().startswith('Z'):
            found.append(pid + ':' + fields['State'].strip())
print(' '.join(found))
"""
    poll(lambda: app.python(sleepers).strip() == "", timeout=30, interval=0.2,
         message="the orphaned sleep to exit and be reaped (a zombie would stay)")
