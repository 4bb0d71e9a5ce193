"""
The tools users would pick instead of bootstrap, installed for the benchmark
from the registries reachable here, and the same migrations in each one's format.

- dbmate and node-pg-migrate from npm, pinned by scripts/npm-tools/package-lock.json
  and installed once into the cache (scripts/toolcache.py). dbmate is timed twice:
  through its npm package's launcher (`dbmate`, a Node script
  that spawns the binary: what `npx dbmate` runs) and as its own Go binary (the
  platform package `@dbmate/linux-<arch>`: what its Docker image and release
  downloads run);
- yoyo-migrations from PyPI (requirements/bench.txt), in its own virtual environment (bench/.tools/yoyo).

A peer that cannot be installed is skipped, saying so.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import toolcache

BENCH = Path(__file__).resolve().parent
TOOLS = BENCH / ".tools"
YOYO_LOCK = BENCH.parent / "requirements" / "bench.txt"


@dataclass
class Peer:
    """A peer tool: how to lay out migrations for it and how to run `up`."""

    binary: Path | None  # None: not installed (why_not says why)
    why_not: str = ""
    name: ClassVar[str]
    folder: ClassVar[str]  # where its copy of the migrations goes, under the work directory
    up_marker: ClassVar[str] = ""  # its files' section markers around the SQL
    down_marker: ClassVar[str] = ""

    @property
    def available(self) -> bool:
        return self.binary is not None

    def prepare(self, bootstrap_dir: Path, work: Path) -> Path:
        """The bootstrap workload's versioned files, in this tool's format."""
        folder = work / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in bootstrap_dir.glob("*.sql") if p.name[0].isdigit() and ".down." not in p.name):
            (folder / path.name).write_text(self.up_marker + path.read_text() + self.down_marker)
        return folder

    def up(self, folder: Path, url: str) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def env(self, url: str) -> dict[str, str]:
        return {}


class Dbmate(Peer):
    """dbmate: `-- migrate:up` sections, one transaction per file, schema_migrations."""

    name = "dbmate (npm launcher)"
    folder = "dbmate/migrations"
    up_marker, down_marker = "-- migrate:up\n", "\n-- migrate:down\n"

    def up(self, folder: Path, url: str) -> list[str]:
        return [str(self.binary), "--no-dump-schema", "--migrations-dir", str(folder), "up"]

    def env(self, url: str) -> dict[str, str]:
        return {"DATABASE_URL": url + ("&" if "?" in url else "?") + "sslmode=disable"}


class DbmateNative(Dbmate):
    """dbmate's own Go binary, without the npm launcher's Node start-up in front of it."""

    name = "dbmate (Go binary)"


class NodePgMigrate(Peer):
    """node-pg-migrate: SQL files with `-- Up Migration`, pgmigrations."""

    name = "node-pg-migrate"
    folder = "node-pg-migrate"
    up_marker, down_marker = "-- Up Migration\n", "\n-- Down Migration\n"

    def up(self, folder: Path, url: str) -> list[str]:
        return [str(self.binary), "up", "-m", str(folder), "--no-check-order"]

    def env(self, url: str) -> dict[str, str]:
        return {"DATABASE_URL": url}


class Yoyo(Peer):
    """yoyo-migrations: .sql files as they are, one transaction each, _yoyo_migration."""

    name = "yoyo"
    folder = "yoyo"

    def up(self, folder: Path, url: str) -> list[str]:
        parts = urlsplit(url)
        yoyo_url = parts._replace(scheme="postgresql+psycopg").geturl()
        return [str(self.binary), "apply", "--batch", "--no-config-file", "--database", yoyo_url, str(folder)]


def _npm_binaries() -> tuple[Path | None, Path | None, Path | None, str]:
    """dbmate's npm launcher, its Go binary, node-pg-migrate; or why not."""
    try:
        bin_dir = toolcache.ensure_npm_tools()
    except toolcache.ToolError as exc:
        return None, None, None, str(exc)[-300:]
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    native = bin_dir.parent / "@dbmate" / f"linux-{arch}" / "bin" / "dbmate"
    return bin_dir / "dbmate", native if native.exists() else None, bin_dir / "node-pg-migrate", ""


def _yoyo_binary() -> tuple[Path | None, str]:
    venv = TOOLS / "yoyo"
    binary = venv / "bin" / "yoyo"
    stamp = venv / f".locked-{hashlib.sha256(YOYO_LOCK.read_bytes()).hexdigest()[:16]}"
    if binary.exists() and stamp.exists():
        return binary, ""
    result = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True,
                            check=False)
    if result.returncode == 0:
        result = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--require-hashes", "--no-deps",
                                 "-r", str(YOYO_LOCK)], capture_output=True, text=True, check=False, timeout=600)
    if result.returncode != 0 or not binary.exists():
        return None, f"pip install -r {YOYO_LOCK.name} failed: {result.stderr.strip()[-300:]}"
    stamp.touch()
    return binary, ""


def install_peers() -> list[Peer]:
    """Install (or find) every peer; unavailable ones carry the reason."""
    dbmate, native, npm_migrate, why = _npm_binaries()
    yoyo, why_yoyo = _yoyo_binary()
    # The registry reachable here serves dbmate's binary package for linux-x64 only, so that is
    # all the lock holds: elsewhere the launcher and its binary are both missing, and say so.
    why_native = why or ("" if native else f"npm installed no @dbmate/linux-{platform.machine()} package")
    return [Dbmate(dbmate, why), DbmateNative(native, why_native), NodePgMigrate(npm_migrate, why),
            Yoyo(yoyo, why_yoyo)]
