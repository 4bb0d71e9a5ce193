"""Helpers shared by the tests: files, subprocesses, logs, polling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# Variables a developer's shell may carry that would change what a test sees.
_SCRUBBED = ("DATABASE_URL", "DATABASE_URL_FILE", "BOOTSTRAP_DATABASE_URL",
             "BOOTSTRAP_DATABASE_URL_FILE", "PGHOST", "PGPORT", "PGUSER", "PGDATABASE",
             "PGPASSWORD", "PGOPTIONS", "PGSSLMODE")
# BOOTSTRAP_* variables of the test harness, not of bootstrap: kept, so that a child
# process (the demo, a nested run) uses the same PostgreSQL version and download cache.
_HARNESS = ("BOOTSTRAP_PG_VERSION", "BOOTSTRAP_CACHE", "BOOTSTRAP_PG_BINDIR", "BOOTSTRAP_PODMAN_CACHE", "BOOTSTRAP_TEST_PORTS")


def write(folder: Path, name: str, text: str | bytes) -> Path:
    """Write one migration file."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without connection variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in _SCRUBBED and (not k.startswith("BOOTSTRAP_") or k in _HARNESS)}
    env.update(extra)
    return env


def bootstrap_cmd(*args: str) -> list[str]:
    """argv running bootstrap as users do (`python -m bootstrap`)."""
    return [sys.executable, "-m", "bootstrap", *args]


def run_cli(args: Sequence[str], env: Mapping[str, str] | None = None, *,
            cwd: Path | None = None, timeout: float = 120, stdin: Any = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m bootstrap ARGS` to completion."""
    return subprocess.run(
        bootstrap_cmd(*args), env=dict(env if env is not None else clean_env()), cwd=cwd,
        capture_output=True, text=True, timeout=timeout, stdin=stdin if stdin is not None else subprocess.DEVNULL,
        check=False,
    )


def logs(stderr: str) -> list[dict[str, Any]]:
    """Parse JSON log lines; a line that is not JSON fails the test."""
    out = []
    for line in stderr.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def events(stderr: str) -> list[str]:
    """The event names, in order."""
    return [entry["event"] for entry in logs(stderr)]


def last_error(stderr: str) -> dict[str, Any]:
    """The `bootstrap_failed` line."""
    failed = [e for e in logs(stderr) if e["event"] == "bootstrap_failed"]
    assert failed, f"no bootstrap_failed line in:\n{stderr}"
    return failed[-1]


def poll(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.02,
         message: str = "condition") -> T:
    """Return condition()'s first truthy value, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def repo_versions() -> list[int]:
    """The versions of this repository's own sql/ files: what migrating it records, in order."""
    return sorted(int(p.name.split("_", 1)[0]) for p in (REPO / "sql").glob("[0-9]*_*.sql")
                  if not p.name.endswith(".down.sql"))


def ledger(conn: Any, table: str = "bootstrap.bootstrap_migrations") -> list[tuple[Any, ...]]:
    """(version, name, kind) of every ledger row, in order."""
    schema, name = table.split(".")
    exists = conn.execute("SELECT to_regclass(%s)", [f"{schema}.{name}"]).fetchone()[0]
    if exists is None:
        return []
    from psycopg import sql

    return conn.execute(
        sql.SQL("SELECT version, name, kind FROM {} ORDER BY version NULLS LAST, name").format(
            sql.Identifier(schema, name))
    ).fetchall()


def user_objects(conn: Any) -> list[tuple[str, str]]:
    """Every schema and relation that is not PostgreSQL's own: what a change that left nothing behind leaves."""
    return conn.execute(
        "SELECT 'schema', nspname::text FROM pg_namespace WHERE nspname <> 'public' AND nspname NOT LIKE 'pg\\_%%'"
        " AND nspname <> 'information_schema'"
        " UNION ALL SELECT 'relation', n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_t%%'"
        " ORDER BY 1, 2"
    ).fetchall()


def table_exists(conn: Any, name: str) -> bool:
    """Whether a relation exists."""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


class Spawned:
    """A bootstrap (or any) process whose output is collected line by line as it runs."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], **kwargs: Any) -> None:
        import threading

        self.proc = subprocess.Popen(list(argv), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True, **kwargs)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True)]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)
        stream.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self) -> list[dict[str, Any]]:
        """JSON log lines so far."""
        out = []
        for line in list(self.stderr):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def wait_for_event(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until a log line with this event appears (or the process ends)."""
        def found() -> dict[str, Any] | None:
            for entry in self.events():
                if entry.get("event") == name:
                    return entry
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited {self.proc.returncode} before {name}:\n{''.join(self.stderr)}")
            return None
        return poll(found, timeout=timeout, message=f"event {name}")

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for exit and for the output to be read."""
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(10)
        return code

    def stop(self) -> None:
        """Kill it if still running (teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def __enter__(self) -> Spawned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    @property
    def out(self) -> str:
        return "".join(self.stdout)
