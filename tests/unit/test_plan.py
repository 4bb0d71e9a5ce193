"""The planner decides from values alone: applied, pending, changed, missing, out of order."""

from __future__ import annotations

from pathlib import Path

import pytest

from bootstrap.errors import ExitCode, IntegrityError, UsageError
from bootstrap.migrations import Kind, Migration
from bootstrap.plan import AppliedMigration, State, build_plan, check_target, evaluate, up_to


def mig(version: int | None, checksum: str = "c", name: str | None = None) -> Migration:
    """A discovered file, built directly (no disk)."""
    if version is None:
        name = name or "R__v.sql"
        return Migration(Kind.REPEATABLE, None, "v", name, Path(name), checksum, True)
    name = name or f"{version}_m.sql"
    return Migration(Kind.VERSIONED, version, "m", name, Path(name), checksum, True)


def row(version: int | None, checksum: str = "c", name: str | None = None) -> AppliedMigration:
    """A ledger row, built directly."""
    if version is None:
        return AppliedMigration(None, name or "R__v.sql", Kind.REPEATABLE, checksum)
    return AppliedMigration(version, name or f"{version}_m.sql", Kind.VERSIONED, checksum)


CASES = [
    ("fresh", [mig(1), mig(2)], [], [1, 2], {"pending": 2}),
    ("up-to-date", [mig(1), mig(2)], [row(1), row(2)], [], {"applied": 2}),
    ("one-pending", [mig(1), mig(2)], [row(1)], [2], {"applied": 1, "pending": 1}),
    ("repeatable-new", [mig(None)], [], [None], {"pending": 1}),
    ("repeatable-changed", [mig(None, "new")], [row(None, "old")], [None], {"pending": 1}),
    ("repeatable-same", [mig(None)], [row(None)], [], {"applied": 1}),
]


@pytest.mark.parametrize(("files", "rows", "todo", "counts"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_decides(files: list[Migration], rows: list[AppliedMigration], todo: list[int | None],
                      counts: dict[str, int]) -> None:
    """The plan lists what to apply, in order, and counts every state."""
    plan = build_plan(files, rows)
    assert todo == [m.version for m in (*plan.pending, *plan.repeatables)]
    expected = {"applied": 0, "pending": 0, "changed": 0, "missing": 0, "future": 0, **counts}
    assert expected == plan.counts()


PROBLEMS = [
    ("changed", [mig(1, "new")], [row(1, "old")], State.CHANGED, "1_m.sql (version 1) changed after it was applied"),
    ("missing", [mig(2)], [row(1), row(2)], State.MISSING, "1_m.sql (version 1) was applied but its file is missing"),
    ("out-of-order", [mig(1), mig(2)], [row(2)], State.PENDING, "1_m.sql (version 1) is pending but version 2 is already applied"),
    ("repeatable-missing", [], [row(None)], State.MISSING, "R__v.sql (repeatable) was applied but its file is missing"),
]


@pytest.mark.parametrize(("files", "rows", "state", "message"), [c[1:] for c in PROBLEMS], ids=[c[0] for c in PROBLEMS])
def test_integrity_problems_refuse_naming_the_file(files: list[Migration], rows: list[AppliedMigration],
                                                   state: State, message: str) -> None:
    """Changed, missing and out-of-order files stop migrate (exit 6); status still shows them."""
    with pytest.raises(IntegrityError) as info:
        build_plan(files, rows)
    assert ExitCode.INTEGRITY == info.value.exit_code
    assert message in str(info.value)
    plan = evaluate(files, rows)
    assert state in [e.state for e in plan.entries]
    assert not plan.up_to_date


def test_out_of_order_allowed_when_asked() -> None:
    """--out-of-order applies the older pending version instead of refusing."""
    plan = build_plan([mig(1), mig(2), mig(3)], [row(2)], out_of_order=True)
    assert [1, 3] == [m.version for m in plan.pending]


def test_every_problem_is_listed() -> None:
    """Several problems are reported together, each naming its file."""
    with pytest.raises(IntegrityError) as info:
        build_plan([mig(1, "x"), mig(3)], [row(1), row(2), row(5), row(4)], refuse_future=True)
    problems = info.value.fields["problems"]
    assert ["1_m.sql", "2_m.sql", "3_m.sql", "4_m.sql", "5_m.sql"] == [p.split(" ")[0] for p in problems]


def test_entries_are_ordered_versions_then_repeatables() -> None:
    """Status lists versioned migrations by version, then repeatables by name."""
    plan = evaluate([mig(10), mig(2), mig(None, name="R__b.sql"), mig(None, name="R__a.sql")], [])
    assert ["2_m.sql", "10_m.sql", "R__a.sql", "R__b.sql"] == [e.name for e in plan.entries]


def rep_row(checksum: str, after: int | None) -> AppliedMigration:
    """A repeatable's ledger row, written after version `after` was applied."""
    return AppliedMigration(None, "R__v.sql", Kind.REPEATABLE, checksum, after_version=after)


def test_versions_newer_than_every_file_are_future() -> None:
    """An older image meets versions a newer release applied: `future`, left alone, still up to date."""
    plan = build_plan([mig(1), mig(2)], [row(1), row(2), row(3), row(4)])
    assert ([], []) == (list(plan.pending), list(plan.repeatables))
    assert [3, 4] == [e.version for e in plan.future]
    assert {"applied": 2, "future": 2} == {k: v for k, v in plan.counts().items() if v}
    assert plan.up_to_date


def test_a_missing_version_below_the_newest_file_is_still_refused() -> None:
    """Only versions above every local file are future; a gap below the newest one is missing (exit 6)."""
    with pytest.raises(IntegrityError, match=r"2_m\.sql \(version 2\) was applied but its file is missing"):
        build_plan([mig(1), mig(3)], [row(1), row(2), row(3), row(4)])


def test_future_versions_can_be_refused() -> None:
    """--refuse-future makes them an integrity problem, and status not up to date."""
    with pytest.raises(IntegrityError, match=r"3_m\.sql \(version 3\) was applied by a newer release"):
        build_plan([mig(1)], [row(1), row(3)], refuse_future=True)
    assert not evaluate([mig(1)], [row(1), row(3)], refuse_future=True).up_to_date


@pytest.mark.parametrize(("files", "after", "state", "reapplied"), [
    ([mig(1), mig(None, "old")], 2, State.FUTURE, False),      # written after version 2, which this image lacks
    ([mig(1), mig(None, "old")], 1, State.PENDING, True),      # written by this image's release: re-applied
    ([mig(1), mig(2), mig(None, "old")], 2, State.PENDING, True),  # same versions: this release's file wins
    ([mig(1)], 2, State.FUTURE, False),                        # a newer release's repeatable, no file here
], ids=["newer-release", "same-release", "same-versions", "file-not-here"])
def test_an_older_image_never_reapplies_a_newer_repeatable(files: list[Migration], after: int, state: State,
                                                           reapplied: bool) -> None:
    """A repeatable written after a version this image does not have is left as the newer release wrote it."""
    plan = build_plan(files, [row(1), row(2), rep_row("new", after)])
    assert state == next(e.state for e in plan.entries if e.name == "R__v.sql")
    assert reapplied == bool(plan.repeatables)


def test_check_target_is_a_usage_error() -> None:
    """`--to VERSION` must name a local versioned file: otherwise exit 2, naming the nearest version below."""
    files = [mig(1), mig(5), mig(None)]
    check_target(files, 5)
    with pytest.raises(UsageError) as info:
        check_target(files, 3)
    assert (ExitCode.USAGE, "--to 3: no versioned file with version 3 in the sql directory; the nearest below is "
            "1_m.sql") == (info.value.exit_code, str(info.value))


def test_up_to_keeps_versions_up_to_the_target_and_the_repeatables() -> None:
    """`--to 2` leaves 3 pending and keeps the repeatables, which run after as usual; None changes nothing."""
    plan = evaluate([mig(1), mig(2), mig(3), mig(None)], [row(1)])
    assert ([2], ["R__v.sql"]) == ([m.version for m in up_to(plan, 2).pending],
                                   [m.name for m in up_to(plan, 2).repeatables])
    assert plan == up_to(plan, None)
