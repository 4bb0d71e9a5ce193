"""
Recognise a concurrent index build in a statement, and what it names.

`CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] [name] ON [ONLY] table`
and `REINDEX [(options)] {INDEX | TABLE | SCHEMA | DATABASE} CONCURRENTLY name`
(or, from PostgreSQL 14, `REINDEX (CONCURRENTLY [boolean]) {INDEX | TABLE} name`)
run outside a transaction, so a failed or cancelled build leaves its INVALID
index behind (REINDEX: `<name>_ccnew`). The applier asks this module which
index or table a statement names, so it can drop what a failed build left and
check that a finished one is valid. The statement is read with the lexer's own
tokens (`sqlsplit.head_tokens`). Pure: no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

from .sqlsplit import SqlSyntaxError, head_tokens


class Name(NamedTuple):
    """A possibly schema-qualified name, as PostgreSQL resolves it (unquoted words lowercased)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


class Build(NamedTuple):
    """
    A concurrent index build.

    Attributes:
        verb: `create` or `reindex`.
        target: what it names: `index` (CREATE's new index, REINDEX INDEX),
            `table` (REINDEX TABLE), `schema` or `database`.
        index_name: the index named (None: CREATE without a name, or REINDEX of a table, schema or database).
        table: CREATE's `ON` table, REINDEX TABLE's table.
        schema: REINDEX SCHEMA's schema.
    """

    verb: str
    target: str
    index_name: Name | None
    table: Name | None
    schema: str | None = None


class _Reader:
    """Walks the tokens of one statement head (`sqlsplit.head_tokens`)."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> str | None:
        """The next word or punctuation (not a quoted identifier or a string), or None."""
        i = self.at + ahead
        if i < len(self.tokens) and self.tokens[i][1] in ("word", "other"):
            return self.tokens[i][0]
        return None

    def accept(self, *words: str) -> bool:
        if all(self.peek(i) == word for i, word in enumerate(words)):
            self.at += len(words)
            return True
        return False

    def name(self) -> Name | None:
        """[schema.]name (quoted or not), or None when no identifier follows."""
        first = self._identifier()
        if first is None:
            return None
        if self.peek() == "." and self.at + 1 < len(self.tokens):
            self.at += 1
            second = self._identifier()
            if second is not None:
                return Name(first, second)
        return Name(None, first)

    def _identifier(self) -> str | None:
        if self.at < len(self.tokens) and self.tokens[self.at][1] in ("word", "ident"):
            self.at += 1
            return self.tokens[self.at - 1][0]
        return None

    def options(self) -> list[str]:
        """A parenthesised option list, `(verbose, concurrently true)`, as its words and values (none when absent)."""
        if self.peek() != "(":
            return []
        depth, words = 0, list[str]()
        while self.at < len(self.tokens):
            part, kind = self.tokens[self.at]
            self.at += 1
            if kind == "other":
                depth += 1 if part == "(" else -1 if part == ")" else 0
                if depth == 0:
                    return words
            if kind in ("word", "string"):  # a quoted value ('off') as its word
                words.append(part.lower())
        return words


_FALSE = frozenset({"false", "off", "0", "no"})


def _option_on(words: list[str], name: str) -> bool:
    """Whether a parenthesised option list turns `name` on (`name`, `name true`; not `name off`, `name 'off'`)."""
    if name not in words:
        return False
    value = words[words.index(name) + 1:][:1]
    return not value or value[0] not in _FALSE


def concurrent_build(text: str) -> Build | None:
    """
    The concurrent index build `text` starts, or None when it is not one.

    Args:
        text: one statement (leading comments allowed).
    """
    try:
        reader = _Reader(head_tokens(text))
    except SqlSyntaxError:  # the lexer split it: an unterminated token can only lie past the head's end
        return None
    if reader.accept("create"):
        reader.accept("unique")
        if not reader.accept("index", "concurrently"):
            return None
        reader.accept("if", "not", "exists")
        index = None if reader.peek() == "on" else reader.name()
        if not reader.accept("on"):
            return None
        reader.accept("only")
        table = reader.name()
        if index is not None and table is not None:
            index = Name(table.schema, index.name)  # an index lives in its table's schema
        return Build("create", "index", index, table)
    if reader.accept("reindex"):
        concurrent = _option_on(reader.options(), "concurrently")  # REINDEX (CONCURRENTLY [boolean]) ...
        target = reader.peek()
        if target not in ("index", "table", "schema", "database", "system"):
            return None
        reader.at += 1
        if not reader.accept("concurrently") and not concurrent:
            return None
        named = reader.name()
        if target == "index":
            return Build("reindex", "index", named, None)
        if target == "table":
            return Build("reindex", "table", None, named)
        if target == "schema":
            return Build("reindex", "schema", None, None, named.name if named else None)
        return Build("reindex", "database", None, None)
    return None
