"""Racing replicas: many runners at once, every file applied exactly once, none failing, none hanging."""

from __future__ import annotations

from pgcluster import Cluster
from race import race

ROUNDS = 50
RUNNERS = 8
FILES = 42


def test_racing_runners_apply_each_file_exactly_once(fast_pg: Cluster) -> None:
    """8 runners start together on a fresh database with 43 files, 50 rounds: 0 double applies, 0 failures."""
    result = race(fast_pg.dsn(), rounds=ROUNDS, runners=RUNNERS, files=FILES)
    assert [] == result.problems
    assert (0, 0, 0) == (result.failures, result.double_applies, result.missing_applies)
    assert ROUNDS * RUNNERS == result.runner_runs
    assert ROUNDS * FILES == result.files_applied


def test_racing_runners_survive_create_index_concurrently(fast_pg: Cluster) -> None:
    """While the lock holder runs CREATE INDEX CONCURRENTLY on 200k rows, 8 waiting runners cause no hang."""
    result = race(fast_pg.dsn(), rounds=3, runners=RUNNERS, files=12, concurrent_index=True)
    assert [] == result.problems
    assert (0, 0) == (result.failures, result.double_applies)
