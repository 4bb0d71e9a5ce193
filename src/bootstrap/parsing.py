"""
What is about to run, read and split: a migration (`parse_migration`), a
versioned migration's `.down.sql` partner (`parse_down`), and the verify and
after-migrate scripts (`load_scripts`).

Each splits a file that is about to run into statements, takes its variables'
values, and checks what only matters for running it: another tool's rollback
section, a file that changed since discovery, a verify script that would leave
bootstrap's transaction. None touches the database; finding the files is
`migrations`' job, reading one file `sqlfile`'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError
from .migrations import Kind, Migration, ParsedMigration, discover_scripts
from .sqlfile import AFTER_DIR, VERIFY_DIR, SqlFile, parse_file, where

# Other tools keep the rollback in the same file; bootstrap would run it right after the up part. Each marker
# is a whole comment line, as the tool writes it (dbmate's may carry options), never a comment about one.
_FOREIGN_DOWN_MARKERS = re.compile(r"^--\s*(migrate:down(\s.*)?|down migration|\+goose\s+down)\s*$", re.IGNORECASE)


def parse_migration(migration: Migration, environ: Mapping[str, str] | None = None) -> ParsedMigration:
    """
    Read and split a migration that is about to run.

    Args:
        environ: where its variables' values come from; None: checked, not read (--dry-run).

    Raises:
        ConfigError: as `parse_file`; when the file changed since discovery; or
            when it still holds another tool's down section (dbmate's
            `-- migrate:down`, node-pg-migrate's `-- Down Migration`, goose's
            `-- +goose Down`).
    """
    known = None
    if migration.text is not None:
        known = SqlFile(path=migration.path, text=migration.text, checksum=migration.checksum,
                        transactional=migration.transactional, lint_ignore=migration.lint_ignore,
                        valid_checksums=migration.valid_checksums, variables=migration.variables)
    read, script, values = parse_file(migration.path, known, environ=environ)
    marker = next(((at, text) for at, text in script.comment_lines() if _FOREIGN_DOWN_MARKERS.match(text)), None)
    if marker is not None:
        from .sqlsplit import line_col

        line, _ = line_col(read.text, marker[0])
        raise ConfigError(
            f"{where(migration.path)}:{line}: '{marker[1].strip()}' starts another tool's rollback section, "
            f"which bootstrap would run right after the up part; move it to "
            f"{migration.path.name.removesuffix('.sql')}.down.sql",
            file=str(migration.path),
            line=line,
        )
    if read.checksum != migration.checksum:
        raise ConfigError(
            f"{where(migration.path)}: the file changed while bootstrap was running",
            file=str(migration.path),
        )
    return ParsedMigration(migration=migration, script=script, values=values)


def parse_down(migration: Migration, environ: Mapping[str, str]) -> ParsedMigration:
    """
    Read and split a versioned migration's `.down.sql` partner, as the migration
    that rollback runs (its name, checksum and directives are the down file's).

    Raises:
        ConfigError: as `parse_file`.
    """
    assert migration.down_path is not None
    read, script, values = parse_file(migration.down_path, environ=environ)
    down = migration._replace(location=migration.down_path, name=migration.down_path.name,
                              checksum=read.checksum, transactional=read.transactional,
                              down_location=None, text=None, lint_ignore=read.lint_ignore,
                              valid_checksums=frozenset(), variables=read.variables)
    return ParsedMigration(migration=down, script=script, values=values)


def load_scripts(sql_dir: Path, kind: Kind, environ: Mapping[str, str] | None, *,
                 required: bool = False) -> list[ParsedMigration]:
    """
    Read and check the verify scripts (`Kind.VERIFY`, sql/verify/) or the after-migrate scripts
    (`Kind.AFTER`, sql/after/), before touching the database.

    Args:
        sql_dir: the migrations directory.
        environ: where their variables' values come from; None: checked, not read (--dry-run).
        required: the directory must exist (`bootstrap verify`); `run` verifies
            only when scripts exist.

    Returns:
        Each script, in name order.
    """
    if required and not sql_dir.is_dir():
        raise ConfigError(
            f"migrations directory {sql_dir} does not exist (set BOOTSTRAP_SQL_DIR or --sql-dir)",
            variable="BOOTSTRAP_SQL_DIR",
        )
    scripts = []
    for path in discover_scripts(sql_dir, VERIFY_DIR if kind is Kind.VERIFY else AFTER_DIR):
        read, script, values = parse_file(path, environ=environ)
        if kind is Kind.VERIFY and not read.transactional:
            raise ConfigError(
                f"{path}: verify scripts always run inside bootstrap's transaction, which is rolled "
                "back; remove the '-- bootstrap:no-transaction' line",
                file=str(path),
            )
        migration = Migration(kind=kind, version=None, description=path.stem, name=path.name, location=str(path),
                              checksum=read.checksum, transactional=read.transactional,
                              lint_ignore=read.lint_ignore, variables=read.variables)
        scripts.append(ParsedMigration(migration=migration, script=script, values=values))
    return scripts
