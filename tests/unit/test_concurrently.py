"""Recognising concurrent index builds and what they name (pure)."""

from __future__ import annotations

import pytest

from bootstrap.concurrently import Build, Name, concurrent_build

CASES = [
    ("named", "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id ON public.t (id);",
     Build("create", "index", Name("public", "a_id"), Name("public", "t"))),
    ("unique-quoted", '-- the key\ncreate unique index concurrently "Big Idx" on "S"."T" using btree (a);',
     Build("create", "index", Name("S", "Big Idx"), Name("S", "T"))),
    ("unnamed", "CREATE INDEX CONCURRENTLY ON ONLY t (a)", Build("create", "index", None, Name(None, "t"))),
    ("reindex-index", "REINDEX (VERBOSE) INDEX CONCURRENTLY s.ix;", Build("reindex", "index", Name("s", "ix"), None)),
    ("reindex-option", "REINDEX (CONCURRENTLY) INDEX ix", Build("reindex", "index", Name(None, "ix"), None)),
    ("reindex-option-true", "REINDEX (VERBOSE, CONCURRENTLY true) TABLE t", Build("reindex", "table", None, Name(None, "t"))),
    ("reindex-option-off", "REINDEX (CONCURRENTLY off) TABLE t", None),
    ("reindex-option-quoted-off", "REINDEX (CONCURRENTLY 'off') TABLE t", None),
    ("reindex-table", "REINDEX TABLE CONCURRENTLY t", Build("reindex", "table", None, Name(None, "t"))),
    ("reindex-schema", "REINDEX SCHEMA CONCURRENTLY app", Build("reindex", "schema", None, None, "app")),
    ("reindex-database", "REINDEX DATABASE CONCURRENTLY", Build("reindex", "database", None, None)),
    ("not-concurrent", "CREATE INDEX a ON t (a)", None),
    ("plain-reindex", "REINDEX TABLE t", None),
    ("other", "SELECT 'CREATE INDEX CONCURRENTLY x ON y (z)'", None),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_builds_are_recognised(text: str, expected: Build | None) -> None:
    """The build, its index (in its table's schema) and its table, as PostgreSQL would resolve the names."""
    assert expected == concurrent_build(text)
