"""
A real connection pooler in front of a real server: PgBouncer (Debian's package,
installed by the setup, or the run fails naming `apt-get install pgbouncer`) in
session and in transaction mode, in front of a throwaway cluster with
`max_connections = 20`. `server_reset_query` is empty, so nothing but bootstrap
itself cleans the server connections it hands back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import NamedTuple

import psycopg
import pytest
from psycopg import sql

from pgbouncer import PgBouncer
from pgcluster import Cluster


@pytest.fixture(scope="session")
def small_pg() -> Iterator[Cluster]:
    """A cluster with room for only 20 connections."""
    cluster = Cluster(fast=True, settings=("max_connections=20",))
    try:
        cluster.start()
        cluster.wait_ready()
    except Exception as exc:  # noqa: BLE001 - fail loudly, never skip
        cluster.destroy()
        pytest.fail(f"could not start the pooler tests' cluster: {exc}")
    yield cluster
    cluster.destroy()


def _bouncer(cluster: Cluster, mode: str, pool_size: int) -> Iterator[PgBouncer]:
    try:
        bouncer = PgBouncer(cluster.port, mode, pool_size=pool_size)
        bouncer.start()
    except Exception as exc:  # noqa: BLE001 - fail loudly, never skip
        pytest.fail(f"could not start PgBouncer ({mode} mode): {exc}")
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def session_pool(small_pg: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer, pool_mode = session, 5 server connections."""
    yield from _bouncer(small_pg, "session", 5)


@pytest.fixture(scope="session")
def transaction_pool(small_pg: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer, pool_mode = transaction, 5 server connections."""
    yield from _bouncer(small_pg, "transaction", 5)


@pytest.fixture(scope="session")
def single_pool(small_pg: Cluster) -> Iterator[PgBouncer]:
    """PgBouncer, session mode with ONE server connection: the next client gets the one bootstrap used."""
    yield from _bouncer(small_pg, "session", 1)


class Urls(NamedTuple):
    """One fresh database, reached directly and through each pooler."""

    name: str
    direct: str
    session: str
    transaction: str
    single: str


@pytest.fixture
def urls(small_pg: Cluster, session_pool: PgBouncer, transaction_pool: PgBouncer,
         single_pool: PgBouncer) -> Iterator[Urls]:
    """A fresh database on the small cluster; dropped afterwards."""
    name = f"bootstrap_pool_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(small_pg.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Urls(name, small_pg.dsn(name), session_pool.url(name), transaction_pool.url(name),
                   single_pool.url(name))
    finally:
        with psycopg.connect(small_pg.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def direct(urls: Urls) -> Iterator[psycopg.Connection]:
    """An autocommit connection straight to the fresh database, for assertions."""
    with psycopg.connect(urls.direct, autocommit=True) as conn:
        yield conn
