"""
Throwaway PgBouncer instances for the tests: a real connection pooler in front
of a throwaway PostgreSQL, in session or transaction mode.

Finds the `pgbouncer` binary (PATH, /usr/sbin), or installs Debian's package
when running as root with apt-get (as the container tools are installed), or
fails naming the command that installs it. PgBouncer refuses to run as root,
so as root it runs as the `postgres` user (or `nobody`), like the clusters.

    python scripts/pgbouncer.py PORT_OF_POSTGRES session   # prints a URL, keeps running
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgcluster import _runas_user, free_port

INSTALL = "apt-get install pgbouncer"


def find_pgbouncer() -> str | None:
    """The pgbouncer executable, if installed."""
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer") if Path(p).exists()),
        None,
    )


def ensure_pgbouncer() -> str:
    """Find pgbouncer, installing Debian's package when possible; else fail naming the install command."""
    found = find_pgbouncer()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, env=env)
        result = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbouncer"],
                                capture_output=True, text=True, env=env, check=False)
        found = find_pgbouncer()
        if found:
            return found
        raise RuntimeError(f"pgbouncer is needed for the pooler tests and `{INSTALL}` failed: {result.stderr[-500:]}")
    raise RuntimeError(f"pgbouncer is needed for the pooler tests: install it ({INSTALL}, or your system's package)")


class PgBouncer:
    """
    One PgBouncer in front of a PostgreSQL on 127.0.0.1.

    Args:
        server_port: the PostgreSQL port.
        pool_mode: session or transaction.
        pool_size: server connections per database and user.
        reset_query: `server_reset_query` (empty: nothing cleans a server connection between
            clients but the client itself, which is what the tests want to see).
    """

    def __init__(self, server_port: int, pool_mode: str, *, pool_size: int = 5, reset_query: str = "") -> None:
        self.binary = ensure_pgbouncer()
        self.port = free_port()
        self.user = _runas_user()
        self.root = Path(tempfile.mkdtemp(prefix=f"bootstrap-pgbouncer-{pool_mode}-"))
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 500\n"
            f"server_reset_query = {reset_query}\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        os.chmod(self.root, 0o755)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it accepts connections."""
        args = [self.binary, str(self.root / "pgbouncer.ini")]
        # Its output goes to a file: a pipe nobody reads would fill up and stop the pooler dead.
        # As root it runs as the postgres user itself (not under runuser), so stop() signals
        # pgbouncer, not a wrapper that might leave it running.
        with open(self.root / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, user=self.user,
                                         group=pwd.getpwnam(self.user).pw_gid if self.user else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                output = (self.root / "stderr.log").read_text(errors="replace")
                raise RuntimeError(f"pgbouncer exited {self.proc.returncode}: {output[-2000:]}{self.log()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"pgbouncer on port {self.port} did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        """What it logged."""
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def url(self, dbname: str) -> str:
        """A URL for user postgres through this pooler."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        """Stop it and remove its files."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: immediate shutdown (SIGINT would wait for every client)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    """`PORT MODE`: run a pooler in front of 127.0.0.1:PORT until interrupted."""
    if len(argv) != 2 or argv[1] not in ("session", "transaction"):
        print(__doc__, file=sys.stderr)
        return 2
    bouncer = PgBouncer(int(argv[0]), argv[1])
    bouncer.start()
    print(bouncer.url("postgres"), flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        bouncer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
