"""
A silent network partition: packets between bootstrap and the server dropped
(iptables on the server's port), the TCP connection left open, as a failed node
or a security-group change does. Each side notices within a bounded time
(keepalives and tcp_user_timeout, about 30 s): bootstrap exits instead of
hanging, and the server ends the abandoned session, which frees the migration
lock for the next runner. Needs root (iptables), as CI runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bootstrap.pg import advisory_key
from tests.faults.conftest import env_for, migrate_cmd
from tests.helpers import Spawned, poll, write

KEY = advisory_key("public", "bootstrap_migrations")
NOTICED_WITHIN_S = 60  # keepalives: 15 s idle + 3 probes 5 s apart, and tcp_user_timeout 30 s, with room


@pytest.fixture
def partition() -> Iterator[list[list[str]]]:
    """iptables rules added by the test (as argv to add); removed afterwards, whatever happened."""
    if os.geteuid() != 0 or shutil.which("iptables") is None:
        pytest.fail("the partition test drops packets with iptables, which needs root and iptables "
                    "(apt-get install iptables); CI runs as root")
    rules: list[list[str]] = []
    yield rules
    for rule in rules:
        subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)


def test_a_silent_partition_is_noticed_on_both_sides(new_cluster, sql_dir: Path,
                                                     partition: list[list[str]]) -> None:
    """Packets dropped mid-file: bootstrap exits 5 within a minute, the server frees the lock within a minute."""
    cluster = new_cluster()
    cluster.start()
    cluster.wait_ready()
    write(sql_dir, "1_slow.sql", "SELECT pg_sleep(600);")
    beside = f"host={cluster.root} port={cluster.port} user=postgres dbname=postgres"  # the Unix socket: unaffected
    with Spawned(migrate_cmd(), env_for(cluster.dsn(), sql_dir)) as proc, \
            psycopg.connect(beside, autocommit=True) as server:
        poll(lambda: server.execute("SELECT 1 FROM pg_stat_activity WHERE query LIKE '%%pg_sleep(600)%%'"
                                    " AND pid <> pg_backend_pid()").fetchone(), timeout=60, message="the slow file")
        for chain, side in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            rule = [chain, "-p", "tcp", "-i" if chain == "INPUT" else "-o", "lo", side, str(cluster.port), "-j", "DROP"]
            subprocess.run(["iptables", "-A", *rule], check=True)
            partition.append(rule)
        cut = time.monotonic()
        assert 5 == proc.wait(NOTICED_WITHIN_S), proc.err
        failed = next(e for e in proc.events() if e["event"] == "bootstrap_failed")
        assert "1_slow.sql: lost the connection while applying it" in failed["error"]
        assert time.monotonic() - cut < NOTICED_WITHIN_S
        poll(lambda: not server.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s::bigint::oid",
            [KEY & 0xFFFFFFFF]).fetchone(), timeout=NOTICED_WITHIN_S, interval=0.5,
            message="the server to end the abandoned session and free the lock")
