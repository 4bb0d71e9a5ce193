"""
The Prisma tier's fixtures: Prisma's packages installed once, a copy of the users
service's Prisma project per test, the gateway, and more throwaway databases.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import toolcache
from tests.prisma.services import EXAMPLE, Gateway, PrismaService


def pytest_configure(config: pytest.Config) -> None:
    """Register the tier's marker (`-m "not prisma"` leaves it out)."""
    config.addinivalue_line("markers", "prisma: the gateway and a real Prisma service on one database (tests/prisma)")


@pytest.fixture(scope="session")
def prisma_modules() -> Path:
    """node_modules of examples/prisma-users (Prisma's CLI, client, pg adapter), installed once from its lock."""
    try:
        return toolcache.ensure_prisma_users() / "node_modules"
    except toolcache.ToolError as exc:
        pytest.fail(f"Prisma's packages could not be installed ({exc}); they install with "
                    "`python scripts/toolcache.py prisma-users` (npm ci of examples/prisma-users/package-lock.json)")


@pytest.fixture
def prisma(prisma_modules: Path, tmp_path: Path) -> PrismaService:
    """A copy of the users service's Prisma project (config, schema, migrations), with the installed packages."""
    project = tmp_path / "prisma-users"
    project.mkdir()
    shutil.copy(EXAMPLE / "prisma.config.ts", project / "prisma.config.ts")
    shutil.copytree(EXAMPLE / "prisma", project / "prisma")
    (project / "node_modules").symlink_to(prisma_modules, target_is_directory=True)
    return PrismaService(project, prisma_modules)


@pytest.fixture
def gateway() -> Gateway:
    """The gateway, started as the README shows."""
    return Gateway()


@pytest.fixture
def databases(admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[Callable[[], str]]:
    """Make more throwaway databases (conninfo each); all dropped afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"bootstrap_prisma_{uuid.uuid4().hex[:12]}"
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return make_conninfo(pg_base_dsn, dbname=name)

    yield make
    for name in made:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
