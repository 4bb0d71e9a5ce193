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
        success: whether it succeeded (None: every row did).
        order_by: the order rows were written.
    """

    name: str
    schema: str
    table: str
    label: str
    version: str
    applied_at: str | None
    kind: str | None
    success: str | None
    order_by: str


TOOLS: dict[str, Tool] = {
    # node-pg-migrate: pgmigrations(id serial, name varchar(255), run_on timestamp); name = file stem.
    "node-pg-migrate": Tool("node-pg-migrate", "public", "pgmigrations", "name", "name", "run_on", None, None, "id"),
    # dbmate: schema_migrations(version varchar primary key); version = the file's digits.
    "dbmate": Tool("dbmate", "public", "schema_migrations", "version", "version", None, None, None, "version"),
    # Flyway: flyway_schema_history(installed_rank, version, description, type, script, checksum,
    #   installed_by, installed_on, execution_time, success); BASELINE rows mark "everything up to here".
    "flyway": Tool("flyway", "public", "flyway_schema_history", "script", "version", "installed_on", "type",
                   "success", "installed_rank"),
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
    """The tool's successful entries, with the integer version each names (None when it has none)."""
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
