"""
Other tools' ledgers, read for `adopt`: a tool's columns (constants of
`adoption.TOOLS`) composed into one query as identifiers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from psycopg import errors as pgerrors
from psycopg import sql

from ..errors import ConfigError
from .session import Session

if TYPE_CHECKING:
    from ..adoption import Tool


def read_foreign(session: Session, tool: Tool, table: tuple[str, str]) -> list[tuple[Any, ...]] | None:
    """
    Rows of another tool's ledger table, or None when the table does not exist.

    Args:
        tool: which columns say what (constants of `adoption.TOOLS`, never user input).
        table: (schema, table), reaching SQL as identifiers.

    Returns:
        (label, version, applied_at, kind, success) per row, in the order the tool wrote them.
    """
    conn = session.conn
    exists = conn.execute(
        "SELECT pg_catalog.to_regclass(pg_catalog.format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
        list(table),
    ).fetchone()
    if not exists or not exists[0]:
        return None

    def column(name: str | None, otherwise: str) -> sql.Composable:
        return sql.Identifier(name) if name is not None else sql.SQL(otherwise)

    query = sql.SQL(
        "SELECT {label}, {version}, {applied_at}, {kind}, {success} FROM {table} ORDER BY {order}"
    ).format(
        label=sql.Identifier(tool.label),
        version=sql.Identifier(tool.version),
        applied_at=column(tool.applied_at, "NULL::timestamptz"),
        kind=column(tool.kind, "'migration'"),
        success=column(tool.flag, "true"),
        table=sql.Identifier(*table),
        order=sql.Identifier(tool.order_by),
    )
    try:
        return conn.execute(query).fetchall()
    except (pgerrors.UndefinedColumn, pgerrors.UndefinedTable) as exc:
        raise ConfigError(
            f"{table[0]}.{table[1]} does not have the layout bootstrap expects: "
            f"{exc.diag.message_primary}",
        ) from None
