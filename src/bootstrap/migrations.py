"""
Migration files: find them, check their names, read and checksum them, parse them.

Discovery (`discover_migrations`) looks at every file: names, versions,
duplicates, readability, UTF-8, directives and checksums. Parsing
(`parse_migration`) splits a file that is about to run into statements and
checks what only matters for running it. Neither touches the database.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError

if TYPE_CHECKING:
    from .sqlsplit import Script

BOM = b"\xef\xbb\xbf"
# A file is sent as one query; PostgreSQL refuses queries of 1 GB and more.
MAX_FILE_BYTES = 256 * 1024 * 1024
KEEP_TEXT_CHARS = 64 * 1024  # files this small are parsed from the text discovery read
MAX_VERSION = 2**63 - 1
NO_TRANSACTION = "no-transaction"
KNOWN_DIRECTIVES = frozenset({NO_TRANSACTION})
VERIFY_DIR = "verify"

_VERSIONED = re.compile(r"^(?P<version>[0-9]+)_(?P<description>[^/]+)\.sql$")
_DOWN = re.compile(r"^(?P<version>[0-9]+)_(?P<description>[^/]+)\.down\.sql$")
_REPEATABLE = re.compile(r"^R__(?P<description>[^/]+)\.sql$")
_FLYWAY = re.compile(r"^[VUR](?P<version>[0-9._]*)__(?P<description>.+)\.sql$", re.I)
_DIRECTIVE = re.compile(r"^--\s*bootstrap\s*:(?P<rest>.*)$")
_TRANSACTION_CONTROL = {
    "prepare": "PREPARE TRANSACTION",
    "begin": "BEGIN",
    "start": "START TRANSACTION",
    "commit": "COMMIT",
    "end": "END",
    "abort": "ABORT",
    "rollback": "ROLLBACK",
}


class Kind(enum.StrEnum):
    """What a migration file is."""

    VERSIONED = "versioned"
    REPEATABLE = "repeatable"


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


class ParsedMigration(NamedTuple):
    """A migration about to run: its text and statements."""

    migration: Migration
    script: Script

    @property
    def text(self) -> str:
        """The normalised SQL (BOM dropped, CRLF read as LF)."""
        return self.script.text


class SqlFile(NamedTuple):
    """A file read and checked: decoded text, checksum and directives."""

    path: str | os.PathLike[str]
    text: str
    checksum: str
    transactional: bool


def _where(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def normalise(raw: bytes) -> bytes:
    """Drop a UTF-8 BOM and read CRLF as LF: what the checksum is taken of."""
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    return raw.replace(b"\r\n", b"\n") if b"\r" in raw else raw


def checksum_of(raw: bytes) -> str:
    """SHA-256 (hex) of a file's content, BOM dropped and CRLF read as LF."""
    return hashlib.sha256(normalise(raw)).hexdigest()


def read_sql_file(path: str | os.PathLike[str]) -> SqlFile:
    """
    Read, decode, checksum one file and read its directives.

    Raises:
        ConfigError: unreadable, too big, not UTF-8, empty, or an unknown directive.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size > MAX_FILE_BYTES:
                raise ConfigError(
                    f"{_where(path)}: {size / 2**20:.0f} MiB is more than bootstrap sends as one query "
                    f"({MAX_FILE_BYTES // 2**20} MiB); split it into several migrations, or load bulk data "
                    "with COPY from a server-side file",
                    file=_where(path),
                )
            raw = os.read(fd, size) if size else b""
            if len(raw) < size or not size:  # a short read, or a file that reports no size (/proc, pipes)
                chunks = [raw]
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                raw = b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(
            f"{_where(path)}: cannot read the file: {exc.strerror or exc}", file=_where(path)
        ) from None
    data = normalise(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from .sqlsplit import line_col

        prefix = data[: exc.start].decode("utf-8")
        line, col = line_col(prefix, len(prefix))
        raise ConfigError(
            f"{_where(path)}:{line}:{col}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8",
            file=str(path),
            line=line,
        ) from None
    if not text or text.isspace():
        raise ConfigError(
            f"{_where(path)}: the file is empty; a migration must contain SQL",
            file=str(path),
        )
    return SqlFile(
        path=path,
        text=text,
        checksum=hashlib.sha256(data).hexdigest(),
        transactional=NO_TRANSACTION not in read_directives(path, text),
    )


def read_directives(path: str | os.PathLike[str], text: str) -> frozenset[str]:
    """
    Read `-- bootstrap:<option>` lines from the file's leading comments.

    Raises:
        ConfigError: an unknown option, naming the file and line.
    """
    found: set[str] = set()
    start, number = 0, 0
    while start < len(text):  # the leading comment lines only: never split a whole big file
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line, start, number = text[start:end], end + 1, number + 1
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            break
        match = _DIRECTIVE.match(stripped)
        if match is None:
            continue
        options = [o for o in re.split(r"[\s,]+", match.group("rest").strip()) if o]
        if not options:
            raise ConfigError(
                f"{_where(path)}:{number}: empty bootstrap directive; "
                f"known options: {', '.join(sorted(KNOWN_DIRECTIVES))}",
                file=str(path),
                line=number,
            )
        for option in options:
            if option not in KNOWN_DIRECTIVES:
                raise ConfigError(
                    f"{_where(path)}:{number}: unknown directive 'bootstrap:{option}'; "
                    f"known options: {', '.join(sorted(KNOWN_DIRECTIVES))}",
                    file=str(path),
                    line=number,
                )
            found.add(option)
    return frozenset(found)


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


def discover_migrations(sql_dir: Path) -> list[Migration]:
    """
    Find every migration in `sql_dir`, versioned ones by version, then repeatables by name.

    Args:
        sql_dir: the directory (files directly in it; `verify/` is separate).

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
        read = read_sql_file(path)
        down = downs.get(version)
        if down is not None:
            read_sql_file(down[0])  # a broken rollback is found now, not during an incident
        migrations.append(
            Migration(
                kind=Kind.VERSIONED,
                version=version,
                description=description,
                name=name,
                location=path,
                checksum=read.checksum,
                transactional=read.transactional,
                down_location=down[0] if down is not None else None,
                text=read.text if len(read.text) <= KEEP_TEXT_CHARS else None,
            )
        )
    for path, name, description in repeatables:
        read = read_sql_file(path)
        migrations.append(
            Migration(
                kind=Kind.REPEATABLE,
                version=None,
                description=description,
                name=name,
                location=path,
                checksum=read.checksum,
                transactional=read.transactional,
                text=read.text if len(read.text) <= KEEP_TEXT_CHARS else None,
            )
        )
    return migrations


def discover_verify_scripts(sql_dir: Path) -> list[Path]:
    """The `verify/*.sql` scripts, in name order (none when the folder is absent)."""
    folder = sql_dir / VERIFY_DIR
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


def parse_file(path: str | os.PathLike[str], already: SqlFile | None = None) -> tuple[SqlFile, Script]:
    """
    Read and split one file.

    Args:
        path: the file.
        already: the file as discovery read it (saves reading it again).

    Raises:
        ConfigError: for anything `read_sql_file` refuses, an unterminated
            quote or comment, a psql meta-command, or a file with no statement.
    """
    from .sqlsplit import SqlSyntaxError, line_col, split_statements

    read = already or read_sql_file(path)
    try:
        script = split_statements(read.text)
    except SqlSyntaxError as exc:
        line, col = line_col(read.text, exc.offset)
        raise ConfigError(
            f"{_where(path)}:{line}:{col}: {exc}", file=str(path), line=line
        ) from None
    for statement in script.code_statements:
        if statement.words[:1] == ("copy",) and "stdin" in _code_words(statement.text):
            line, _ = line_col(read.text, statement.code_start)
            raise ConfigError(
                f"{_where(path)}:{line}: COPY ... FROM STDIN needs psql; "
                "use INSERT statements or COPY from a server-side file",
                file=str(path),
                line=line,
            )
    if script.backslashes:
        line, col = line_col(read.text, script.backslashes[0])
        snippet = read.text[script.backslashes[0] :].split("\n", 1)[0][:40]
        raise ConfigError(
            f"{_where(path)}:{line}:{col}: '{snippet}' is a psql meta-command, not SQL; "
            "bootstrap sends files to the server as they are",
            file=str(path),
            line=line,
        )
    if not script.code_statements:
        raise ConfigError(
            f"{_where(path)}: the file has only comments; a migration must contain SQL",
            file=str(path),
        )
    for statement in script.code_statements:
        words = statement.words

        if read.transactional and _is_transaction_control(words):
            line, _ = line_col(read.text, statement.code_start)
            if os.path.basename(os.path.dirname(os.fspath(path))) == VERIFY_DIR:
                raise ConfigError(
                    f"{_where(path)}:{line}: {_TRANSACTION_CONTROL[words[0]]} in a verify script; verify "
                    "scripts run inside one transaction that bootstrap always rolls back. Remove it",
                    file=str(path),
                    line=line,
                )
            raise ConfigError(
                f"{_where(path)}:{line}: {_TRANSACTION_CONTROL[words[0]]} in a transactional file; "
                "bootstrap already runs each file in one transaction together with its ledger row. "
                "Remove it, or put '-- bootstrap:no-transaction' on the first line",
                file=str(path),
                line=line,
            )
    return read, script


# Other tools keep the rollback in the same file; bootstrap would run it right after the up part.
_FOREIGN_DOWN_MARKERS = re.compile(r"^--\s*(migrate:down|down migration)\b", re.IGNORECASE | re.MULTILINE)


def parse_migration(migration: Migration) -> ParsedMigration:
    """
    Read and split a migration that is about to run.

    Raises:
        ConfigError: as `parse_file`; when the file changed since discovery; or
            when it still holds another tool's down section (dbmate's
            `-- migrate:down`, node-pg-migrate's `-- Down Migration`).
    """
    known = None
    if migration.text is not None:
        known = SqlFile(path=migration.path, text=migration.text, checksum=migration.checksum,
                        transactional=migration.transactional)
    read, script = parse_file(migration.path, known)
    marker = _FOREIGN_DOWN_MARKERS.search(read.text)
    if marker is not None:
        from .sqlsplit import line_col

        line, _ = line_col(read.text, marker.start())
        raise ConfigError(
            f"{_where(migration.path)}:{line}: '{marker.group(0)}' starts another tool's rollback section, "
            f"which bootstrap would run right after the up part; move it to "
            f"{migration.path.name.removesuffix('.sql')}.down.sql",
            file=str(migration.path),
            line=line,
        )
    if read.checksum != migration.checksum:
        raise ConfigError(
            f"{_where(migration.path)}: the file changed while bootstrap was running",
            file=str(migration.path),
        )
    return ParsedMigration(migration=migration, script=script)


def _is_transaction_control(words: tuple[str, ...]) -> bool:
    if not words or words[0] not in _TRANSACTION_CONTROL:
        return False
    if words[0] == "prepare":  # PREPARE name AS ... is a prepared statement, not a transaction
        return len(words) > 1 and words[1] == "transaction"
    # ROLLBACK TO SAVEPOINT and ROLLBACK PREPARED are not the end of our transaction...
    # but ROLLBACK PREPARED cannot run in one either, and COMMIT PREPARED neither.
    return not (words[0] == "rollback" and len(words) > 1 and words[1] == "to")


def _code_words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z_]+", text)}
