"""Property tests: the planner's decision and the splitter's faithfulness, over generated inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.errors import IntegrityError
from bootstrap.migrations import Kind, Migration
from bootstrap.plan import AppliedMigration, State, build_plan, evaluate
from bootstrap.sqlsplit import SqlSyntaxError, split_statements

# -- the planner ---------------------------------------------------------------------------

VERSION_STATES = ("applied", "changed", "pending", "missing")
REPEATABLE_STATES = ("applied", "changed", "new", "missing")


def _versioned(version: int, checksum: str) -> Migration:
    name = f"{version}_m.sql"
    return Migration(Kind.VERSIONED, version, "m", name, Path(name), checksum, True)


def _repeatable(name: str, checksum: str) -> Migration:
    return Migration(Kind.REPEATABLE, None, name, name, Path(name), checksum, True)


@settings(max_examples=400, deadline=None)
@given(
    versions=st.dictionaries(st.integers(0, 10**15), st.sampled_from(VERSION_STATES), max_size=12),
    repeatables=st.dictionaries(st.from_regex(r"R__[a-z]{1,6}\.sql", fullmatch=True),
                                st.sampled_from(REPEATABLE_STATES), max_size=4),
    out_of_order=st.booleans(),
    refuse_future=st.booleans(),
)
def test_planner_decides_as_documented(versions: dict[int, str], repeatables: dict[str, str],
                                       out_of_order: bool, refuse_future: bool) -> None:
    """
    Any mix of applied, changed, pending and missing gives the documented states and decision
    (a version missing above every local file is `future`).
    """
    files: list[Migration] = []
    rows: list[AppliedMigration] = []
    for version, state in sorted(versions.items()):
        if state != "missing":
            files.append(_versioned(version, "new" if state == "changed" else "same"))
        if state != "pending":
            rows.append(AppliedMigration(version, f"{version}_m.sql", Kind.VERSIONED, "same"))
    for name, state in sorted(repeatables.items()):
        if state != "missing":
            files.append(_repeatable(name, "new" if state == "changed" else "same"))
        if state != "new":
            rows.append(AppliedMigration(None, name, Kind.REPEATABLE, "same"))

    plan = evaluate(files, rows, out_of_order=out_of_order, refuse_future=refuse_future)
    newest_local = max((v for v, s in versions.items() if s != "missing"), default=None)
    future = {v for v, s in versions.items() if s == "missing" and (newest_local is None or v > newest_local)}
    expected_states = {str(v): State.FUTURE if v in future else {
        "applied": State.APPLIED, "changed": State.CHANGED, "pending": State.PENDING, "missing": State.MISSING}[s]
        for v, s in versions.items()}
    expected_states |= {n: {"applied": State.APPLIED, "changed": State.PENDING, "new": State.PENDING,
                            "missing": State.MISSING}[s] for n, s in repeatables.items()}
    assert expected_states == {(str(e.version) if e.version is not None else e.name): e.state for e in plan.entries}

    newest = max((v for v, s in versions.items() if s != "pending"), default=None)
    pending = sorted(v for v, s in versions.items() if s == "pending")
    late = [v for v in pending if newest is not None and v < newest]
    refuse = (any(s == "changed" or (s == "missing" and v not in future) for v, s in versions.items())
              or any(s == "missing" for s in repeatables.values())
              or (late and not out_of_order)
              or (future and refuse_future))
    states = [*("future" if v in future else s for v, s in versions.items()), *repeatables.values()]
    assert plan.up_to_date == (all(s in ("applied", "future") for s in states) and not refuse)
    if refuse:
        with pytest.raises(IntegrityError):
            build_plan(files, rows, out_of_order=out_of_order, refuse_future=refuse_future)
    else:
        decided = build_plan(files, rows, out_of_order=out_of_order, refuse_future=refuse_future)
        assert pending == [m.version for m in decided.pending]
        assert sorted(n for n, s in repeatables.items() if s in ("changed", "new")) == \
            [m.name for m in decided.repeatables]


# -- the splitter ----------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_word = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(
    lambda w: w.lower() not in ("begin", "end", "case", "e", "b", "x", "n", "u"))


@st.composite
def _token(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["word", "number", "string", "estring", "ident", "dollar", "line_comment",
                                 "block_comment", "parens", "operator"]))
    if kind == "word":
        return draw(_word)
    if kind == "number":
        return str(draw(st.integers(0, 10**6)))
    if kind == "string":
        return "'" + draw(_text).replace("'", "''") + "'"
    if kind == "estring":
        body = draw(_text).replace("\\", "\\\\").replace("'", "\\'")
        return "E'" + body + "'"
    if kind == "ident":
        return '"' + draw(_text).replace('"', '""') + '"'
    if kind == "dollar":
        tag = draw(st.sampled_from(["", "fn", "body_1"]))
        body = draw(_text)
        if f"${tag}$" in body or body.endswith("$"):
            body = body.replace("$", "")
        return f"${tag}${body}${tag}$"
    if kind == "line_comment":
        return "-- " + draw(_text).replace("\n", " ").replace("\r", " ") + "\n"
    if kind == "block_comment":
        return "/* " + draw(_text).replace("*/", "").replace("/*", "") + " */"
    if kind == "parens":
        return "(" + " ; ".join(draw(st.lists(_word, min_size=1, max_size=3))) + ")"
    return draw(st.sampled_from(["=", "+", "::", ",", "<>", "*"]))


@st.composite
def _statement(draw: st.DrawFn) -> str:
    first = draw(_word)
    rest = draw(st.lists(_token(), max_size=8))
    return " ".join([first, *rest])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statements=st.lists(_statement(), min_size=1, max_size=6),
       gaps=st.lists(st.sampled_from(["\n", " ", "\n\n", "\n-- note; here\n", "\r\n", "/* ; */\n"]),
                     min_size=6, max_size=6),
       final_semicolon=st.booleans())
def test_splitting_then_joining_keeps_every_statement(statements: list[str], gaps: list[str],
                                                      final_semicolon: bool) -> None:
    """Statements joined by ';' come back one for one, and the pieces re-join to the script byte for byte."""
    parts = []
    for i, statement in enumerate(statements):
        last = i == len(statements) - 1
        parts.append(statement + ("" if last and not final_semicolon else ";") + gaps[i])
    script = "".join(parts)
    split = split_statements(script)
    assert script == "".join(s.text for s in split.statements)
    expected = [s + ";" for s in statements]
    if not final_semicolon:  # an unterminated last statement runs to the end, trailing comments included
        expected[-1] = statements[-1] + gaps[len(statements) - 1]
    found = [s.text[s.code_start - s.start:] for s in split.code_statements]
    assert [e.strip() for e in expected] == [strip_tail(f) for f in found]


def strip_tail(piece: str) -> str:
    """A piece's code: trailing blanks dropped (its leading comments were already skipped)."""
    return piece.strip()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_rejoins_or_is_refused(text: str) -> None:
    """On any input the splitter either reports an unterminated token or loses no character."""
    try:
        split = split_statements(text)
    except SqlSyntaxError as exc:
        assert 0 <= exc.offset <= len(text)
        return
    assert text == "".join(s.text for s in split.statements)
