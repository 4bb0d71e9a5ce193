"""
The locker contract (after goose's lock/locktesting): what any `Locker` must do,
run against the advisory locker. A future locker (a lease table, for
transaction-mode poolers) gets a factory here and must pass the same tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import psycopg
import pytest
from structlog.testing import CapturingLogger

from bootstrap.backoff import LOCK_POLL, Backoff
from bootstrap.errors import LockTimeoutError
from bootstrap.pg import AdvisoryLocker, Session, advisory_key
from tests.helpers import poll

KEY = advisory_key("public", "bootstrap_migrations")


class Contender(NamedTuple):
    """A locker on its own connection, and how to kill its holder the hard way."""

    locker: AdvisoryLocker
    kill: Callable[[], None]
    log: CapturingLogger


Factory = Callable[..., Contender]


@pytest.fixture(params=["advisory"])
def make(request: pytest.FixtureRequest, fresh_db: str, db: psycopg.Connection) -> Iterator[Factory]:
    """Contenders for one lock; every connection is closed afterwards."""
    opened: list[Session] = []

    def advisory(timeout_s: float = 30.0, poll_every: Backoff = LOCK_POLL) -> Contender:
        log = CapturingLogger()
        session = Session(psycopg.connect(fresh_db, autocommit=True), log)
        opened.append(session)
        pid = session.conn.info.backend_pid
        locker = AdvisoryLocker(session, KEY, timeout_s=timeout_s, log=log, poll=poll_every)
        return Contender(locker, lambda: db.execute("SELECT pg_terminate_backend(%s)", [pid]), log)

    yield {"advisory": advisory}[request.param]
    for session in opened:
        session.close()


def events(log: CapturingLogger) -> list[str]:
    """The event names a contender logged."""
    return [call.args[0] for call in log.calls]


def test_racing_lockers_hold_one_at_a_time(make: Factory) -> None:
    """Six lockers racing for the lock: every one gets it, never two at once."""
    contenders = [make() for _ in range(6)]
    guard = threading.Lock()
    state: dict[str, Any] = {"holding": 0, "most": 0, "started": 0, "served": 0}
    errors: list[BaseException] = []

    def race(contender: Contender) -> None:
        try:
            with guard:
                state["started"] += 1
            assert contender.locker.acquire()
            with guard:
                state["holding"] += 1
                state["most"] = max(state["most"], state["holding"])
                first = state["served"] == 0
            if first:  # hold the lock until every other runner is trying for it
                poll(lambda: state["started"] == len(contenders), message="every locker to try")
            with guard:
                state["holding"] -= 1
                state["served"] += 1
            contender.locker.release()
        except BaseException as exc:  # noqa: BLE001 - a thread's failure is reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(c,), daemon=True) for c in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [] == errors
    assert (6, 1) == (state["served"], state["most"])


def test_release_wakes_a_waiter(make: Factory, db: psycopg.Connection) -> None:
    """A waiter goes on as soon as the holder releases, not at its next poll (an hour away here)."""
    holder, waiter = make(), make(timeout_s=7200, poll_every=Backoff(3600.0, 3600.0))
    assert holder.locker.acquire()
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(waiter.locker.acquire()), daemon=True)
    thread.start()
    poll(lambda: "lock_waiting" in events(waiter.log), message="the waiter to wait")
    holder.locker.release()
    thread.join(30)
    assert [True] == got, "the waiter slept on after the lock was released"


def test_a_killed_holders_lock_is_free(make: Factory) -> None:
    """A holder killed without releasing (its connection gone) leaves no lock behind."""
    holder, next_one = make(), make(timeout_s=10)
    assert holder.locker.acquire()
    holder.kill()
    assert next_one.locker.acquire()
    assert "lock_acquired" in events(next_one.log)


def test_timeout_names_the_holder(make: Factory) -> None:
    """Past its timeout a waiter gives up (exit 7) and says who holds the lock."""
    holder, waiter = make(), make(timeout_s=0.3)
    assert holder.locker.acquire()
    with pytest.raises(LockTimeoutError, match=r"held the migration lock for more than 0\.3s \(held by pid \d+"):
        waiter.locker.acquire()
    assert holder.locker.holder().startswith("held by pid ")


def test_a_waiter_stops_when_the_work_is_done(make: Factory) -> None:
    """While waiting, `still_needed` answering no ends the wait without the lock; the holder keeps it."""
    holder, waiter = make(), make(timeout_s=30)
    assert holder.locker.acquire()
    assert not waiter.locker.acquire(lambda: False)
    assert "lock_not_needed" in events(waiter.log)
    assert holder.locker.holder() != ""


def test_released_lock_can_be_taken_again(make: Factory) -> None:
    """Release gives the lock back: the next runner takes it at once, and nobody holds it after."""
    first, second = make(), make(timeout_s=5)
    assert first.locker.acquire()
    first.locker.release()
    assert second.locker.acquire()
    assert ["lock_acquired"] == events(second.log)
    second.locker.release()
    assert "" == first.locker.holder()
