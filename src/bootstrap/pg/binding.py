"""
Placeholders (`-- bootstrap:vars`): a file's psql variables with their values in, composed
through `psycopg.sql` (:'NAME' a `Literal`, :"NAME" an `Identifier`), never pasted.

The file as written keeps its checksum and its lines; what is sent is its text with each
variable replaced by its quoted value, split again (a quoted value never ends a statement),
and `ParsedMigration.shifts` maps an offset in what was sent back to the file as written.
"""

from __future__ import annotations

from psycopg import sql

from .. import redact
from ..errors import ConfigError
from ..migrations import ParsedMigration
from ..sqlfile import TENANT_VARIABLE
from ..sqlsplit import split_statements


def bind(parsed: ParsedMigration) -> ParsedMigration:
    """
    The file with its variables' values in (`parsed.sent`); unchanged when it uses none.

    Raises:
        ConfigError: the values changed the file's statements (cannot happen for quoted values;
            checked, so a file is never sent split otherwise than it was checked).
    """
    if not parsed.values or parsed.bound is not None:
        return parsed
    text = parsed.script.text
    pieces: list[str] = []
    shifts: list[tuple[int, int, int, int]] = []
    at = size = 0
    for variable in parsed.script.variables:
        if variable.kind == "raw":
            continue  # not this file's variable (a listed one pasted raw was refused when parsing)
        value = parsed.values[variable.name]
        quoted = (sql.Literal(value) if variable.kind == "literal" else sql.Identifier(value)).as_string(None)
        if variable.name != TENANT_VARIABLE:  # as sent, the server may quote it back: masked in that form too
            for form in (quoted.strip(), quoted.strip().removeprefix("E")[1:-1]):
                redact.register_secret(form)
        pieces.append(text[at : variable.start])
        size += variable.start - at
        shifts.append((size, size + len(quoted), variable.start, variable.end))
        pieces.append(quoted)
        size += len(quoted)
        at = variable.end
    pieces.append(text[at:])
    bound = split_statements("".join(pieces))
    if len(bound.code_statements) != len(parsed.script.code_statements):
        path = parsed.migration.path
        raise ConfigError(f"{path}: the values of its variables change where its statements end", file=str(path))
    return parsed._replace(bound=bound, shifts=tuple(shifts))
