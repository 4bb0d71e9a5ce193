"""
The README's install and first-steps commands, verbatim, in a clean environment: a copy of the repository as
a clone holds it, an empty HOME, a PATH holding only the system's directories and the installers the README
names (pipx, uv, pip), nothing of bootstrap installed. Packages come from the registries (PyPI), as they
would for a user; the machine's pip configuration and CA bundle are kept, as a user's would be.

Part of the quick run: with pip's cache warm the four tests take about 10 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bootstrap import __version__
from tests.helpers import REPO

README = (REPO / "README.md").read_text()
# What a clone does not hold: build output, caches, the developer's venv (hatchling builds from src/ anyway).
_NOT_IN_A_CLONE = shutil.ignore_patterns(".git", ".venv", "dist", "build", "__pycache__", "*.egg-info", ".ruff_cache",
                                         ".mypy_cache", ".pytest_cache", ".work", "node_modules", ".hypothesis")


def block(marker: str) -> list[str]:
    """The shell lines of the README's fenced block between `<!-- marker -->` and `<!-- /marker -->`."""
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)```\n<!-- /{marker} -->", README, re.S)
    assert found is not None, f"README.md has no ```sh block between <!-- {marker} --> markers"
    return [line for line in found.group(1).splitlines() if line.strip()]


def command_of(line: str) -> str:
    """A README line without its trailing comment (two spaces, then #)."""
    return re.split(r"\s{2,}#", line, maxsplit=1)[0].strip()


class User:
    """A clean account: its own HOME and bin directory, the repository as cloned, only the README's installers."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.bin = self.home / ".local" / "bin"
        self.clone = root / "bootstrap"
        tools = root / "tools"
        for folder in (self.bin, tools):
            folder.mkdir(parents=True)
        shutil.copytree(REPO, self.clone, ignore=_NOT_IN_A_CLONE, symlinks=True)
        for tool in ("pipx", "uv", "pip"):  # from the test environment's lock, nothing else of it
            found = shutil.which(tool, path=str(Path(sys.executable).parent))
            assert found is not None, f"{tool} is missing: ./scripts/test installs it (requirements/dev.txt)"
            (tools / tool).symlink_to(found)
        kept = {k: v for k, v in os.environ.items()
                if k.startswith(("PIP_", "SSL_", "REQUESTS_CA", "UV_NATIVE")) or k.lower().endswith("_proxy")
                or k in ("LANG", "LC_ALL", "TMPDIR")}
        self.env = {**kept, "HOME": str(self.home), "PATH": f"{self.bin}:{tools}:/usr/local/bin:/usr/bin:/bin",
                    "PIPX_HOME": str(self.home / ".local" / "pipx"), "PIPX_BIN_DIR": str(self.bin),
                    "UV_TOOL_DIR": str(self.home / ".local" / "uv-tools"), "UV_TOOL_BIN_DIR": str(self.bin),
                    "UV_CACHE_DIR": str(root / "uv-cache"), "XDG_DATA_HOME": str(self.home / ".local" / "share")}

    def sh(self, *lines: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        return subprocess.run(["bash", "-c", script], cwd=cwd or self.clone, env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User(tmp_path)


def test_the_install_commands_install_a_working_bootstrap(user: User) -> None:
    """`pipx install .`, then with the lint extra: `bootstrap --version` answers, and squawk came with the extra."""
    lines = [command_of(line) for line in block("install")]
    assert lines[0] == "pipx install ." and lines[-1] == "bootstrap --version"
    result = user.sh(*lines)
    assert 0 == result.returncode, result.stdout[-3000:] + result.stderr[-3000:]
    assert __version__ in result.stdout.splitlines()[-1]
    assert user.sh("command -v bootstrap").stdout.strip() == str(user.bin / "bootstrap")
    lint = user.sh("mkdir -p sql && echo 'CREATE INDEX i ON t (c);' > sql/0001_i.sql && bootstrap lint --all",
                   cwd=user.home)
    assert 11 == lint.returncode, lint.stderr  # squawk ran and found the blocking index build


def test_uv_tool_install_is_the_other_way(user: User) -> None:
    """The README's alternative, `uv tool install .`, installs the same command."""
    (line,) = [line for line in block("install") if "# or: uv tool install ." in line]
    result = user.sh("uv tool install .", "bootstrap --version")
    assert 0 == result.returncode, result.stderr[-3000:]
    assert __version__ in result.stdout, line


def test_a_wheel_built_once_installs_anywhere(user: User) -> None:
    """`pip wheel` in the clone, then `pipx install` of that file: bootstrap runs from it."""
    lines = [command_of(line) for line in block("install-wheel")]
    result = user.sh(*lines, "bootstrap --version")
    assert 0 == result.returncode, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = (user.clone / "dist").glob("bootstrap-*.whl")
    assert f"bootstrap-{__version__}-py3-none-any.whl" == wheel.name
    assert __version__ in result.stdout.splitlines()[-1]


@pytest.fixture
def new_database(admin: psycopg.Connection, pg_base_dsn: str) -> Iterator[str]:
    """A URL naming a database that does not exist yet (the first-steps block creates it)."""
    name = f"bootstrap_myapp_{uuid.uuid4().hex[:8]}"
    yield make_conninfo(pg_base_dsn, dbname=name)
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_first_steps_work_as_written(user: User, new_database: str) -> None:
    """Installed by pipx: new, migrate --create-database, status, run, against a database that did not exist."""
    installed = user.sh(command_of(block("install")[0]))
    assert 0 == installed.returncode, installed.stderr[-3000:]
    lines = [command_of(line) for line in block("first-steps")]
    assert lines[0].startswith("export DATABASE_URL=")
    export = f"export DATABASE_URL='{new_database}'"
    project = user.home / "myapp"
    project.mkdir()
    new = user.sh(export, lines[1], cwd=project)
    assert 0 == new.returncode, new.stderr
    (written,) = (project / "sql").glob("*_create_accounts.sql")
    written.write_text(written.read_text() + "CREATE TABLE accounts (id bigint PRIMARY KEY, email text);\n")
    rest = user.sh(export, *lines[2:], cwd=project)
    assert 0 == rest.returncode, rest.stdout + rest.stderr
    assert "database_created" in rest.stderr
    assert re.search(rf"\sapplied\s+{re.escape(written.name)}\s", rest.stdout), rest.stdout
    assert rest.stdout.rstrip().endswith("the app starts here")
    with psycopg.connect(new_database) as conn:
        assert conn.execute("SELECT to_regclass('accounts') IS NOT NULL").fetchone()[0]
