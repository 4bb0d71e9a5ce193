"""
The one backoff schedule and the one retry loop.

Every wait of bootstrap is `retry` over a `Backoff`: waiting for the database
(tens of milliseconds up to 1 s), polling another runner's migration lock
(50 ms up to 0.5 s), retrying a file that could not get its locks (0.5 s up to
8 s), and waiting for another runner's migrations. tenacity drives the retries;
it is imported only once a first attempt asks for one, so a start that never
waits never loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")


class Backoff(NamedTuple):
    """
    Pauses that double from `initial_s` up to `max_s`, each shortened by up to
    `jitter` (a fraction) so that runners started together spread out.

    Attributes:
        initial_s: the first pause, before jitter.
        max_s: no pause is longer.
        jitter: 0.5 means each pause is between half and all of its step.
    """

    initial_s: float
    max_s: float
    jitter: float = 0.5

    def step(self, n: int) -> float:
        """The n-th pause (0-based) before jitter."""
        if self.initial_s >= self.max_s:
            return self.max_s
        # Doubling past the cap would overflow for large n: stop at the cap.
        return min(self.max_s, self.initial_s * 2.0 ** min(n, 64))

    def pause(self, n: int, uniform: Callable[[float, float], float] | None = None) -> float:
        """
        The n-th pause (0-based), jittered.

        Args:
            n: how many pauses came before this one.
            uniform: the random source (`random.uniform` when None; tests pass their own).
        """
        if uniform is None:
            import random  # only once something has to wait: not on every container start

            uniform = random.uniform
        return self.step(n) * uniform(1.0 - self.jitter, 1.0)  # jitter, not cryptography


# Waiting for the database: the first pause is tens of milliseconds, the longest one second.
WAIT = Backoff(0.025, 1.0, 0.5)
# Polling the migration lock another runner holds.
LOCK_POLL = Backoff(0.05, 0.5, 0.5)
# Retrying a file (or statement) that could not get its locks within --ddl-lock-timeout.
DDL_RETRY = Backoff(0.5, 8.0, 0.25)


def retry(
    attempt: Callable[[], T],
    *,
    again: Callable[[BaseException | None, Any], bool],
    pauses: Backoff | Callable[[int], float],
    deadline: float | None = None,
    tries: int | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    before_sleep: Callable[[int, float], None] | None = None,
) -> T:
    """
    Run `attempt`, and again after a pause for as long as `again` says so.

    Args:
        attempt: one try; its result, or its exception, is the outcome.
        again: given (exception or None, result), whether to try once more.
        pauses: the schedule (a `Backoff`), or a function of how many pauses came before.
        deadline: `time.monotonic()` after which no attempt starts (each pause ends by it).
        tries: at most this many attempts in all.
        sleep: how to pause (a wait that can end early: a LISTEN, a port that opens).
        before_sleep: told (attempts made, the pause) before each pause.

    Returns:
        The last attempt's result: the one `again` accepted, or the last one
        made when the deadline or `tries` ended the retries.

    Raises:
        The last attempt's exception, when it raised one.
    """
    pause_of = pauses.pause if isinstance(pauses, Backoff) else pauses

    def pause(made: int) -> float:
        wanted = pause_of(made - 1)
        return wanted if deadline is None else max(0.0, min(wanted, deadline - time.monotonic()))

    def stopped(made: int) -> bool:
        return (tries is not None and made >= tries) or (deadline is not None and time.monotonic() >= deadline)

    try:
        result: Any = attempt()
        error: BaseException | None = None
    except Exception as exc:  # noqa: BLE001 - `again` decides; re-raised below when it declines
        result, error = None, exc
    if not again(error, result) or stopped(1):
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]
    import tenacity  # the first retry: a start that never waits never loads it

    first = pause(1)
    if before_sleep is not None:
        before_sleep(1, first)
    sleep(first)

    def outcome_wants_retry(state: tenacity.RetryCallState) -> bool:
        assert state.outcome is not None
        failed = state.outcome.failed
        return again(state.outcome.exception() if failed else None, None if failed else state.outcome.result())

    def report(state: tenacity.RetryCallState) -> None:
        if before_sleep is not None:
            before_sleep(state.attempt_number + 1, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=outcome_wants_retry,
        stop=lambda state: stopped(state.attempt_number + 1),
        wait=lambda state: pause(state.attempt_number + 1),
        sleep=sleep,
        before_sleep=report,
        reraise=True,
        # Stopped on a result the caller would have retried (a lock still held): hand it back.
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
    )
    return retrying(attempt)
