"""
The README's two commands on a fresh machine.

A clean export of the repository (what a clone holds) is copied into a bare
Debian bookworm (`debootstrap --variant=minbase` plus python3, python3-venv and
ca-certificates: no PostgreSQL, no node, no git, no XDG_RUNTIME_DIR) running on
podman's default network, where the host's PostgreSQL is out of reach. There,
`./scripts/demo` and `./scripts/test` must pass, exactly as the README gives
them: the second is the quick run (unit, cli, integration, end-to-end and
install tiers), which needs nothing installed as root and no container engine.
The tiers it leaves out (faults, PgBouncer, Prisma, the version matrix, the
containers) run on the host in the same `--all` run. Everything the run
needs comes from the registries; the container is handed only the host's
network plumbing: its CA bundle (for a TLS-intercepting proxy), its pip index
and apt proxy settings, and proxy variables.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import container
from tests.helpers import REPO

pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

HOME = "/root/bootstrap"
HOST_CA = "/run/host-ca/ca-certificates.crt"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def export_repository(dest: Path) -> int:
    """Copy what a clone would hold (tracked files, and new ones git does not ignore) as they are now."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.fail("the fresh-machine test exports the repository with git: run it in a git clone with git "
                    "installed (apt-get install git)")
    listing = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout.decode()
    names = sorted({name for name in listing.split("\0") if name and (REPO / name).is_file()})
    for name in names:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest / name)
    return len(names)


class Machine:
    """A running bare container; `sh` runs a command in it and says how long it took."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, command: str, timeout: float = 1800) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        result = container.podman("exec", "-w", HOME, self.name, "sh", "-c", command, check=False, timeout=timeout)
        return result, time.monotonic() - started


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A bare Debian container on podman's default network holding a clean export of the repository."""
    try:
        base = container.ensure_base_image()
    except Exception as exc:  # noqa: BLE001 - a base that cannot be built must fail the suite, not skip
        pytest.fail(f"could not build the bare debootstrap base with podman: {exc}")
    env = [arg for var in PROXY_VARIABLES if os.environ.get(var) for arg in ("-e", f"{var}={os.environ[var]}")]
    mounts = []
    ca = container.host_ca_bundle()
    if ca:
        mounts += ["-v", f"{ca}:{HOST_CA}:ro"]
        env += [arg for var in ("PIP_CERT", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS") for arg in ("-e", f"{var}={HOST_CA}")]
    plumbing = tmp_path_factory.mktemp("plumbing")
    pip_conf = container.host_pip_conf(plumbing / "pip.conf")
    if pip_conf:
        mounts += ["-v", f"{pip_conf}:/run/host-pip/pip.conf:ro"]
        env += ["-e", "PIP_CONFIG_FILE=/run/host-pip/pip.conf"]
    apt_conf = container.host_apt_conf(plumbing / "apt.conf")  # the mirror's proxy and validity settings
    if ca:
        apt_conf = plumbing / "apt.conf"
        with apt_conf.open("a") as fh:
            fh.write(f'Acquire::https::CaInfo "{HOST_CA}";\n')
    if apt_conf:
        mounts += ["-v", f"{apt_conf}:/etc/apt/apt.conf.d/99host:ro"]
    name = f"bootstrap-fresh-{uuid.uuid4().hex[:10]}"
    container.podman("run", "-d", "--name", name, *env, *mounts, base, "sleep", "infinity")
    try:
        with tempfile.TemporaryDirectory(prefix="bootstrap-export-") as tmp:
            export = Path(tmp) / "bootstrap"
            export.mkdir()
            export_repository(export)
            container.podman("cp", f"{export}/.", f"{name}:{HOME}")
        yield Machine(name)
    finally:
        container.podman("rm", "-f", "-t", "0", name, check=False)


def test_the_machine_is_bare(machine: Machine) -> None:
    """The container has Python >= 3.11 and nothing the project needs besides: no PostgreSQL, node, git or podman."""
    probe = ("python3 -c 'import sys; print(sys.version_info >= (3, 11))'; "
             "for tool in node npm git podman psql initdb pg_ctl postgres; do command -v $tool; done; "
             "ls -d /usr/lib/postgresql 2>/dev/null; echo XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-unset}; "
             "python3 -c 'import socket; s = socket.socket(); s.settimeout(3);"
             " print(\"reachable\" if s.connect_ex((\"127.0.0.1\", 5432)) == 0 else \"unreachable\")'")
    result, _ = machine.sh(probe, timeout=60)
    assert ["True", "XDG_RUNTIME_DIR=unset", "unreachable"] == result.stdout.split(), result.stderr


def test_demo_passes_on_the_fresh_machine(machine: Machine, summary_line: Callable[[str], None]) -> None:
    """`./scripts/demo` sets itself up, starts its own PostgreSQL, and the gateway serves the seeded rows."""
    result, took = machine.sh("./scripts/demo")
    assert 0 == result.returncode, result.stdout[-3000:] + result.stderr[-5000:]
    assert '"config_value": "https://api.stripe.com"' in result.stdout
    assert "the gateway exited 0" in result.stderr
    assert "(up to date)" in result.stdout
    assert "throwaway PostgreSQL removed" in result.stderr
    summary_line(f"fresh machine: ./scripts/demo passed in {took:.0f} s (setup included)")


def test_suite_passes_on_the_fresh_machine(machine: Machine, summary_line: Callable[[str], None]) -> None:
    """The README's `./scripts/test` (the quick run) passes there, nothing skipped, setting itself up from nothing."""
    result, took = machine.sh("./scripts/test", timeout=3000)
    output = result.stdout + result.stderr
    assert 0 == result.returncode, result.stdout[-8000:] + result.stderr[-3000:]
    closing = [line for line in result.stdout.splitlines() if re.search(r"\d+ passed", line)][-1]
    assert re.fullmatch(r"=* ?\d+ passed, \d+ deselected in .*", closing.strip()), closing
    assert "installing Node.js from PyPI (requirements/node.txt)" in output, output[-3000:]
    assert re.search(r"PostgreSQL 1[4-8]\.\d+: a throwaway cluster from /var/cache/bootstrap/postgresql/", output)
    assert "quick run: the " in output, output[-3000:]  # it says which tiers it left out
    summary_line(f"fresh machine: ./scripts/test {closing.strip('= ')} ({took:.0f} s in all)")
