"""
Concurrent index builds: what they left, and whether what they built is valid.

A `CREATE INDEX CONCURRENTLY` (or `REINDEX ... CONCURRENTLY`) that fails, times
out or is cancelled leaves an INVALID index: never used by queries, a unique
one enforcing nothing, and skipped by a later `IF NOT EXISTS`. Around each such
statement the applier takes a census of the indexes it can touch (`census`); after a
failure it drops the invalid ones the build left (`DROP INDEX CONCURRENTLY`,
which waits only for the table's current users, not for every older
transaction), and after a success it checks that what the statement names is
valid and ready.
"""

from __future__ import annotations

from typing import NamedTuple

import psycopg
from psycopg import sql

from ..concurrently import Build, Name
from ..typing import Logger
from .session import Session


class Index(NamedTuple):
    """One index: where it is, and whether it is usable (valid and ready)."""

    oid: int
    schema: str
    name: str
    usable: bool

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


# A relation by name, resolved as the session would (search_path for an unqualified one).
_REGCLASS = sql.SQL(
    "pg_catalog.to_regclass(CASE WHEN %(schema)s::text IS NULL THEN pg_catalog.quote_ident(%(name)s::text)"
    " ELSE pg_catalog.quote_ident(%(schema)s::text) || '.' || pg_catalog.quote_ident(%(name)s::text) END)"
)
_SELECT = sql.SQL(
    "SELECT i.indexrelid::bigint, n.nspname::text, c.relname::text, i.indisvalid AND i.indisready"
    " FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE {where}"
)


def census(session: Session, build: Build) -> dict[int, Index]:
    """The indexes `build` can create, rebuild or leave behind, by oid (one round trip)."""
    params: dict[str, object] = {}
    where: sql.Composable
    if build.table is not None:
        where = sql.SQL("i.indrelid = {}").format(_REGCLASS)
        params = {"schema": build.table.schema, "name": build.table.name}
    elif build.target == "index" and build.index_name is not None:
        where = sql.SQL("i.indrelid = (SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = {})").format(
            _REGCLASS)
        params = {"schema": build.index_name.schema, "name": build.index_name.name}
    elif build.target == "schema" and build.schema is not None:
        where, params = sql.SQL("n.nspname = %(schema)s"), {"schema": build.schema}
    else:
        where = sql.SQL("n.nspname NOT IN ('pg_catalog', 'information_schema')")
    rows = session.conn.execute(_SELECT.format(where=where), params).fetchall()
    return {row[0]: Index(*row) for row in rows}


def named(indexes: dict[int, Index], name: Name | None) -> Index | None:
    """The index called `name` among `indexes` (an unqualified name matches any schema)."""
    if name is None:
        return None
    for index in indexes.values():
        if index.name == name.name and (name.schema is None or index.schema == name.schema):
            return index
    return None


def left_by(before: dict[int, Index], after: dict[int, Index]) -> list[Index]:
    """The unusable indexes that are new since `before`: what a failed build left."""
    return [index for oid, index in after.items() if not index.usable and oid not in before]


def unusable_after(build: Build, before: dict[int, Index], after: dict[int, Index]) -> list[Index]:
    """
    After the statement succeeded: the indexes it names that are not valid and
    ready (a CREATE ... IF NOT EXISTS that skipped an invalid index, a REINDEX
    TABLE that skipped one), and any new unusable index.
    """
    bad = {index.oid: index for index in left_by(before, after)}
    target = named(after, build.index_name)
    if target is not None and not target.usable:
        bad[target.oid] = target
    if build.verb == "reindex" and build.target == "table":
        bad.update({oid: index for oid, index in after.items() if not index.usable})
    return sorted(bad.values(), key=str)


def drop(session: Session, index: Index, log: Logger, *, reason: str) -> str | None:
    """
    `DROP INDEX CONCURRENTLY IF EXISTS` one invalid index (in autocommit, under the DDL lock timeout).

    Returns:
        None when it is gone; else why it could not be dropped.
    """
    try:
        session.conn.execute(
            sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(index.schema, index.name)))
    except psycopg.Error as exc:
        session.rollback_quietly()
        why = (exc.diag.message_primary if exc.diag else None) or str(exc)
        log.warning("index_invalid_kept", index=str(index), error=why, sqlstate=exc.sqlstate)
        return why
    log.warning("index_invalid_dropped", index=str(index), reason=reason)
    return None
