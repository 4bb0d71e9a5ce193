"""`bootstrap new`: write the next migration file from a short template. No database."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from .errors import ConfigError, UsageError
from .migrations import Kind, discover_migrations

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 60

UP_TEMPLATE = """\
-- {description}
-- Created {created} by `bootstrap new`.
-- Runs in one transaction together with its ledger row: all of it or nothing.
-- Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY...) need
-- a first line reading: -- bootstrap:no-transaction   (and must be safe to re-run).

"""
DOWN_TEMPLATE = """\
-- Rollback of {up_name}: undo exactly what it did, newest change first.
-- Runs with `bootstrap rollback`, in one transaction with the removal of its ledger row.

"""


class Created(NamedTuple):
    """The files `new` wrote."""

    up: Path
    down: Path | None


def slugify(description: str) -> str:
    """`Add e-mail to Users!` -> `add_e_mail_to_users` (lowercase letters, digits and _)."""
    slug = _NOT_SLUG.sub("_", description.lower()).strip("_")[:MAX_SLUG].rstrip("_")
    if not slug:
        raise UsageError(f"description {description!r} has no letters or digits to name the file with")
    return slug


def create_migration(sql_dir: Path, description: str, *, down: bool = False,
                     now: datetime | None = None) -> Created:
    """
    Write `<sql_dir>/<UTC timestamp>_<slug>.sql` (and its `.down.sql` with `down`).

    Raises:
        UsageError: an empty description.
        ConfigError: the file exists (it is never overwritten).

    The version is the UTC timestamp, or the newest existing version + 1 when that
    one is not older (so the new file always sorts last).
    """
    now = now or datetime.now(UTC)
    slug = slugify(description)
    version = now.strftime("%Y%m%d%H%M%S")
    sql_dir.mkdir(parents=True, exist_ok=True)
    existing = [m.version for m in discover_migrations(sql_dir) if m.kind is Kind.VERSIONED and m.version is not None]
    newest = max(existing, default=None)
    if newest is not None and newest >= int(version):
        # Two files within one second, or a clock behind the newest file: the next
        # version still sorts last, so the new file always runs after the others.
        version = str(newest + 1)
    up = sql_dir / f"{version}_{slug}.sql"
    down_path = sql_dir / f"{version}_{slug}.down.sql" if down else None
    for path in (up, down_path):
        if path is not None and path.exists():
            raise ConfigError(f"{path} already exists; bootstrap new never overwrites", file=str(path))
    created = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    written: list[Path] = []
    try:
        with open(up, "x", encoding="utf-8") as fh:  # "x": fail, never overwrite, even in a race
            written.append(up)
            fh.write(UP_TEMPLATE.format(description=description.strip(), created=created))
        if down_path is not None:
            with open(down_path, "x", encoding="utf-8") as fh:
                written.append(down_path)
                fh.write(DOWN_TEMPLATE.format(up_name=up.name))
    except FileExistsError as exc:
        for path in written:
            path.unlink()
        raise ConfigError(f"{exc.filename} already exists; bootstrap new never overwrites",
                          file=str(exc.filename)) from None
    return Created(up=up, down=down_path)
