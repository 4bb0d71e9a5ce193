"""
Where the tools the tests and the benchmark download are kept, and the npm tools.

    python scripts/toolcache.py node-ok     exit 0 when node and npm on PATH are recent enough
    python scripts/toolcache.py npm-tools   install the npm tools (once) and print their bin folder
    python scripts/toolcache.py prisma-users  install examples/prisma-users' packages (once) and print the folder

The cache is BOOTSTRAP_CACHE, else /var/cache/bootstrap for root (a folder the
`postgres`/`nobody` user that runs throwaway clusters can read), else
$XDG_CACHE_HOME/bootstrap (~/.cache/bootstrap). It holds unpacked PostgreSQL
releases (scripts/pgcluster.py) and npm installs keyed by their lock, so
repeated runs, and fresh clones, download nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NPM_TOOLS = REPO / "scripts" / "npm-tools"
PRISMA_USERS = REPO / "examples" / "prisma-users"


class ToolError(RuntimeError):
    """A tool the run needs is missing and could not be installed; the message says how to install it."""


def cache_dir() -> Path:
    """The download cache (created, world-readable so a cluster's user can run what is in it)."""
    if os.environ.get("BOOTSTRAP_CACHE"):
        path = Path(os.environ["BOOTSTRAP_CACHE"])
    elif os.geteuid() == 0:
        path = Path("/var/cache/bootstrap")
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bootstrap"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock (two runs filling one cache entry wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def apt_install(packages: list[str], why: str) -> None:
    """Install Debian packages (as root, with apt-get), else raise naming the command that would."""
    command = f"apt-get install {' '.join(packages)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ToolError(f"{why}: install {' '.join(packages)} ({command})")
    print(f"{why}: installing Debian's {' '.join(packages)} ({command})", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ToolError(f"{why}: `{' '.join(args)}` failed:\n{result.stderr[-1500:]}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def node_problem() -> str | None:
    """Why node/npm on PATH cannot run the npm tools (None when they can)."""
    wanted = json.loads((NPM_TOOLS / "package.json").read_text())["engines"]["node"]
    minimum = _version(wanted)
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return f"no {'node' if node is None else 'npm'} on PATH (node {wanted} with npm is needed)"
    result = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or _version(result.stdout) < minimum:
        return f"{node} is {result.stdout.strip() or 'broken'}; node {wanted} is needed"
    return None


def ensure_npm_tools() -> Path:
    """node_modules/.bin holding node-pg-migrate and dbmate's launcher, installed from the committed lock (once)."""
    # `npm install` from the lock rather than `npm ci`: dbmate lists one binary package per
    # platform as optional, npm locks only those the registry serves for this platform,
    # and `npm ci` refuses such a lock. What is locked installs as locked (checked after).
    return _npm_installed(NPM_TOOLS, ["install", "--no-save"]) / "node_modules" / ".bin"


def ensure_prisma_users() -> Path:
    """
    A folder whose node_modules holds examples/prisma-users' packages (Prisma's CLI,
    client and pg adapter), installed by `npm ci` from its committed lock (once).
    No install script runs: Prisma's would download Rust engines, which the example
    does without (its engines are the WebAssembly ones its npm packages carry).
    """
    return _npm_installed(PRISMA_USERS, ["ci"], files=("package-lock.json", "package.json", ".npmrc"))


def _npm_installed(source: Path, verb: list[str],
                   files: tuple[str, ...] = ("package-lock.json", "package.json")) -> Path:
    """`npm VERB` of `source`'s package.json and lock into the cache (once per content of `files`), checked."""
    problem = node_problem()
    if problem:
        raise ToolError(f"{problem}: ./scripts/test installs Node.js from PyPI into .venv when the machine has "
                        "none (or install it: apt-get install nodejs npm)")
    digest = hashlib.sha256(b"".join((source / name).read_bytes() for name in files)).hexdigest()
    target = cache_dir() / "npm" / digest[:16]
    with locked(target):
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for name in files:
                shutil.copy(source / name, target / name)
            result = subprocess.run([shutil.which("npm") or "npm", *verb, "--ignore-scripts", "--no-audit",
                                     "--no-fund"], cwd=target, capture_output=True, text=True, timeout=600, check=False)
            if result.returncode != 0:
                raise ToolError(f"npm {verb[0]} of {source.relative_to(REPO)} failed (is the npm registry "
                                f"reachable?):\n{result.stderr[-2000:]}")
            drift = _unlocked(target)
            if drift:
                raise ToolError(f"npm installed other versions than {source.relative_to(REPO)}/package-lock.json "
                                f"pins: {', '.join(drift[:5])}")
            (target / ".complete").touch()
    return target


def _unlocked(folder: Path) -> list[str]:
    """Packages npm installed in `folder` at a version other than its package-lock.json pins."""
    locked = json.loads((folder / "package-lock.json").read_text())["packages"]
    installed = json.loads((folder / "node_modules" / ".package-lock.json").read_text())["packages"]
    return [f"{path.removeprefix('node_modules/')} {entry.get('version')} (locked {locked[path].get('version')})"
            for path, entry in installed.items()
            if path in locked and entry.get("version") != locked[path].get("version")]


def main(argv: list[str]) -> int:
    """Command line: see the module docstring."""
    if argv == ["node-ok"]:
        problem = node_problem()
        if problem:
            print(problem, file=sys.stderr)
        return 1 if problem else 0
    installers = {"npm-tools": ensure_npm_tools, "prisma-users": ensure_prisma_users}
    if len(argv) == 1 and argv[0] in installers:
        try:
            print(installers[argv[0]]())
        except ToolError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
