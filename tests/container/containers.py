"""
What the container tests share besides fixtures: URLs, the test roles' passwords,
detached containers, and what the host sees of their processes (its /proc, so no
tool is needed inside an image: the Node image has no Python, the distroless one
not even a shell).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

import container

MIGRATOR_PASSWORD = "M1grator-" + uuid.uuid4().hex[:10]
APP_PASSWORD = "App-" + uuid.uuid4().hex[:10]


@dataclass(frozen=True)
class Base:
    """An image the bundle is tried on, and its glibc version."""

    image: str
    glibc: tuple[int, int]


def url(base_dsn: str, dbname: str, user: str, password: str) -> str:
    """A URL for `user` on the test server, reachable from a --network host container."""
    params = conninfo_to_dict(base_dsn)
    host = params.get("host", "127.0.0.1")
    if host.startswith("/"):
        host = "127.0.0.1"
    return f"postgresql://{user}:{password}@{host}:{params.get('port', '5432')}/{dbname}"


def superuser_url(base_dsn: str, dsn: str) -> str:
    """The test server's superuser URL for the database of `dsn`."""
    base = conninfo_to_dict(base_dsn)
    return url(base_dsn, conninfo_to_dict(dsn)["dbname"], base.get("user", "postgres"), base.get("password", ""))


@dataclass(frozen=True)
class Process:
    """A process of a container, as the host's /proc shows it."""

    host_pid: int
    pid: int  # in the container's PID namespace
    parent_host_pid: int
    uid: str
    state: str
    name: str
    argv: list[str]
    env_names: list[str]


def host_process(host_pid: int) -> Process | None:
    """One process from the host's /proc (None once it is gone)."""
    try:
        status = Path(f"/proc/{host_pid}/status").read_text()
        argv = Path(f"/proc/{host_pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{host_pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Process(
        host_pid=host_pid,
        pid=int(fields["NSpid"].split()[-1]),
        parent_host_pid=int(fields["PPid"]),
        uid=fields["Uid"].split()[0],
        state=fields["State"].split()[0],
        name=fields["Name"].strip(),
        argv=[a.decode(errors="replace") for a in argv if a],
        env_names=sorted(e.split(b"=", 1)[0].decode() for e in environ if e),
    )


class Container:
    """A detached container and what it printed."""

    def __init__(self, name: str) -> None:
        self.name = name

    def logs(self) -> str:
        result = container.podman("logs", self.name, check=False)
        return (result.stdout or "") + (result.stderr or "")

    def events(self) -> list[dict]:
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def state(self) -> dict:
        return json.loads(container.podman("inspect", self.name).stdout)[0]["State"]

    def processes(self) -> list[Process]:
        """PID 1 of the container, then every process descending from it."""
        root = self.state()["Pid"]
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    status = Path(f"/proc/{entry}/status").read_text()
                except OSError:
                    continue
                ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
                parents[int(entry)] = int(ppid)
        members = {root}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in members and pid not in members:
                    members.add(pid)
                    grew = True
        found = [host_process(pid) for pid in sorted(members, key=lambda p: (p != root, p))]
        return [p for p in found if p is not None]
