"""
Fixtures of the container tests: each image built once per session with podman
(scripts/container.py), roles as a DBA would provision them, detached containers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

import container
from tests.container.containers import APP_PASSWORD, MIGRATOR_PASSWORD, Base, Container


def _built(what: str, make: Callable[[], str]) -> str:
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - a build that cannot run must fail the suite, not skip
        pytest.fail(f"could not build {what} with podman: {exc}")


@pytest.fixture(scope="session")
def images() -> tuple[str, str]:
    """The bootstrap image and the example gateway image, built on the local debootstrap base."""
    try:
        return container.build_images()
    except Exception as exc:  # noqa: BLE001 - a build that cannot run must fail the suite, not skip
        pytest.fail(f"could not build the images with podman: {exc}")


@pytest.fixture(scope="session")
def bundle_image(images: tuple[str, str]) -> str:
    """The bundle (`--target bundle`), sharing the bootstrap image's build stage."""
    return _built("the bundle", container.build_bundle)


@pytest.fixture(scope="session")
def node_gateway_image(bundle_image: str) -> str:
    """examples/node-gateway, on the local stand-in for node:20-bookworm-slim."""
    return _built("the Node gateway", lambda: container.build_node_gateway(bundle_image))


@pytest.fixture(scope="session")
def prisma_users_image(bundle_image: str) -> str:
    """examples/prisma-users (the users service, Prisma), on the local stand-in for node:20-bookworm-slim."""
    return _built("the Prisma users service", lambda: container.build_prisma_users(bundle_image))


@pytest.fixture(scope="session")
def bundle_dir(bundle_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/opt/bootstrap copied out of the bundle image onto the host."""
    return container.export_path(bundle_image, "/opt/bootstrap", tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def bundle_bases() -> dict[str, Base]:
    """The oldest and newest Debian this machine can make, bookworm, and a distroless-cc stand-in."""
    made = {suite: _built(f"a {suite} base", lambda s=suite: container.ensure_debian_image(s))
            for suite in ("bullseye", "bookworm", "trixie")}
    made["distroless-cc"] = _built("the distroless-cc stand-in", container.ensure_distroless_image)
    out = {}
    for name, image in made.items():
        major, minor = container.image_label(image, container.GLIBC_LABEL).split(".")
        out[name] = Base(image, (int(major), int(minor)))
    return out


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


@pytest.fixture
def start(images: tuple[str, str]) -> Iterator[Callable[..., Container]]:
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
