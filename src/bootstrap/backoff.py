"""
The one backoff schedule: exponential, capped, with jitter.

Used three ways, each a `Backoff` value: waiting for the database (tens of
milliseconds up to 1 s), polling another runner's migration lock (50 ms up to
0.5 s) and retrying a file that could not get its locks (0.5 s up to 8 s).
Pure: no I/O; the caller sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple


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
