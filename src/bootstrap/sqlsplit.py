"""
A SQL lexer that splits a script into statements the way PostgreSQL (and psql) do.

It understands what can hide a semicolon: `--` and nested `/* */` comments,
'standard' and E'escaped' strings, "quoted identifiers", $tag$ dollar quotes$tag$,
parentheses (`CREATE RULE ... (a; b)`) and SQL-standard function bodies
(`BEGIN ATOMIC ... END`, with psql's heuristic). Splitting never loses a
character: joining the statements' text gives back the script.

Pure: no I/O, no imports from the package.

`split_statements` is one long loop on purpose: it runs once per token of every
`no-transaction` file, and splitting it into functions would add a call per
token (the trade structlog documents for its own hot paths).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# PostgreSQL's identifier characters (scan.l): ASCII letters, "_", and every
# non-ASCII character; then also digits and "$". Written as negated ASCII sets,
# which compile in microseconds (a \x80-\U0010FFFF range takes ~10 ms).
_IDENT_START = r"[^\x00-\x40\x5b-\x5e\x60\x7b-\x7f]"
_IDENT_CONT = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
_TAG_CONT = r"[^\x00-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]"
# Everything that can change the lexer's state; other characters are skipped.
_TOKEN = re.compile(rf"--|/\*|'|\"|\$|\(|\)|;|\\|{_IDENT_START}{_IDENT_CONT}*")
_DOLLAR_TAG = re.compile(rf"\$(?:{_IDENT_START}{_TAG_CONT}*)?\$")
# Once a statement's first words are known (and it is not a routine body), identifiers
# change nothing: this pattern lets the regex engine skip them, still seeing string
# prefixes (E'...', U&'...') and a "$" that does not continue an identifier.
_NOT_AFTER_IDENT = rf"(?<!{_IDENT_CONT})"
_TOKEN_SKIPPING_WORDS = re.compile(
    rf"--|/\*|{_NOT_AFTER_IDENT}(?:[EeBbXxNn]'|[Uu]&['\"])|'|\"|{_NOT_AFTER_IDENT}\$|\(|\)|;|\\"
)
# psql's variables (`-- bootstrap:vars` files only): :'NAME' (a literal), :"NAME" (an identifier), :NAME (pasted
# as is, which bootstrap refuses). Never the second colon of a `::` cast. psql's variable characters.
_VARIABLE = r"(?<!:):(?:'[A-Za-z0-9_\x80-\U0010ffff]+'|\"[A-Za-z0-9_\x80-\U0010ffff]+\"|[A-Za-z_][A-Za-z0-9_]*)"
_TOKEN_VARS = re.compile(rf"{_VARIABLE}|{_TOKEN.pattern}")
_TOKEN_SKIPPING_WORDS_VARS = re.compile(rf"{_VARIABLE}|{_TOKEN_SKIPPING_WORDS.pattern}")
_STANDARD_STRING_REST = re.compile(r"(?:[^']|'')*'")
_ESCAPE_STRING_REST = re.compile(r"(?:[^'\\]|\\.|'')*'", re.DOTALL)
_QUOTED_IDENT_REST = re.compile(r'(?:[^"]|"")*"')
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_PARAM = re.compile(r"\$[0-9]+")

_WORDS_KEPT = 4
_ROUTINE_PREFIXES = (
    ("create", "function"),
    ("create", "procedure"),
    ("create", "or", "replace", "function"),
    ("create", "or", "replace", "procedure"),
)


class SqlSyntaxError(ValueError):
    """Raised for a script PostgreSQL could not even tokenise (an unterminated quote or comment)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class Statement(NamedTuple):
    """
    One piece of a script: code up to and including its `;`, with the
    comments and blank lines before it.

    Attributes:
        start: offset of the piece in the script.
        end: offset just after the piece.
        code_start: offset of its first character of code (start when it has none).
        text: the piece itself (`script[start:end]`).
        has_code: False when the piece is only blanks and comments (the server
            runs nothing for it).
        words: its first few keywords or identifiers, lowercased.
    """

    start: int
    end: int
    code_start: int
    text: str
    has_code: bool
    words: tuple[str, ...]


class Variable(NamedTuple):
    """
    A psql variable in a script (read only when asked for: `-- bootstrap:vars` files).

    Attributes:
        start: offset of its colon.
        end: offset just after it.
        kind: `literal` (:'NAME'), `identifier` (:"NAME") or `raw` (:NAME).
        name: the variable's name.
    """

    start: int
    end: int
    kind: str
    name: str


class Script(NamedTuple):
    """
    A script split into statements, with what a validator wants to know.

    Attributes:
        backslashes: offsets of backslashes outside strings and comments: psql meta-commands.
        line_comments: offsets of the `--` comments that start a line (leading blanks
            aside), outside strings, quoted identifiers, dollar quotes and block comments.
        variables: psql variables outside strings, comments and dollar quotes (when asked for).
    """

    text: str
    statements: tuple[Statement, ...]
    backslashes: tuple[int, ...]
    line_comments: tuple[int, ...] = ()
    variables: tuple[Variable, ...] = ()

    @property
    def code_statements(self) -> tuple[Statement, ...]:
        """The statements the server will run (those with code)."""
        return tuple(s for s in self.statements if s.has_code)

    def comment_lines(self) -> list[tuple[int, str]]:
        """(offset, text up to the end of its line) of each line comment."""
        out = []
        for start in self.line_comments:
            end = self.text.find("\n", start)
            out.append((start, self.text[start : end if end >= 0 else len(self.text)]))
        return out


def line_col(text: str, offset: int) -> tuple[int, int]:
    """
    1-based line and column of character `offset` in `text`.

    Args:
        text: the script.
        offset: a 0-based character offset (clamped to the text).
    """
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


class _Builder:
    """Accumulates the state of the statement being scanned."""

    __slots__ = ("begin_depth", "code_start", "copy", "paren_depth", "routine", "start", "words")

    def __init__(self, start: int) -> None:
        self.start = start
        self.code_start = -1
        self.words: list[str] = []
        self.paren_depth = 0
        self.begin_depth = 0
        self.routine = False
        self.copy = False  # a COPY: every word outside parentheses is kept (FROM STDIN, TO STDOUT)

    def code_at(self, offset: int) -> None:
        if self.code_start < 0:
            self.code_start = offset

    def word(self, word: str, offset: int) -> None:
        if self.code_start < 0:
            self.code_start = offset
        words = self.words
        if len(words) < _WORDS_KEPT:
            lowered = word.lower()
            if self.copy and self.paren_depth:
                return
            words.append(lowered)
            if len(words) == 1:
                self.copy = lowered == "copy"
            if not self.routine and words[0] == "create" and len(words) in (2, 4):
                self.routine = tuple(words) in _ROUTINE_PREFIXES
        elif self.copy:
            if not self.paren_depth:
                words.append(word.lower())
            return
        elif not self.routine:
            return  # most statements: nothing more to learn from their words
        else:
            lowered = word.lower()
        # psql's heuristic for SQL-standard bodies: BEGIN ... END (CASE ... END
        # nests inside) at paren depth 0 of CREATE [OR REPLACE] FUNCTION|PROCEDURE.
        if self.routine and self.paren_depth == 0:
            if lowered == "begin":
                self.begin_depth += 1
            elif lowered == "case" and self.begin_depth >= 1:
                self.begin_depth += 1
            elif lowered == "end" and self.begin_depth > 0:
                self.begin_depth -= 1

    def finish(self, text: str, end: int) -> Statement:
        has_code = self.code_start >= 0
        return Statement(
            start=self.start,
            end=end,
            code_start=self.code_start if has_code else self.start,
            text=text[self.start : end],
            has_code=has_code,
            words=tuple(self.words),
        )


def split_statements(text: str, *, variables: bool = False) -> Script:
    """
    Split a script into statements.

    Args:
        text: the whole script (already decoded).
        variables: also find psql variables (:'NAME', :"NAME", :NAME) outside strings,
            comments and dollar quotes (`Script.variables`).

    Returns:
        The script with its statements; their texts concatenate to `text`.

    Raises:
        SqlSyntaxError: an unterminated string, quoted identifier, dollar quote
            or comment.
    """
    statements: list[Statement] = []
    backslashes: list[int] = []
    line_comments: list[int] = []
    found: list[Variable] = []
    current = _Builder(0)
    pos = 0
    length = len(text)
    full_search = (_TOKEN_VARS if variables else _TOKEN).search
    fast_search = (_TOKEN_SKIPPING_WORDS_VARS if variables else _TOKEN_SKIPPING_WORDS).search
    while pos < length:
        skipping = len(current.words) >= _WORDS_KEPT and not (current.routine or current.copy)
        match = (fast_search if skipping else full_search)(text, pos)
        if match is None:
            break
        token = match.group()
        start = match.start()
        pos = match.end()
        first = token[0]
        if first == ":":  # a psql variable (only when asked for)
            current.code_at(start)
            kind = {"'": "literal", '"': "identifier"}.get(token[1], "raw")
            found.append(Variable(start, pos, kind, token[1:] if kind == "raw" else token[2:-1]))
            continue
        if skipping and len(token) > 1 and token[-1] in "'\"" and first not in "'\"":
            # A prefixed string met while skipping words: E'..', B'..', X'..', N'..', U&'..', U&"..".
            current.code_at(start)
            if token[-1] == '"':
                pos = _skip(_QUOTED_IDENT_REST, text, pos, start, "quoted identifier")
            elif first in "Ee":
                pos = _skip(_ESCAPE_STRING_REST, text, pos, start, "string")
            else:
                pos = _skip(_STANDARD_STRING_REST, text, pos, start, "string")
            continue
        if token == "--":
            if not text[text.rfind("\n", 0, start) + 1 : start].strip():
                line_comments.append(start)
            newline = text.find("\n", pos)
            pos = length if newline < 0 else newline + 1
        elif token == "/*":
            pos = _skip_block_comment(text, pos, start)
        elif first == "'":
            current.code_at(start)
            pos = _skip(_STANDARD_STRING_REST, text, pos, start, "string")
        elif first == '"':
            current.code_at(start)
            pos = _skip(_QUOTED_IDENT_REST, text, pos, start, "quoted identifier")
        elif first == "$":
            current.code_at(start)
            tag = _DOLLAR_TAG.match(text, start)
            if tag is not None:
                close = text.find(tag.group(), tag.end())
                if close < 0:
                    raise SqlSyntaxError(
                        f"unterminated dollar-quoted string {tag.group()}", start
                    )
                pos = close + len(tag.group())
            else:
                param = _PARAM.match(text, start)
                pos = param.end() if param else pos
        elif first == "(":
            current.code_at(start)
            current.paren_depth += 1
        elif first == ")":
            current.code_at(start)
            current.paren_depth = max(0, current.paren_depth - 1)
        elif first == ";":
            if current.paren_depth == 0 and current.begin_depth == 0:
                statements.append(current.finish(text, pos))
                current = _Builder(pos)
        elif first == "\\":
            current.code_at(start)
            backslashes.append(start)
        else:  # an identifier or keyword
            if pos < length and text[pos] == "'":
                # E'...' escapes backslashes; U&'...', B'...', X'...', N'...' do not.
                current.code_at(start)
                rest = _ESCAPE_STRING_REST if token in ("E", "e") else _STANDARD_STRING_REST
                if token in ("E", "e", "B", "b", "X", "x", "N", "n"):
                    pos = _skip(rest, text, pos + 1, start, "string")
                    continue
            if token in ("U", "u") and text.startswith("&'", pos):
                current.code_at(start)
                pos = _skip(_STANDARD_STRING_REST, text, pos + 2, start, "string")
                continue
            if token in ("U", "u") and text.startswith('&"', pos):
                current.code_at(start)
                pos = _skip(_QUOTED_IDENT_REST, text, pos + 2, start, "quoted identifier")
                continue
            current.word(token, start)
    if current.start < length:
        statements.append(current.finish(text, length))
    return Script(text=text, statements=tuple(statements), backslashes=tuple(backslashes),
                  line_comments=tuple(line_comments), variables=tuple(found))


# A statement's head, token by token, for what reads the names in it (concurrently.py).
_HEAD_TOKEN = re.compile(rf"\s+|--[^\n]*|/\*|'|\"|{_IDENT_START}{_IDENT_CONT}*|[0-9]+|.", re.DOTALL)


def head_tokens(text: str, limit: int = 64) -> list[tuple[str, str]]:
    """
    The first `limit` tokens of one statement, with the lexer's rules for comments,
    strings and quoted identifiers: (text, kind) with kind `word` (lowercased, as
    PostgreSQL folds it), `ident` (a quoted identifier, as written), `string` (its
    content) or `other` (punctuation, numbers). Blanks and comments are left out.

    Raises:
        SqlSyntaxError: an unterminated string, quoted identifier or comment.
    """
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text) and len(out) < limit:
        match = _HEAD_TOKEN.match(text, pos)
        assert match is not None  # `.` matches any character
        token, start, pos = match.group(), match.start(), match.end()
        if token[0].isspace() or token.startswith("--"):
            continue
        if token == "/*":
            pos = _skip_block_comment(text, pos, start)
        elif token == "'":
            pos = _skip(_STANDARD_STRING_REST, text, pos, start, "string")
            out.append((text[start + 1 : pos - 1].replace("''", "'"), "string"))
        elif token == '"':
            pos = _skip(_QUOTED_IDENT_REST, text, pos, start, "quoted identifier")
            out.append((text[start + 1 : pos - 1].replace('""', '"'), "ident"))
        elif re.match(_IDENT_START, token):
            out.append((token.lower(), "word"))
        else:
            out.append((token, "other"))
    return out


def _skip(rest: re.Pattern[str], text: str, pos: int, start: int, what: str) -> int:
    match = rest.match(text, pos)
    if match is None:
        raise SqlSyntaxError(f"unterminated {what}", start)
    return match.end()


def _skip_block_comment(text: str, pos: int, start: int) -> int:
    depth = 1
    while depth:
        edge = _COMMENT_EDGE.search(text, pos)
        if edge is None:
            raise SqlSyntaxError("unterminated /* comment", start)
        depth += 1 if edge.group() == "/*" else -1
        pos = edge.end()
    return pos

