"""
Make bootstrap's self-contained bundle: one directory holding bootstrap, its own
CPython and libraries, tini, and the entry executable, for any glibc-based image.

    python scripts/bundle.py --venv VENV --out DIR [--tini /usr/bin/tini-static] [--prefix /opt/bootstrap]

VENV is a virtual environment where bootstrap was installed (not editable), as the
Dockerfile's build stage makes it; its base interpreter becomes the bundle's. The
result, meant to live at PREFIX (default /opt/bootstrap; the entry executable's
`#!` line names it):

    bin/bootstrap     the entry executable: `#!PREFIX/bin/python3 -IS`, then entrypoint.main()
                      (moved elsewhere, run it as `DIR/bin/python3 -IS DIR/bin/bootstrap ...`)
    bin/python3       the interpreter, finding its libraries through RUNPATH $ORIGIN/../lib
    bin/tini          tini-static, when --tini is given
    lib/              the shared libraries the interpreter and its extension modules need
                      (glibc's own excepted: the image provides those)
    lib/pythonX.Y/    the standard library as bytecode, minus what bootstrap never imports;
                      lib-dynload/ (RUNPATH $ORIGIN/../..) and site-packages/ (bootstrap and
                      its dependencies, as installed in VENV, plus entrypoint.py)

This is a relocatable interpreter made from the build stage's own CPython: CPython
finds its prefix from its own location (the `lib/pythonX.Y/os.pyc` landmark), and
patchelf gives every copied ELF file a RUNPATH relative to itself, so nothing is
looked up in the image's /usr/lib but glibc. `-I` keeps the app image's PYTHON*
variables (and its site-packages) out of bootstrap's interpreter while they still
reach the app; `-S` skips `site` (no .pth scanning): the entry script puts
site-packages on the path itself.

Needs: ldd (glibc's), patchelf. See docs/container.md for the measurements behind
the choice.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = f"python{sys.version_info[0]}.{sys.version_info[1]}"

# Libraries that are glibc itself: every glibc-based image has them, and a copy
# would have to match the image's ld.so exactly, so they are never bundled.
GLIBC = frozenset({
    "linux-vdso.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6",
    "libpthread.so.0", "libdl.so.2", "librt.so.1", "libutil.so.1", "libresolv.so.2", "libanl.so.1",
    "libmvec.so.1", "libnsl.so.1", "libBrokenLocale.so.1", "libthread_db.so.1", "libc_malloc_debug.so.0",
})

# Standard-library parts that bootstrap, click, psycopg, structlog, tenacity and
# typing_extensions never import (check_imports() proves it at each build): tests, GUIs, the
# REPL's helpers, packaging tools, other databases, process pools, mail and FTP
# clients. (`ssl` stays: psycopg imports it so that Python sets up libcrypto first.)
DROPPED_STDLIB = frozenset({
    "test", "idlelib", "tkinter", "turtledemo", "turtle.py", "ensurepip", "lib2to3", "pydoc_data", "pydoc.py",
    "distutils", "venv", "unittest", "doctest.py", "sqlite3", "curses", "dbm", "xmlrpc", "wsgiref", "msilib",
    "multiprocessing", "crypt.py", "nntplib.py", "imaplib.py", "poplib.py", "smtplib.py", "ftplib.py",
    "mailbox.py", "site-packages", "dist-packages", "__pycache__", "__phello__", "_pydecimal.py", "lib-dynload",
})
DROPPED_EXTENSIONS = re.compile(
    r"^(_test\w*|xxlimited\w*|_ctypes_test|_xxtestfuzz|_xxsubinterpreters|_curses\w*|_dbm|_gdbm|_sqlite3|_tkinter"
    r"|readline|nis|ossaudiodev|spwd|_crypt|_multiprocessing|_posixshmem)\."
)
# What pip and setuptools leave in a venv: build tools, not bootstrap's.
# squawk_cli: the lint extra's record; its binary lives in the venv's bin/, which the bundle does not copy.
DROPPED_SITE = re.compile(r"^(pip|setuptools|wheel|pkg_resources|_distutils_hack|distutils-precedence\.pth"
                          r"|__pycache__|_virtualenv\.\w+|squawk_cli)(-[^/]*\.dist-info)?$")

ENTRY = '''\
#!{prefix}/bin/python3 -IS
"""bootstrap, self-contained: this bundle's own CPython runs entrypoint.main() (docs/container.md)."""
import os
import sys

sys.path.append(sys.prefix + "/lib/{py}/site-packages")
from entrypoint import main

# In the C locale CPython sets LC_CTYPE=C.UTF-8 for itself (PEP 538) and the app
# would inherit it: keep the app's environment as the container's was.
try:
    with open("/proc/self/environ", "rb") as fh:
        if not any(e.startswith(b"LC_CTYPE=") for e in fh.read().split(b"\\0")):
            os.environ.pop("LC_CTYPE", None)
except OSError:
    pass

try:
    main()
except SystemExit as exc:
    # As the console script does: end without the interpreter's teardown of every
    # loaded module (tens of milliseconds on each container start).
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if not isinstance(exc.code, (int, type(None))):
        print(exc.code, file=sys.stderr)
    try:
        sys.stdout.flush()
    finally:
        sys.stderr.flush()
        os._exit(code)
'''


def is_elf(path: Path) -> bool:
    """Whether `path` is an ELF file (executable or shared object)."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x7fELF"


def glibc_versions(path: Path) -> set[tuple[int, int]]:
    """
    The glibc symbol versions (`GLIBC_2.34` as (2, 34)) an ELF file requires,
    read from its version-needs section (what the dynamic loader checks before
    running anything). Empty for a static or non-ELF file.
    """
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        return set()
    if data[4:6] != b"\x02\x01":
        raise ValueError(f"{path}: only 64-bit little-endian ELF files are read")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: set[tuple[int, int]] = set()
    for section in sections:
        if section[1] != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strings = sections[section[6]][4]
        entry = section[4]
        for _ in range(section[7]):
            _version, count, _file, aux, following = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(count):
                _hash, _flags, _other, name, following_aux = struct.unpack_from("<IHHII", data, at)
                label = data[strings + name:data.index(b"\0", strings + name)].decode()
                match = re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", label)
                if match:
                    found.add((int(match.group(1)), int(match.group(2))))
                at += following_aux
            entry += following
    return found


def glibc_floor(folder: Path) -> tuple[tuple[int, int], Path]:
    """The highest glibc version any ELF file under `folder` requires, and that file."""
    needs = [(max(versions), path) for path in elf_files(folder) if (versions := glibc_versions(path))]
    if not needs:
        raise ValueError(f"no dynamically linked ELF file under {folder}")
    return max(needs)


def needed(path: Path) -> dict[str, Path]:
    """
    The shared libraries `path` loads (transitively, as ldd resolves them on the
    build machine), by soname, glibc's own left out.

    Raises:
        RuntimeError: a library is not found.
    """
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=False)
    if "statically linked" in result.stdout + result.stderr or "not a dynamic executable" in result.stderr:
        return {}
    if result.returncode != 0:
        raise RuntimeError(f"ldd {path} failed: {result.stderr.strip()}")
    libs: dict[str, Path] = {}
    for line in result.stdout.splitlines():
        name, _, rest = line.strip().partition(" => ")
        if name in GLIBC or name.startswith("/"):
            continue
        if rest.startswith("not found"):
            raise RuntimeError(f"{path} needs {name}, which is not found on this machine")
        where = rest.split(" (", 1)[0].strip()
        if where:
            libs[name] = Path(where)
    return libs


def patch_runpath(path: Path, runpath: str) -> None:
    """Give an ELF file a RUNPATH relative to its own location."""
    subprocess.run(["patchelf", "--set-rpath", runpath, str(path)], check=True, capture_output=True)


def copy_tree(src: Path, dst: Path, skip: Iterable[str] = ()) -> None:
    """Copy `src` into `dst` (files and folders, links resolved), leaving out top-level names in `skip`."""
    dropped = set(skip)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        if entry.name in dropped or entry.name.startswith("config-"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, dst / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif entry.is_file() and not entry.name.endswith(".pyc"):
            shutil.copy2(entry, dst / entry.name)


def to_bytecode(folder: Path) -> None:
    """Compile every .py under `folder` to a .pyc beside it, then remove the sources."""
    if not compileall.compile_dir(str(folder), quiet=1, legacy=True, workers=0):
        raise RuntimeError(f"compiling {folder} failed")
    for path in folder.rglob("*.py"):
        path.unlink()


def elf_files(folder: Path) -> Iterator[Path]:
    """Every regular ELF file under `folder`."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and is_elf(path):
            yield path


def interpreter_paths() -> tuple[Path, Path, Path]:
    """The base interpreter behind this (venv) Python: its binary, stdlib and lib-dynload folders."""
    binary = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    stdlib = Path(sysconfig.get_path("stdlib", vars={"installed_base": sys.base_prefix, "base": sys.base_prefix}))
    dynload = next((Path(p) for p in sys.path if p.endswith("lib-dynload") and os.path.isdir(p)), None)
    if dynload is None:
        raise RuntimeError("no lib-dynload folder on sys.path")
    return binary, stdlib, dynload


def site_packages(venv: Path) -> Path:
    """The venv's site-packages, where bootstrap must be installed as files (not editable)."""
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found or not (found[0] / "bootstrap" / "__init__.py").exists():
        raise RuntimeError(f"bootstrap is not installed (non-editable) in {venv}: pip install it there first")
    return found[0]


def build(venv: Path, out: Path, prefix: str, tini: Path | None, replace: dict[str, Path] | None = None) -> None:
    """Lay out the bundle in `out` (emptied first)."""
    if out.exists():
        shutil.rmtree(out)
    binary, stdlib, dynload = interpreter_paths()
    bin_dir, lib_dir = out / "bin", out / "lib"
    py_dir = lib_dir / PY
    bin_dir.mkdir(parents=True)
    lib_dir.mkdir()

    # The interpreter, the standard library (pruned) and its extension modules.
    shutil.copy2(binary, bin_dir / "python3")
    copy_tree(stdlib, py_dir, DROPPED_STDLIB)
    (py_dir / "lib-dynload").mkdir()
    for module in sorted(dynload.iterdir()):
        if module.name.endswith(".so") and not DROPPED_EXTENSIONS.match(module.name):
            shutil.copy2(module, py_dir / "lib-dynload" / module.name)

    # bootstrap, its dependencies and the container entry point.
    copy_tree(site_packages(venv), py_dir / "site-packages",
              [p.name for p in site_packages(venv).iterdir() if DROPPED_SITE.match(p.name) or p.suffix == ".pth"])
    shutil.copy2(REPO / "entrypoint.py", py_dir / "site-packages" / "entrypoint.py")

    # Shared libraries: everything the interpreter and the standard extension
    # modules load, glibc excepted. (psycopg_binary's wheel carries its own, found
    # through the RUNPATH auditwheel gave it.)
    consumers = [bin_dir / "python3", *sorted((py_dir / "lib-dynload").iterdir())]
    libs: dict[str, Path] = {}
    for path in consumers:
        libs.update(needed(path))
    libs.update({name: source for name, source in (replace or {}).items() if name in libs})
    for name, source in sorted(libs.items()):
        shutil.copy2(source, lib_dir / name)
        (lib_dir / name).chmod(0o755)
    for path in consumers:
        if needed(path):
            patch_runpath(path, "$ORIGIN/../lib" if path.parent == bin_dir else "$ORIGIN/../..")
    for name in libs:
        patch_runpath(lib_dir / name, "$ORIGIN")

    to_bytecode(py_dir)
    entry = bin_dir / "bootstrap"
    entry.write_text(ENTRY.format(prefix=prefix, py=PY))
    entry.chmod(0o755)
    if tini is not None:
        shutil.copy2(tini, bin_dir / "tini")
        (bin_dir / "tini").chmod(0o755)
    for path in out.rglob("*"):  # readable by any user the app image runs as
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode):
            path.chmod(mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0o111 if stat.S_ISDIR(mode) else 0))


CHECK_IMPORTS = r"""
import importlib, os, pkgutil, re, sys
sys.path.append(sys.argv[1])

def missing(exc):
    # The module whose absence made an import fail, following the exception chain.
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        exc = exc.__cause__ or exc.__context__
    return None

failures = []
for top in sys.argv[2:]:
    module = importlib.import_module(top)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), top + "."):
        if re.search(r"(^|[._])(tests?|win\w*|windows\w*|mbcs|oem)($|[._])", info.name):
            continue  # test suites, Windows-only modules and codecs
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            name = missing(exc)
            if (top in ("entrypoint", "bootstrap") or "shared object" in str(exc)
                    or (name is not None and name.split(".")[0] in sys.stdlib_module_names)):
                failures.append(f"{info.name}: {exc!r}")
            # else: an optional extra that the venv lacks too (dnspython, rich; the
            # system libpq that psycopg's ctypes fallback would look for)
dynload = next(p for p in sys.path if p.endswith("lib-dynload"))
for extension in sorted(os.listdir(dynload)):
    try:
        importlib.import_module(extension.split(".")[0])
    except ImportError as exc:
        failures.append(f"{extension}: {exc!r}")
import psycopg.pq
if psycopg.pq.__impl__ != "binary":
    failures.append(f"psycopg uses its {psycopg.pq.__impl__} implementation, not binary")
outside = [p for p in sys.path if not p.startswith(sys.prefix)]
if outside:
    failures.append(f"sys.path leaves the bundle: {outside}")
if failures:
    sys.exit("\n".join(failures))
"""
CHECKED_PACKAGES = ("entrypoint", "bootstrap", "click", "psycopg", "psycopg_binary", "structlog", "tenacity",
                    "typing_extensions", "asyncio", "decimal", "uuid", "zoneinfo", "encodings")


def check_imports(out: Path) -> None:
    """
    Import every module of bootstrap and its dependencies with the bundle's own
    interpreter, outside any venv: a module that needs a part of the standard
    library this bundle dropped fails the build (an optional third-party extra
    that the venv lacks too, such as dnspython, does not).
    """
    site = out / "lib" / PY / "site-packages"
    result = subprocess.run([str(out / "bin" / "python3"), "-IS", "-c", CHECK_IMPORTS, str(site), *CHECKED_PACKAGES],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the bundle cannot import what bootstrap needs:\n{result.stderr[-3000:]}")
    entry = subprocess.run([str(out / "bin" / "python3"), "-IS", str(out / "bin" / "bootstrap"), "--version"],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, check=False)
    if entry.returncode != 0 or not entry.stdout.startswith("bootstrap "):
        raise RuntimeError(f"bin/bootstrap --version failed:\n{entry.stdout[-1000:]}{entry.stderr[-3000:]}")


def main(argv: list[str]) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, required=True, help="a venv with bootstrap installed (not editable)")
    parser.add_argument("--out", type=Path, required=True, help="where to lay out the bundle")
    parser.add_argument("--prefix", default="/opt/bootstrap", help="where the bundle will live (the entry's #! line)")
    parser.add_argument("--tini", type=Path, help="a static tini to ship as bin/tini")
    parser.add_argument("--lib", action="append", default=[], metavar="SONAME=PATH",
                        help="ship PATH as the library SONAME instead of the build machine's (a lower glibc floor)")
    args = parser.parse_args(argv)
    if shutil.which("patchelf") is None:
        print("bundle: patchelf is missing (apt-get install patchelf)", file=sys.stderr)
        return 1
    replace = {}
    for item in args.lib:
        name, _, path = item.partition("=")
        if not name or not Path(path).is_file():
            parser.error(f"--lib {item}: expected SONAME=PATH of an existing file")
        replace[name] = Path(path).resolve()
    build(args.venv.resolve(), args.out.resolve(), args.prefix, args.tini, replace)
    check_imports(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
