"""
Fault-injection fixtures: a fast throwaway cluster of the suite's own, fresh
databases on it, and a gate: an advisory lock the test holds so that a
migration blocks at a known point (`SELECT pg_advisory_xact_lock(GATE)` in the file).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgcluster import Cluster
from tests.helpers import bootstrap_cmd, clean_env, poll

GATE = 424242
GATE_SQL = f"SELECT pg_advisory_xact_lock({GATE});\n"


@pytest.fixture(scope="session")
def fast_pg() -> Iterator[Cluster]:
    """A cluster of the fault suite's own (fsync off: these tests are about concurrency, not durability)."""
    cluster = Cluster(fast=True, settings=("max_connections=200",))
    try:
        cluster.start()
        cluster.wait_ready()
    except Exception as exc:  # noqa: BLE001 - fail loudly, never skip
        cluster.destroy()
        pytest.fail(f"could not start the fault suite's cluster: {exc}")
    yield cluster
    cluster.destroy()


@pytest.fixture
def fdb(fast_pg: Cluster) -> Iterator[str]:
    """A fresh database on the fast cluster: its URL."""
    name = f"bootstrap_fault_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(fast_pg.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield fast_pg.dsn(name)
    finally:
        with psycopg.connect(fast_pg.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fconn(fdb: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to that database, for assertions."""
    with psycopg.connect(fdb, autocommit=True) as conn:
        yield conn


class Gate:
    """Holds the gate lock on its own connection; a migration containing GATE_SQL waits on it."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("SELECT pg_advisory_lock(%s)", [GATE])

    def waiter_pid(self) -> int | None:
        """The backend waiting at the gate, if any."""
        row = self.conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = %s", [GATE]
        ).fetchone()
        return row[0] if row else None

    def wait_for_waiter(self, timeout: float = 60) -> int:
        """Poll until a migration is blocked at the gate; its backend pid."""
        return poll(self.waiter_pid, timeout=timeout, message="a migration to reach the gate")

    def open(self) -> None:
        """Let migrations through."""
        if not self.conn.closed:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", [GATE])
            self.conn.close()


@pytest.fixture
def gate(fdb: str) -> Iterator[Gate]:
    """The gate, closed; opened (released) at teardown."""
    g = Gate(fdb)
    try:
        yield g
    finally:
        g.open()


def env_for(url: str, sql_dir: Path, **extra: str) -> dict[str, str]:
    """bootstrap's environment for a fault test."""
    return clean_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(sql_dir), **extra)


def migrate_cmd() -> list[str]:
    """`python -m bootstrap migrate`."""
    return bootstrap_cmd("migrate")


def db_url(base: str, dbname: str) -> str:
    """Another database on the same server."""
    return make_conninfo(base, dbname=dbname)
