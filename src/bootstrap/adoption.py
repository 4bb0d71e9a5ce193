"""
Taking over from another migration tool: where each keeps its ledger, which
of its columns say what, and how its entries match files in sql/ (by version).

Pure: a `Tool` names columns; `bootstrap.pg.ledger` composes them into a query
(as identifiers) and hands back the rows, which are matched here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

from .errors import ConfigError, IntegrityError
from .migrations import Migration, versioned_files

_LEADING_DIGITS = re.compile(r"^([0-9]+)(?:[_.\-]|$)")


class Tool(NamedTuple):
    """
    Another tool's ledger: its default table and the columns to read.

    Attributes:
        label: the column naming an entry in messages.
        version: the column holding the version (as text or a number).
        applied_at: when it was applied (None: the tool keeps no time).
        kind: Flyway's `type` (None: every row is a migration).
        flag: the boolean column: Flyway's `success`, goose's `is_applied`,
            golang-migrate's `dirty` (None: none).
        order_by: the order rows were written.
        layout: how rows become entries: `log` (a row per applied migration),
            `goose` (a row per up or down; the latest row of a version decides),
            `flyway` (rows folded in installed_rank order: an undo or a repair's
            DELETE takes its version back), `version` (golang-migrate: one row,
            the current version).
    """

    name: str
    schema: str
    table: str
    label: str
    version: str
    applied_at: str | None
    kind: str | None
    flag: str | None
    order_by: str
    layout: str = "log"


TOOLS: dict[str, Tool] = {
    # node-pg-migrate: pgmigrations(id serial, name varchar(255), run_on timestamp); name = file stem.
    "node-pg-migrate": Tool("node-pg-migrate", "public", "pgmigrations", "name", "name", "run_on", None, None, "id"),
    # dbmate: schema_migrations(version varchar primary key); version = the file's digits.
    "dbmate": Tool("dbmate", "public", "schema_migrations", "version", "version", None, None, None, "version"),
    # Flyway: flyway_schema_history(installed_rank, version, description, type, script, checksum,
    #   installed_by, installed_on, execution_time, success); BASELINE rows mark "everything up to here".
    "flyway": Tool("flyway", "public", "flyway_schema_history", "script", "version", "installed_on", "type",
                   "success", "installed_rank", layout="flyway"),
    # goose: goose_db_version(id serial, version_id bigint, is_applied boolean, tstamp timestamp): a row per
    #   up (is_applied) and per down (not); version 0 is goose's own first row, not a migration.
    "goose": Tool("goose", "public", "goose_db_version", "version_id", "version_id", "tstamp", None, "is_applied",
                  "id", layout="goose"),
    # golang-migrate: schema_migrations(version bigint, dirty boolean): one row, the version every file up to
    #   which is applied; dirty means that version failed halfway.
    "golang-migrate": Tool("golang-migrate", "public", "schema_migrations", "version", "version", None, None,
                           "dirty", "version", layout="version"),
}


class Entry(NamedTuple):
    """One applied migration as the other tool recorded it."""

    label: str
    version: int | None
    applied_at: datetime | None
    baseline: bool = False
    repeatable: bool = False


class Match(NamedTuple):
    """What adoption would record, and what it could not place."""

    matched: list[tuple[Migration, Entry]]
    unmatched: list[Entry]
    pending: list[Migration]
    already: list[Migration]
    repeatables: list[Entry]


def entries(tool: Tool, rows: list[tuple[Any, ...]]) -> list[Entry]:
    """
    The tool's applied entries, with the integer version each names (None when it has none).

    Raises:
        IntegrityError: golang-migrate's ledger is dirty (a version failed halfway).
    """
    if tool.layout == "flyway":
        rows = _flyway_folded(rows)
    elif tool.layout == "goose":
        # The latest row of each version says whether it is applied now (a down adds a row).
        latest = {row[1]: row for row in rows if row[1] != 0}
        rows = [row for row in latest.values() if row[4]]
    elif tool.layout == "version":
        return _current_version(tool, rows)
    out = []
    for label, version_text, applied_at, kind, success in rows:
        if not success:
            continue
        text = str(version_text) if version_text is not None else ""
        if tool.name == "node-pg-migrate":
            match = _LEADING_DIGITS.match(text)
            version = int(match.group(1)) if match else None
        else:
            version = int(text) if text.isdigit() else None
        out.append(Entry(label=str(label or text), version=version, applied_at=applied_at,
                         baseline=str(kind).upper() == "BASELINE",
                         repeatable=version_text is None and str(label).startswith("R__")))
    return out


# Flyway's row types (its MigrationType, with the legacy names it still reads), by what they mean here.
_FLYWAY_APPLIED = frozenset({"SQL", "JDBC", "SPRING_JDBC", "SCRIPT", "CUSTOM"})
_FLYWAY_BASELINE = frozenset({"BASELINE", "SQL_BASELINE", "JDBC_BASELINE", "SCRIPT_BASELINE", "SQL_STATE_SCRIPT",
                              "JDBC_STATE_SCRIPT"})
_FLYWAY_TAKEN_BACK = frozenset({"UNDO_SQL", "UNDO_JDBC", "UNDO_SPRING_JDBC", "UNDO_SCRIPT", "UNDO_CUSTOM", "DELETE"})


def _flyway_folded(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """
    Flyway's history folded in installed_rank order: what is applied now. An undo of a
    version, or the DELETE row `flyway repair` writes for it, takes it back; failed rows
    and the schema-creation row count for nothing.

    Raises:
        ConfigError: a row type bootstrap does not know, named (nothing is adopted).
    """
    current: dict[str, tuple[Any, ...]] = {}
    for row in rows:
        label, version, _applied_at, kind, success = row
        kind = str(kind).upper()
        if kind == "SCHEMA":
            continue
        if kind not in _FLYWAY_APPLIED | _FLYWAY_BASELINE | _FLYWAY_TAKEN_BACK:
            raise ConfigError(f"flyway's history holds a row of type {kind!r} ({label}), which bootstrap does not "
                              "know how to read; nothing was adopted", type=kind)
        if not success:
            continue
        key = str(version) if version is not None else str(label)
        if kind in _FLYWAY_TAKEN_BACK:
            current.pop(key, None)
        else:
            current[key] = (label, version, _applied_at, "BASELINE" if kind in _FLYWAY_BASELINE else kind, success)
    return list(current.values())


def _current_version(tool: Tool, rows: list[tuple[Any, ...]]) -> list[Entry]:
    """golang-migrate: its one row is the version every file up to which is applied (a baseline)."""
    if not rows:
        return []
    _label, version, _applied_at, _kind, dirty = rows[-1]
    if dirty:
        raise IntegrityError(
            f"{tool.name}'s ledger {tool.schema}.{tool.table} is dirty at version {version}: that migration failed "
            "halfway, so the schema is in an unknown state; nothing was adopted. Finish or undo it by hand, then "
            f"mark it clean with `migrate force {version}` (or `migrate force` the version before it) and adopt again",
            version=version,
        )
    return [Entry(label=f"version {version}", version=int(version), applied_at=None, baseline=True)]


def match(found: list[Entry], migrations: list[Migration], recorded: set[int]) -> Match:
    """
    Match the tool's entries to versioned files by version. A Flyway BASELINE
    entry at version V stands for every file with a version up to V.

    Args:
        found: the tool's entries.
        migrations: files in sql/.
        recorded: versions already in bootstrap's ledger (never recorded twice).
    """
    files = versioned_files(migrations)
    by_version = {e.version: e for e in found if e.version is not None and not e.baseline}
    baseline = max((e.version for e in found if e.baseline and e.version is not None), default=None)
    matched: list[tuple[Migration, Entry]] = []
    already: list[Migration] = []
    for version, migration in sorted(files.items()):
        entry = by_version.get(version)
        if entry is None and baseline is not None and version <= baseline:
            entry = next(e for e in found if e.baseline and e.version == baseline)
        if entry is None:
            continue
        if version in recorded:
            already.append(migration)
        else:
            matched.append((migration, entry))
    placed = {m.version for m, _ in matched} | {m.version for m in already}
    unmatched = [e for e in found
                 if not e.baseline and not e.repeatable and (e.version is None or e.version not in files)]
    pending = [m for v, m in sorted(files.items()) if v not in placed and v not in recorded]
    repeatables = [e for e in found if e.repeatable]
    return Match(matched=matched, unmatched=unmatched, pending=pending, already=already, repeatables=repeatables)
