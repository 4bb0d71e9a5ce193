"""
bootstrap as the images install it, made from the working tree for the benchmark,
with this benchmark's own interpreter so that only the packaging differs:

- the venv install: a virtual environment with bootstrap and its dependencies
  installed by pip (not editable) and their bytecode compiled, as the bootstrap
  image's build stage makes it (bench/.tools/venv-install);
- the bundle: that venv made self-contained by scripts/bundle.py, as the
  Dockerfile's `bundle` target does (bench/.tools/bundle).

Either can be "cold": its files dropped from the page cache before a run, as on a
node that has never started the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TOOLS = BENCH / ".tools"


@dataclass
class Install:
    """One way bootstrap is installed: the command that runs it and the files it reads."""

    name: str
    command: list[str]
    files: list[Path] = field(default_factory=list)  # what a cold start must read from disk
    why_not: str = ""


def _run(argv: list[str]) -> str:
    """Run a build step; its error output when it fails."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    return "" if result.returncode == 0 else f"{' '.join(argv[:3])}... failed: {result.stderr.strip()[-300:]}"


def _ensure_patchelf() -> str:
    """patchelf, from Debian's package when missing and this is root; else why not."""
    if shutil.which("patchelf"):
        return ""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "patchelf"]):
            subprocess.run(argv, env=env, capture_output=True, check=False, timeout=600)
    return "" if shutil.which("patchelf") else "patchelf is missing (apt-get install patchelf)"


def make_installs() -> list[Install]:
    """Build the venv install and the bundle from the working tree (a few seconds once the venv exists)."""
    venv = TOOLS / "venv-install"
    python = venv / "bin" / "python"
    why = ""
    if not python.exists():
        why = _run([sys.executable, "-m", "venv", str(venv)]) or _run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(REPO)])
    if not why:  # this run's code, with the dependencies already there
        why = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--force-reinstall", "--no-compile", str(REPO)])
    if not why:
        why = _run([str(python), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")])
    site = sorted(venv.glob("lib/python3*/site-packages"))
    base = Path(sys.base_prefix)
    venv_install = Install(
        "bootstrap migrate: venv install", [str(venv / "bin" / "bootstrap"), "migrate"],
        [venv, *(p for p in (base / "lib").glob("python3*") if p.is_dir()), *base.glob("lib/libpython3*")], why)
    if why or not site:
        return [venv_install, Install("bootstrap migrate: bundle", [], why_not=why or "no site-packages")]
    bundle = TOOLS / "bundle"
    why = _ensure_patchelf() or _run([str(python), str(REPO / "scripts" / "bundle.py"), "--venv", str(venv),
                                      "--out", str(bundle), "--prefix", str(bundle)])
    return [venv_install, Install("bootstrap migrate: bundle", [str(bundle / "bin" / "bootstrap"), "migrate"],
                                  [bundle], why)]


def evict(paths: list[Path]) -> None:
    """
    Drop these files (folders: every file under them) from the page cache, so the
    next start reads them from disk. Pages that a running process maps cannot be
    dropped: the benchmark's own interpreter keeps its libpython mapped, so the
    venv install's stays cached; the bundle's copy is kept too, so that both
    compare alike. (The images' Debian CPython has no libpython: it is linked in.)
    """
    for top in paths:
        for path in ([top] if top.is_file() else (p for p in top.rglob("*") if p.is_file() and not p.is_symlink())):
            if path.name.startswith("libpython"):
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
