"""
Where the tools the tests and the benchmark download are kept, and the npm tools.

    python scripts/toolcache.py node-ok     exit 0 when node and npm on PATH are recent enough
    python scripts/toolcache.py npm-tools   install the npm tools (once) and print their bin folder

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
    problem = node_problem()
    if problem:
        raise ToolError(f"{problem}: ./scripts/test installs Node.js from PyPI into .venv when the machine has "
                        "none (or install it: apt-get install nodejs npm)")
    lock = (NPM_TOOLS / "package-lock.json").read_bytes()
    target = cache_dir() / "npm" / hashlib.sha256(lock + (NPM_TOOLS / "package.json").read_bytes()).hexdigest()[:16]
    bin_dir = target / "node_modules" / ".bin"
    with locked(target):
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy(NPM_TOOLS / name, target / name)
            # `npm install` from the lock rather than `npm ci`: dbmate lists one binary package per
            # platform as optional, npm locks only those the registry serves for this platform,
            # and `npm ci` refuses such a lock. What is locked installs as locked (checked below).
            result = subprocess.run([shutil.which("npm") or "npm", "install", "--no-save", "--ignore-scripts",
                                     "--no-audit", "--no-fund"],
                                    cwd=target, capture_output=True, text=True, timeout=600, check=False)
            if result.returncode != 0:
                raise ToolError(f"npm install of {NPM_TOOLS.relative_to(REPO)} failed (is the npm registry "
                                f"reachable?):\n{result.stderr[-2000:]}")
            drift = _unlocked(target)
            if drift:
                raise ToolError(f"npm installed other versions than {NPM_TOOLS.relative_to(REPO)}/package-lock.json "
                                f"pins: {', '.join(drift[:5])}")
            (target / ".complete").touch()
    return bin_dir


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
    if argv == ["npm-tools"]:
        try:
            print(ensure_npm_tools())
        except ToolError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
