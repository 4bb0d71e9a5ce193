"""
Shared fixtures: a real PostgreSQL, one throwaway database per test.

The server is, in order: `--pg-dsn` / `BOOTSTRAP_TEST_DSN`; else, with `--pg N`
/ `BOOTSTRAP_PG_VERSION=N`, a throwaway PostgreSQL N; else the local server
(127.0.0.1:5432, user postgres); else a throwaway cluster this session starts
itself (the machine's server binaries, or the release pinned in
requirements/postgresql.txt, downloaded once). A run that reaches no
PostgreSQL fails loudly; nothing is skipped. The summary names the server used.
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
# Lines for the end of the run: the server used, what was left out, how long slow tiers took.
_SUMMARY: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add --pg-dsn and --pg."""
    parser.addoption(
        "--pg-dsn",
        default=os.environ.get("BOOTSTRAP_TEST_DSN"),
        help="PostgreSQL to test against (a superuser's conninfo); default $BOOTSTRAP_TEST_DSN",
    )
    parser.addoption(
        "--pg",
        default=os.environ.get("BOOTSTRAP_PG_VERSION") or None,
        help="run against a throwaway PostgreSQL of this major version (14-18) instead of the local server, "
             "and leave out the version matrix; default $BOOTSTRAP_PG_VERSION",
    )


def pytest_configure(config: pytest.Config) -> None:
    """--pg N is BOOTSTRAP_PG_VERSION=N for every cluster this run starts (and the demo it runs)."""
    version = config.getoption("--pg")
    if version is None:
        return
    if config.getoption("--pg-dsn"):
        raise pytest.UsageError("--pg/BOOTSTRAP_PG_VERSION and --pg-dsn/BOOTSTRAP_TEST_DSN both name the server: "
                                "give one")
    os.environ["BOOTSTRAP_PG_VERSION"] = str(version)
    from pgcluster import requested_major

    try:
        requested_major()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


# The quick run's tiers (`./scripts/test`): a few minutes, nothing installed as root, no container engine.
QUICK_TIERS = ("unit", "cli", "integration", "e2e", "install")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    `./scripts/test` (BOOTSTRAP_TEST_RUN=quick) keeps the quick tiers unless paths or -m say what to run, and says
    what it left out; with --pg N the run is about one version: the matrix (every version) is left out, and says so.
    """
    if os.environ.get("BOOTSTRAP_TEST_RUN") == "quick" and not config.option.file_or_dir and not config.option.markexpr:
        root = Path(__file__).resolve().parent
        left = [item for item in items if item.path.relative_to(root).parts[0] not in QUICK_TIERS]
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = [item for item in items if item not in left]
            tiers = sorted({item.path.relative_to(root).parts[0] for item in left})
            _SUMMARY.append(f"quick run: the {', '.join(tiers)} tiers left out ({len(left)} tests); "
                            "./scripts/test --all runs everything, as CI does")
    if config.getoption("--pg") is None:
        return
    matrix = [item for item in items if item.get_closest_marker("matrix")]
    if matrix:
        config.hook.pytest_deselected(items=matrix)
        items[:] = [item for item in items if not item.get_closest_marker("matrix")]
        _SUMMARY.append(f"PostgreSQL matrix: left out ({len(matrix)} tests), --pg {config.getoption('--pg')} "
                        "chose one version")


@pytest.hookimpl(specname="pytest_collection_modifyitems", trylast=True)
def pytest_collection_modifyitems_matrix(config: pytest.Config, items: list[pytest.Item]) -> None:
    """
    The matrix reruns the integration and end-to-end tiers once per PostgreSQL version. In a run of
    every test (`./scripts/test --all`, no paths, -m, -k or --deselect), against a server that answers
    now (BOOTSTRAP_TEST_DSN or the local one), the matrix entry of that server's major version would
    run the same tests on the same version a second time: it is left out, and the summary says so.
    Any selection keeps the whole matrix.
    """
    option = config.option
    if (os.environ.get("BOOTSTRAP_TEST_RUN") != "all" or config.getoption("--pg") is not None or option.file_or_dir
            or option.markexpr or option.keyword or getattr(option, "deselect", None)):
        return
    matrix = [item for item in items if item.get_closest_marker("matrix") and hasattr(item, "callspec")]
    if not matrix:
        return
    dsn = config.getoption("--pg-dsn") or (LOCAL_DSN if _reachable(LOCAL_DSN) else None)
    if dsn is None:
        return
    version = _server_version(dsn)
    same = [item for item in matrix if str(item.callspec.params.get("major")) == version.split(".")[0]]
    if same:
        config.hook.pytest_deselected(items=same)
        items[:] = [item for item in items if item not in same]
        _SUMMARY.append(f"PostgreSQL matrix: {version.split('.')[0]} left out, the version this run's own "
                        f"server ({version}) ran the integration and end-to-end tiers on")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail at once, naming the fix, when container tests are selected and no container engine can run them."""
    if session.config.option.collectonly or not any(item.get_closest_marker("container") for item in session.items):
        return
    import container

    problem = container.engine_problem()
    if problem:
        pytest.exit(f"{problem}\nThe container tier (tests/container: the image, and the README's two commands "
                    "on a bare machine) cannot run here. To run everything else, and know that it proves neither "
                    "the image nor a fresh machine: ./scripts/test -m 'not container'", returncode=1)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the PostgreSQL the run used (and what it left out)."""
    for line in _SUMMARY:
        terminalreporter.write_line(line)


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _server_version(dsn: str) -> str:
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # "15.19 (Debian ...)"


@pytest.fixture(scope="session")
def pg_base_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A superuser conninfo of the PostgreSQL the suite runs against."""
    given = request.config.getoption("--pg-dsn")
    if given:
        if not _reachable(given):
            pytest.exit(f"BOOTSTRAP_TEST_DSN / --pg-dsn does not answer: {redact.redact(given)}", returncode=1)
        _SUMMARY.append(f"PostgreSQL {_server_version(given)}: {redact.redact(given)} (BOOTSTRAP_TEST_DSN / --pg-dsn)")
        yield given
        return
    if request.config.getoption("--pg") is None and _reachable(LOCAL_DSN):
        _SUMMARY.append(f"PostgreSQL {_server_version(LOCAL_DSN)}: the local server, {LOCAL_DSN}")
        yield LOCAL_DSN
        return
    from pgcluster import Cluster

    # Without a server no test that needs one can run: stop at once with the reason (and the fix), rather
    # than let every such test error on its own.
    try:
        cluster = Cluster()
    except Exception as exc:  # noqa: BLE001 - any failure here must fail the run loudly
        pytest.exit(f"no PostgreSQL reachable, and none could be set up: {exc}", returncode=1)
    try:
        cluster.start()
        cluster.wait_ready()
    except Exception as exc:  # noqa: BLE001 - any failure here must fail the run loudly
        cluster.destroy()
        pytest.exit(f"no PostgreSQL reachable, and a throwaway cluster could not start: {exc}", returncode=1)
    _SUMMARY.append(f"PostgreSQL {_server_version(cluster.dsn())}: a throwaway cluster from {cluster.bindir}")
    try:
        yield cluster.dsn()
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def summary_line() -> Callable[[str], None]:
    """Add a line to the end of the run's output (timings a reader of the CI log wants to see)."""
    return _SUMMARY.append


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
