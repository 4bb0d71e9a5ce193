"""The one backoff schedule: doubling, capped, jittered; the three uses and their documented bounds."""

from __future__ import annotations

import pytest

from bootstrap.backoff import DDL_RETRY, LOCK_POLL, WAIT, Backoff


def top(_low: float, high: float) -> float:
    """A random source that always answers the top of its range (no jitter)."""
    return high


def bottom(low: float, _high: float) -> float:
    """A random source that always answers the bottom of its range (the most jitter)."""
    return low


def test_pauses_double_up_to_the_cap() -> None:
    """Each pause is twice the one before until the cap, then stays there."""
    schedule = Backoff(0.1, 1.0, jitter=0.5)
    assert [0.1, 0.2, 0.4, 0.8, 1.0, 1.0] == [round(schedule.pause(n, top), 6) for n in range(6)]


def test_jitter_shortens_a_pause_by_at_most_its_fraction() -> None:
    """With jitter 0.25 a pause lies between 75% and 100% of its step."""
    schedule = Backoff(0.5, 8.0, jitter=0.25)
    assert 0.375 == schedule.pause(0, bottom)
    for n in range(10):
        assert schedule.step(n) * 0.75 <= schedule.pause(n) <= schedule.step(n)


def test_a_huge_step_number_stays_at_the_cap() -> None:
    """A very long wait never overflows: the step is the cap."""
    assert 1.0 == WAIT.step(10_000)


def test_initial_above_cap_is_the_cap() -> None:
    """A schedule whose first pause is above its cap waits the cap (tests pass such schedules)."""
    assert 3600.0 == Backoff(3600.0, 3600.0).pause(0, top)


@pytest.mark.parametrize(("schedule", "first", "longest"), [
    (WAIT, 0.025, 1.0),          # wait-db: tens of milliseconds up to 1 s (CONTRACT.md)
    (LOCK_POLL, 0.05, 0.5),      # polling another runner's lock (README: 50 ms growing to 0.5 s)
    (DDL_RETRY, 0.5, 8.0),       # --ddl-lock-retries: 0.5 s doubling, at most 8 s
], ids=["wait", "lock-poll", "ddl-retry"])
def test_the_three_schedules_keep_their_documented_bounds(schedule: Backoff, first: float, longest: float) -> None:
    """The first pause and the longest one are the documented ones."""
    assert (first, longest) == (schedule.pause(0, top), schedule.pause(50, top))
