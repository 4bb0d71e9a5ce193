"""
The migrations directory: find the files, check their names and versions,
and pair rollbacks with their migrations.

Discovery (`discover_migrations`) looks at every file: names, versions,
duplicates, readability, UTF-8, directives and checksums. What it finds is a
`Migration`; a file about to run, split into statements, is a
`ParsedMigration`, which `parsing` makes. Nothing here touches the
database; reading one file is `sqlfile`'s job.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError
from .sqlfile import read_sql_file

if TYPE_CHECKING:
    from .sqlsplit import Script

KEEP_TEXT_CHARS = 64 * 1024  # files this small are parsed from the text discovery read
MAX_VERSION = 2**63 - 1
_VERSIONED = re.compile(r"^(?P<version>[0-9]+)_(?P<description>[^/]+)\.sql$")
_DOWN = re.compile(r"^(?P<version>[0-9]+)_(?P<description>[^/]+)\.down\.sql$")
_REPEATABLE = re.compile(r"^R__(?P<description>[^/]+)\.sql$")
_LOOKALIKE = re.compile(r"^([0-9]+_|R__)[^/]+$")  # a migration's name, but its extension is not .sql
_FLYWAY = re.compile(r"^[VUR](?P<version>[0-9._]*)__(?P<description>.+)\.sql$", re.I)


class Kind(enum.StrEnum):
    """What a migration file is."""

    VERSIONED = "versioned"
    REPEATABLE = "repeatable"
    AFTER = "after"  # sql/after/*.sql: after every migrate that took the lock, never recorded
    VERIFY = "verify"  # sql/verify/*.sql: always rolled back


class Migration(NamedTuple):
    """
    One migration file as discovered: identity, checksum and options, not yet split.

    Attributes:
        kind: versioned or repeatable.
        version: the integer version (None for repeatables).
        description: the part of the name after the version.
        name: the file name, as recorded in the ledger.
        location: where the file is (`path` as a Path).
        checksum: SHA-256 (hex) of the content, BOM dropped, CRLF read as LF.
        transactional: False when the file says `-- bootstrap:no-transaction`.
        down_location: the `.down.sql` partner, if any (`down_path` as a Path).
        text: the decoded content, kept for small files so parsing need not read them again.
        lint_ignore: the lint rules its `-- bootstrap:lint-ignore` directive silences.
        valid_checksums: earlier texts' checksums its `-- bootstrap:valid-checksum` directive accepts.
        variables: the environment variables its `-- bootstrap:vars` directive lets it use.
    """

    kind: Kind
    version: int | None
    description: str
    name: str
    location: str | os.PathLike[str]
    checksum: str
    transactional: bool
    down_location: str | os.PathLike[str] | None = None
    text: str | None = None
    lint_ignore: frozenset[str] = frozenset()
    valid_checksums: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"Migration({self.name!r}, version={self.version!r}, checksum={self.checksum[:12]!r})"

    @property
    def path(self) -> Path:
        """The file (made on demand: a thousand Path objects cost a container start ~15 ms)."""
        return Path(self.location)

    @property
    def down_path(self) -> Path | None:
        """The `.down.sql` partner, if any."""
        return Path(self.down_location) if self.down_location is not None else None

    @property
    def key(self) -> str:
        """Identity in the ledger: the version for versioned files, the name for repeatables."""
        return str(self.version) if self.version is not None else self.name

    def matches(self, checksum: str) -> bool:
        """Whether a ledger row with this checksum recorded this file (its text, or an earlier one it accepts)."""
        return checksum == self.checksum or checksum in self.valid_checksums


class ParsedMigration(NamedTuple):
    """
    A file about to run: its statements as written and, when it uses variables, as sent.

    Attributes:
        script: the file as written (lines and columns in messages are this text's).
        values: the values of the variables it uses (`-- bootstrap:vars`).
        bound: the script with the values in (pg.binding), once bound; None without variables.
        shifts: where each value sits, (sent start, sent end, written start, written end).
    """

    migration: Migration
    script: Script
    values: Mapping[str, str] = {}
    bound: Script | None = None
    shifts: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def sent(self) -> Script:
        """The statements as sent to the server (the values in)."""
        return self.bound if self.bound is not None else self.script

    @property
    def text(self) -> str:
        """The SQL sent: normalised (BOM dropped, CRLF read as LF), the values in."""
        return self.sent.text

    def written_offset(self, offset: int) -> int:
        """An offset in the SQL sent, as an offset in the file as written (a value's: its variable's)."""
        delta = 0
        for sent_start, sent_end, start, end in self.shifts:
            if offset < sent_start:
                break
            if offset < sent_end:
                return start
            delta = end - sent_end
        return offset + delta


def _check_entry(sql_dir: Path, entry: os.DirEntry[str]) -> str:
    """A `*.sql` entry must be a regular file inside `sql_dir` (links followed); its path."""
    path = entry.path
    try:
        # is_file()/is_dir() answer from the directory listing for plain files: no stat call.
        if entry.is_file():
            regular = True
        elif entry.is_dir():
            raise ConfigError(
                f"{path}: is a directory, not a migration file; rename it", file=path
            )
        else:
            regular = False
            if entry.is_symlink():
                os.stat(path)  # raises for a dangling link
    except OSError:
        raise ConfigError(f"{path}: broken symbolic link", file=path) from None
    if not regular:
        raise ConfigError(f"{path}: not a regular file", file=path)
    if entry.is_symlink():
        target = Path(path).resolve()
        root = sql_dir.resolve()
        if root != target.parent and root not in target.parents:
            raise ConfigError(
                f"{path}: symbolic link leads outside {sql_dir} (to {target}); copy the file instead",
                file=path,
            )
    return path


def _name_error(path: str, name: str) -> ConfigError:
    hint = ("versioned files are <digits>_<description>.sql, rollbacks <digits>_<description>.down.sql, "
            "repeatables R__<description>.sql")
    flyway = _FLYWAY.match(name)
    if name.lower().endswith(".sql") and not name.endswith(".sql"):
        hint = "the extension must be lowercase .sql"
    elif flyway and name[0] in "Vv" and flyway.group("version").isdigit():
        hint = f"Flyway-style name; bootstrap expects {flyway.group('version')}_{flyway.group('description')}.sql"
    return ConfigError(f"{path}: not a migration file name; {hint}", file=path)


def _parse_version(path: str, digits: str) -> int:
    version = int(digits)
    if version > MAX_VERSION:
        raise ConfigError(
            f"{path}: version {digits} does not fit in 63 bits; use at most 18 digits", file=path
        )
    return version


def _listing(sql_dir: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(sql_dir) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        raise ConfigError(
            f"migrations directory {sql_dir} does not exist (set BOOTSTRAP_SQL_DIR or --sql-dir)",
            variable="BOOTSTRAP_SQL_DIR",
        ) from None
    except NotADirectoryError:
        raise ConfigError(
            f"migrations directory {sql_dir} is not a directory", variable="BOOTSTRAP_SQL_DIR"
        ) from None
    except PermissionError:
        raise ConfigError(
            f"migrations directory {sql_dir} cannot be read: permission denied",
            variable="BOOTSTRAP_SQL_DIR",
        ) from None


def versioned_files(migrations: list[Migration]) -> dict[int, Migration]:
    """The versioned migrations by version."""
    return {m.version: m for m in migrations if m.kind is Kind.VERSIONED and m.version is not None}


def _read_migration(kind: Kind, version: int | None, path: str, name: str, description: str,
                    down: str | None) -> Migration:
    """Read and checksum one migration file (keeping the text of a small one for parsing)."""
    read = read_sql_file(path)
    return Migration(
        kind=kind,
        version=version,
        description=description,
        name=name,
        location=path,
        checksum=read.checksum,
        transactional=read.transactional,
        down_location=down,
        text=read.text if len(read.text) <= KEEP_TEXT_CHARS else None,
        lint_ignore=read.lint_ignore,
        valid_checksums=read.valid_checksums,
        variables=read.variables,
    )


def discover_migrations(sql_dir: Path, ignored: list[str] | None = None) -> list[Migration]:
    """
    Find every migration in `sql_dir`, versioned ones by version, then repeatables by name.

    Args:
        sql_dir: the directory (files directly in it; `verify/` is separate).
        ignored: given, receives the names of files that look like migrations but are not
            (`0002_x.sq`, `0003_x.sql.bak`): skipped, for the caller to warn about.

    Returns:
        Versioned migrations in ascending version order, then repeatables.

    Raises:
        ConfigError: a missing directory, a bad name, a duplicate version, an
            orphan `.down.sql`, or a file that cannot be read or decoded. The
            first problem found is reported, naming its file.
    """
    ups: dict[int, tuple[str, str, str]] = {}  # version -> (path, name, description)
    downs: dict[int, tuple[str, str]] = {}  # version -> (path, name)
    repeatables: list[tuple[str, str, str]] = []
    for entry in _listing(sql_dir):
        name = entry.name
        if name.startswith(".") or not name.lower().endswith(".sql"):
            if ignored is not None and _LOOKALIKE.match(name):
                ignored.append(name)
            continue
        path = _check_entry(sql_dir, entry)
        if (match := _DOWN.match(name)) is not None:
            version = _parse_version(path, match.group("version"))
            if version in downs:
                raise ConfigError(
                    f"{path}: version {version} has two rollback files ({downs[version][1]} and {name})",
                    file=path,
                )
            downs[version] = (path, name)
        elif (match := _REPEATABLE.match(name)) is not None:
            if name.endswith(".down.sql"):
                raise ConfigError(f"{path}: repeatable migrations have no rollback file", file=path)
            repeatables.append((path, name, match.group("description")))
        elif (match := _VERSIONED.match(name)) is not None:
            version = _parse_version(path, match.group("version"))
            if version in ups:
                raise ConfigError(
                    f"{path}: duplicate version {version}: {ups[version][1]} and {name}; "
                    "give each file its own version",
                    file=path,
                    version=version,
                )
            ups[version] = (path, name, match.group("description"))
        else:
            raise _name_error(path, name)

    for version, (path, _name) in sorted(downs.items()):
        if version not in ups:
            raise ConfigError(f"{path}: rollback file without a migration of version {version}", file=path)

    migrations: list[Migration] = []
    for version in sorted(ups):
        path, name, description = ups[version]
        down = downs.get(version)
        if down is not None:
            read_sql_file(down[0])  # a broken rollback is found now, not during an incident
        migrations.append(_read_migration(Kind.VERSIONED, version, path, name, description,
                                          down[0] if down is not None else None))
    for path, name, description in repeatables:
        migrations.append(_read_migration(Kind.REPEATABLE, None, path, name, description, None))
    return migrations


def discover_scripts(sql_dir: Path, folder_name: str) -> list[Path]:
    """The `*.sql` scripts of `sql_dir/folder_name` (verify/, after/), in name order (none without the folder)."""
    folder = sql_dir / folder_name
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    paths: list[Path] = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.lower().endswith(".sql"):
            continue
        paths.append(Path(_check_entry(folder, entry)))
    return paths
