"""The statement splitter: what hides a semicolon, and what it reports."""

from __future__ import annotations

import pytest

from bootstrap.sqlsplit import SqlSyntaxError, line_col, split_statements

CASES = [
    ("one", "SELECT 1;", ["SELECT 1;"]),
    ("two", "SELECT 1; SELECT 2;", ["SELECT 1;", "SELECT 2;"]),
    ("no-final-semicolon", "SELECT 1;\nSELECT 2", ["SELECT 1;", "SELECT 2"]),
    ("string", "SELECT 'a;b'; SELECT 2;", ["SELECT 'a;b';", "SELECT 2;"]),
    ("doubled-quote", "SELECT 'it''s;'; SELECT 2;", ["SELECT 'it''s;';", "SELECT 2;"]),
    ("e-string", r"SELECT E'\';'; SELECT 2;", [r"SELECT E'\';';", "SELECT 2;"]),
    ("standard-backslash", "SELECT 'a\\'; SELECT 2;", ["SELECT 'a\\';", "SELECT 2;"]),
    ("quoted-ident", 'CREATE TABLE "a;b" (x int); SELECT 2;', ['CREATE TABLE "a;b" (x int);', "SELECT 2;"]),
    ("line-comment", "SELECT 1; -- a;b\nSELECT 2;", ["SELECT 1;", "-- a;b\nSELECT 2;"]),
    ("nested-comment", "SELECT 1 /* a /* b; */ c; */; SELECT 2;", ["SELECT 1 /* a /* b; */ c; */;", "SELECT 2;"]),
    ("dollar", "DO $$ BEGIN PERFORM 1; END $$; SELECT 2;", ["DO $$ BEGIN PERFORM 1; END $$;", "SELECT 2;"]),
    ("dollar-tag", "SELECT $x$ $$ ; $x$; SELECT 2;", ["SELECT $x$ $$ ; $x$;", "SELECT 2;"]),
    ("param-not-dollar", "PREPARE p AS SELECT $1; SELECT 2;", ["PREPARE p AS SELECT $1;", "SELECT 2;"]),
    ("ident-with-dollar", "SELECT a$b FROM t; SELECT 2;", ["SELECT a$b FROM t;", "SELECT 2;"]),
    ("rule-parens", "CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2); SELECT 3;",
     ["CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2);", "SELECT 3;"]),
    ("begin-atomic",
     "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; SELECT 3;",
     ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;", "SELECT 3;"]),
    ("begin-atomic-case",
     "CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; SELECT 3;",
     ["CREATE OR REPLACE PROCEDURE p() BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;", "SELECT 3;"]),
    ("transaction-begin", "BEGIN; SELECT 1; COMMIT;", ["BEGIN;", "SELECT 1;", "COMMIT;"]),
    ("u-amp-string", "SELECT U&'d\\0061t;'; SELECT 2;", ["SELECT U&'d\\0061t;';", "SELECT 2;"]),
    ("interval-literal", "SELECT interval'1;day'; SELECT 2;", ["SELECT interval'1;day';", "SELECT 2;"]),
    # Past a statement's first four words identifiers are skipped: prefixes and "$" must still be seen.
    ("late-e-string", r"INSERT INTO t (a) VALUES (E'\';'); SELECT 2;", [r"INSERT INTO t (a) VALUES (E'\';');", "SELECT 2;"]),
    ("late-u-amp", "INSERT INTO t (a) VALUES (U&'x;y'); SELECT 2;", ["INSERT INTO t (a) VALUES (U&'x;y');", "SELECT 2;"]),
    ("late-dollar", "INSERT INTO t (a) VALUES ($q$;$q$); SELECT 2;", ["INSERT INTO t (a) VALUES ($q$;$q$);", "SELECT 2;"]),
    ("late-ident-dollar", "INSERT INTO t (a) VALUES (x$y$); SELECT 2;", ["INSERT INTO t (a) VALUES (x$y$);", "SELECT 2;"]),
    ("late-word-ending-e", "INSERT INTO t (a) VALUES (note'x'); SELECT 2;", ["INSERT INTO t (a) VALUES (note'x');", "SELECT 2;"]),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_splits_where_postgres_does(text: str, expected: list[str]) -> None:
    """Each case splits into the statements PostgreSQL would run, losing no character."""
    script = split_statements(text)
    assert expected == [s.text.strip() for s in script.code_statements]
    assert text == "".join(s.text for s in script.statements)


def test_comment_only_tail_has_no_code() -> None:
    """A trailing comment is kept as a piece with no code (the server runs nothing for it)."""
    script = split_statements("SELECT 1;\n-- the end\n")
    assert [True, False] == [s.has_code for s in script.statements]


def test_words_are_the_first_keywords() -> None:
    """Each statement knows its first keywords, lowercased (for validation)."""
    script = split_statements("-- c\nCreate Index Concurrently i ON t (a);")
    assert ("create", "index", "concurrently", "i") == script.code_statements[0].words


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("SELECT 1;\nSELECT 'abc", "unterminated string", 2),
        ('SELECT "abc', "unterminated quoted identifier", 1),
        ("SELECT 1;\n\nDO $f$ BEGIN", "unterminated dollar-quoted string $f$", 3),
        ("SELECT 1 /* a /* b */", "unterminated /* comment", 1),
        ("SELECT E'\\'", "unterminated string", 1),
    ],
    ids=["string", "identifier", "dollar", "comment", "e-string-escaped-quote"],
)
def test_unterminated_is_reported_with_its_line(text: str, message: str, line: int) -> None:
    """An unterminated quote or comment is an error pointing at where it starts."""
    with pytest.raises(SqlSyntaxError) as info:
        split_statements(text)
    assert message == str(info.value)
    assert line == line_col(text, info.value.offset)[0]


def test_backslash_outside_strings_is_flagged() -> None:
    r"""A psql meta-command (\set, \i) is flagged; a backslash inside a string is not."""
    script = split_statements("SELECT E'\\n', '\\';\n\\set x 1\n")
    assert [2] == [line_col(script.text, o)[0] for o in script.backslashes]


def test_line_col_is_one_based() -> None:
    """Line and column count from 1, as editors do."""
    assert (1, 1) == line_col("abc\ndef", 0)
    assert (2, 2) == line_col("abc\ndef", 5)
