"""
The compose set's three parts side by side (issue 20): PostgreSQL (the test
server), the api-gateway (Python or Node image: bootstrap waits, migrates,
verifies, execs it) and the users service (examples/prisma-users: bootstrap's
wait, Prisma's own `migrate deploy`, then its app), each with its own role and
started at the same moment; one user written through the users service is read
back through the gateway's integration configs.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import container
from pgcluster import free_port
from tests.container.containers import APP_PASSWORD, MIGRATOR_PASSWORD, Container, url
from tests.helpers import poll

pytestmark = pytest.mark.container

USERS_PASSWORD = "Users-" + uuid.uuid4().hex[:10]
# The users service's DATABASE_URL as Prisma users write it, query parameters and all.
PRISMA_PARAMS = "?schema=public&connection_limit=5&pool_timeout=10"
GATEWAYS = {"python": "gateway_image", "node": "node_gateway_image"}


@pytest.fixture
def gateway_image(images: tuple[str, str]) -> str:
    """The Python example gateway image (FROM the bootstrap image)."""
    return images[1]


@pytest.fixture
def users_role(roles: dict[str, str], admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[str]:
    """The users service's role, as examples/compose/initdb provisions it: CONNECT, and CREATE on schema public."""
    role = f"users_service_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(USERS_PASSWORD)))
    admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(roles["dbname"]),
                                                                      sql.Identifier(role)))
    with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(role)))
    yield role
    # the database goes first: the role owns what Prisma created in it
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(roles["dbname"])))
    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def answer(method: str, port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """An HTTP request to a container's port: its status and JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http to a local port only
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_healthy(service: Container, port: int, what: str) -> float:
    """Poll /healthz until it answers (the container must keep running meanwhile); the seconds it took."""
    began = time.monotonic()

    def healthy() -> bool:
        try:
            return answer("GET", port, "/healthz")[0] == 200
        except OSError:
            assert service.state()["Running"], f"{what} stopped:\n{service.logs()}"
            return False

    poll(healthy, timeout=180, interval=0.2, message=f"{what} to answer /healthz")
    return time.monotonic() - began


def start_users_service(start: Callable[..., Container], image: str, pg_base_dsn: str, dbname: str,
                        role: str, secret: Path | None = None) -> tuple[Container, int]:
    """The users service, its URL carrying Prisma's query parameters: DATABASE_URL, or a _FILE secret as compose has."""
    port = free_port()
    users_url = url(pg_base_dsn, dbname, role, USERS_PASSWORD) + PRISMA_PARAMS
    if secret is None:
        return start(image, env={"DATABASE_URL": users_url, "PORT": str(port)}), port
    secret.write_text(users_url + "\n")
    secret.chmod(0o644)
    return start(image, env={"DATABASE_URL_FILE": "/run/secrets/users_url", "PORT": str(port)},
                 volumes=[f"{secret}:/run/secrets/users_url:ro"]), port


def test_users_service_waits_migrates_then_execs_its_app(start: Callable[..., Container], prisma_users_image: str,
                                                        roles: dict[str, str], users_role: str, pg_base_dsn: str,
                                                        summary_line: Callable[[str], None]) -> None:
    """
    The users service alone: bootstrap waits, Prisma migrates the users table and
    nothing of the gateway, the app is exec'd under tini as `node`, writes users,
    stops with 0 on `podman stop`, and restarts with nothing to apply.
    """
    service, port = start_users_service(start, prisma_users_image, pg_base_dsn, roles["dbname"], users_role)
    took = wait_healthy(service, port, "the users service")
    summary_line(f"Prisma users service container: healthy {took:.1f} s after start (wait, migrate deploy, exec)")
    logs = service.logs()
    assert "database_ready" in [e.get("event") for e in service.events()], logs
    assert "All migrations have been successfully applied." in logs
    assert USERS_PASSWORD not in logs

    status, created = answer("POST", port, "/users", {"email": "ada@example.test"})
    assert 201 == status, created
    assert (200, created) == answer("GET", port, f"/users/{created['id']}")
    assert 409 == answer("POST", port, "/users", {"email": "ada@example.test"})[0]

    with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%'"
                                              " AND nspname <> 'information_schema' ORDER BY 1").fetchall()]
        tables = conn.execute("SELECT relname::text, pg_get_userbyid(relowner)::text FROM pg_class"
                              " WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1").fetchall()
    assert ["public"] == schemas  # no financial schema, no bootstrap ledger: nothing of the gateway's sql/
    assert [("_prisma_migrations", users_role), ("users", users_role)] == tables

    processes = service.processes()
    (app,) = [p for p in processes if p.parent_host_pid == processes[0].host_pid]
    assert "tini" == Path(processes[0].argv[0]).name
    assert (["node", "server.js"], "1000") == (app.argv, app.uid)  # the entrypoint's shell exec'd the app

    container.podman("stop", "-t", "10", service.name)
    assert 0 == service.state()["ExitCode"]
    container.podman("start", service.name)
    wait_healthy(service, port, "the restarted users service")
    assert "No pending migrations to apply." in service.logs()


@pytest.mark.parametrize("kind", sorted(GATEWAYS))
def test_gateway_and_users_service_start_together(kind: str, request: pytest.FixtureRequest,
                                                 start: Callable[..., Container], prisma_users_image: str,
                                                 roles: dict[str, str], users_role: str, pg_base_dsn: str,
                                                 tmp_path: Path) -> None:
    """
    The compose set: the gateway (migrator and app roles) and the users service
    (its own role, Prisma's URL) started at once both come up; a user created by
    the users service has its integration configs served by the gateway.
    """
    secret = tmp_path / "migrator_url"
    secret.write_text(url(pg_base_dsn, roles["dbname"], roles["migrator"], MIGRATOR_PASSWORD) + "\n")
    secret.chmod(0o644)
    gateway_port = free_port()
    gateway = start(request.getfixturevalue(GATEWAYS[kind]),
                    env={"DATABASE_URL": url(pg_base_dsn, roles["dbname"], roles["app"], APP_PASSWORD),
                         "BOOTSTRAP_DATABASE_URL_FILE": "/run/secrets/migrator_url", "PORT": str(gateway_port)},
                    volumes=[f"{secret}:/run/secrets/migrator_url:ro"])
    users, users_port = start_users_service(start, prisma_users_image, pg_base_dsn, roles["dbname"], users_role,
                                            secret=tmp_path / "users_url")
    wait_healthy(gateway, gateway_port, f"the {kind} gateway")
    wait_healthy(users, users_port, "the users service")

    status, user = answer("POST", users_port, "/users", {"email": "grace@example.test"})
    assert 201 == status, user
    someone_else = str(uuid.uuid4())
    with psycopg.connect(make_conninfo(pg_base_dsn, dbname=roles["dbname"]), autocommit=True) as conn:
        for user_id, key in ((user["id"], "webhook_url"), (None, "api_url"), (someone_else, "webhook_url")):
            conn.execute("INSERT INTO financial.integration_configs (user_id, integration_type, config_key,"
                         " config_value) VALUES (%s, 'stripe', %s, 'https://stripe.test')", [user_id, key])

    def served(user_id: str) -> list[tuple[str, str | None]]:
        status, body = answer("GET", gateway_port, f"/api/integrations/configs?user_id={user_id}")
        assert 200 == status, body
        return [(row["config_key"], row["user_id"]) for row in body["configs"]]

    assert [("api_url", None), ("webhook_url", user["id"])] == served(user["id"])  # theirs and the global ones
    assert [("api_url", None)] == served("global")
