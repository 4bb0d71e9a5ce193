"""
One SQL file: read it, checksum it, read its directives, split and check it.

Used for migrations, their `.down.sql` partners and verify scripts alike.
Touches no database; the lexer (`sqlsplit`) is imported only when a file is
split, so listing and checksumming a thousand files on a container start
never pays for it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from . import redact
from .errors import ConfigError

if TYPE_CHECKING:
    from .sqlsplit import Script

BOM = b"\xef\xbb\xbf"
# A file is sent as one query; PostgreSQL refuses queries of 1 GB and more.
MAX_FILE_BYTES = 256 * 1024 * 1024
NO_TRANSACTION = "no-transaction"
LINT_IGNORE = "lint-ignore"  # takes the rest of its line: rule names, comma-separated
# Takes the rest of its line: SHA-256 checksums of earlier texts of this file that the ledger may hold
# (an edit reviewed as safe for the databases that ran the earlier text; Liquibase's validCheckSum).
VALID_CHECKSUM = "valid-checksum"
# Takes the rest of its line: the environment variables the file may use as psql variables (:'NAME', :"NAME").
VARS = "vars"
# The one variable bootstrap sets itself (a fleet's tenant name): a name, not a secret, so never masked.
TENANT_VARIABLE = "BOOTSTRAP_TENANT"
KNOWN_DIRECTIVES = frozenset({NO_TRANSACTION, LINT_IGNORE, VALID_CHECKSUM, VARS})
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHECKSUM = re.compile(r"^[0-9a-f]{64}$")
VERIFY_DIR = "verify"
AFTER_DIR = "after"  # after-migrate scripts (parsing.load_scripts)
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


class SqlFile(NamedTuple):
    """
    A file read and checked: decoded text, checksum and directives (`lint_ignore`: rules it silences;
    `valid_checksums`: earlier texts' checksums the ledger may hold; `variables`: what `-- bootstrap:vars` lists).
    """

    path: str | os.PathLike[str]
    text: str
    checksum: str
    transactional: bool
    lint_ignore: frozenset[str] = frozenset()
    valid_checksums: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()


class Directives(NamedTuple):
    """What a file's `-- bootstrap:` lines say: its options, the lint rules it silences, earlier checksums."""

    options: frozenset[str]
    lint_ignore: frozenset[str] = frozenset()
    valid_checksums: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()


def where(path: str | os.PathLike[str]) -> str:
    """A path as messages show it."""
    return os.fspath(path)


def normalise(raw: bytes) -> bytes:
    """Drop a UTF-8 BOM and read CRLF as LF: what the checksum is taken of."""
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    return raw.replace(b"\r\n", b"\n") if b"\r" in raw else raw


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
                    f"{where(path)}: {size / 2**20:.0f} MiB is more than bootstrap sends as one query "
                    f"({MAX_FILE_BYTES // 2**20} MiB); split it into several migrations, or load bulk data "
                    "with COPY from a server-side file",
                    file=where(path),
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
            f"{where(path)}: cannot read the file: {exc.strerror or exc}", file=where(path)
        ) from None
    data = normalise(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        from .sqlsplit import line_col

        prefix = data[: exc.start].decode("utf-8")
        line, col = line_col(prefix, len(prefix))
        raise ConfigError(
            f"{where(path)}:{line}:{col}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
            "save the file as UTF-8",
            file=str(path),
            line=line,
        ) from None
    if not text or text.isspace():
        raise ConfigError(
            f"{where(path)}: the file is empty; a migration must contain SQL",
            file=str(path),
        )
    directives = read_directives(path, text)
    return SqlFile(
        path=path,
        text=text,
        checksum=hashlib.sha256(data).hexdigest(),
        transactional=NO_TRANSACTION not in directives.options,
        lint_ignore=directives.lint_ignore,
        valid_checksums=directives.valid_checksums,
        variables=directives.variables,
    )


_NO_DIRECTIVES = Directives(frozenset())


def read_directives(path: str | os.PathLike[str], text: str) -> Directives:
    """
    Read `-- bootstrap:<option>` lines from the file's leading comments;
    `lint-ignore rule-a,rule-b` takes the rest of its line.

    Raises:
        ConfigError: an unknown option or lint rule, naming the file and line.
    """
    found: set[str] = set()
    ignored: set[str] = set()
    earlier: set[str] = set()
    variables: set[str] = set()
    if text[:1] != "-" and not text[:1].isspace():
        return _NO_DIRECTIVES  # most files: SQL on the first line, so no leading comment at all
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
                f"{where(path)}:{number}: empty bootstrap directive; "
                f"known options: {', '.join(sorted(KNOWN_DIRECTIVES))}",
                file=str(path),
                line=number,
            )
        for at, option in enumerate(options):
            if option == LINT_IGNORE:
                rules = options[at + 1 :]
                if not rules:  # rule names are checked when linting runs: squawk's list may change
                    raise ConfigError(f"{where(path)}:{number}: bootstrap:lint-ignore needs rule names "
                                      "(lint-ignore rule-a,rule-b)", file=str(path), line=number)
                ignored.update(rules)
                found.add(option)
                break
            if option == VALID_CHECKSUM:
                for checksum in options[at + 1 :] or [""]:
                    if not _CHECKSUM.match(checksum):
                        raise ConfigError(f"{where(path)}:{number}: bootstrap:valid-checksum takes SHA-256 checksums "
                                          "(64 lowercase hex digits, as `bootstrap status --json` shows them)",
                                          file=str(path), line=number)
                earlier.update(options[at + 1 :])
                found.add(option)
                break
            if option == VARS:
                names = options[at + 1 :]
                bad = [n for n in names if not _VARIABLE_NAME.match(n)] or ([] if names else [""])
                if bad:
                    raise ConfigError(f"{where(path)}:{number}: bootstrap:vars takes environment variable names "
                                      f"(vars APP_PASSWORD,REPLICA_HOST); {bad[0]!r} is not one",
                                      file=str(path), line=number)
                variables.update(names)
                found.add(option)
                break
            if option not in KNOWN_DIRECTIVES:
                raise ConfigError(
                    f"{where(path)}:{number}: unknown directive 'bootstrap:{option}'; "
                    f"known options: {', '.join(sorted(KNOWN_DIRECTIVES))}",
                    file=str(path),
                    line=number,
                )
            found.add(option)
    return (Directives(frozenset(found), frozenset(ignored), frozenset(earlier), frozenset(variables)) if found
            else _NO_DIRECTIVES)


class Parsed(NamedTuple):
    """A file read and split, with the values of the variables it uses (`-- bootstrap:vars`), if asked for."""

    read: SqlFile
    script: Script
    values: Mapping[str, str]


def parse_file(path: str | os.PathLike[str], already: SqlFile | None = None, *,
               environ: Mapping[str, str] | None = None) -> Parsed:
    """
    Read and split one file.

    Args:
        path: the file.
        already: the file as discovery read it (saves reading it again).
        environ: where the values of its variables come from (`NAME` or `NAME_FILE`); None: the
            variables are checked against the directive, but their values are not read (lint, --dry-run).

    Raises:
        ConfigError: for anything `read_sql_file` refuses, an unterminated
            quote or comment, a psql meta-command, a file with no statement, or a
            variable the directive does not list, pasted raw, or unset.
    """
    from .sqlsplit import SqlSyntaxError, line_col, split_statements

    read = already or read_sql_file(path)
    try:
        script = split_statements(read.text, variables=bool(read.variables))
    except SqlSyntaxError as exc:
        line, col = line_col(read.text, exc.offset)
        raise ConfigError(
            f"{where(path)}:{line}:{col}: {exc}", file=str(path), line=line
        ) from None
    for statement in script.code_statements:
        refused = _refused(statement.words)
        if refused is not None:
            line, _ = line_col(read.text, statement.code_start)
            raise ConfigError(f"{where(path)}:{line}: {refused}", file=str(path), line=line)
    if script.backslashes:
        line, col = line_col(read.text, script.backslashes[0])
        snippet = read.text[script.backslashes[0] :].split("\n", 1)[0][:40]
        raise ConfigError(
            f"{where(path)}:{line}:{col}: '{snippet}' is a psql meta-command, not SQL; "
            "bootstrap sends files to the server as they are",
            file=str(path),
            line=line,
        )
    if not script.code_statements:
        raise ConfigError(
            f"{where(path)}: the file has only comments; a migration must contain SQL",
            file=str(path),
        )
    values = _values(path, read, script, environ) if read.variables else _NO_VALUES
    for statement in script.code_statements:
        words = statement.words

        if read.transactional and _is_transaction_control(words):
            line, _ = line_col(read.text, statement.code_start)
            if os.path.basename(os.path.dirname(os.fspath(path))) == VERIFY_DIR:
                raise ConfigError(
                    f"{where(path)}:{line}: {_TRANSACTION_CONTROL[words[0]]} in a verify script; verify "
                    "scripts run inside one transaction that bootstrap always rolls back. Remove it",
                    file=str(path),
                    line=line,
                )
            raise ConfigError(
                f"{where(path)}:{line}: {_TRANSACTION_CONTROL[words[0]]} in a transactional file; "
                "bootstrap already runs each file in one transaction together with its ledger row. "
                "Remove it, or put '-- bootstrap:no-transaction' on the first line",
                file=str(path),
                line=line,
            )
    return Parsed(read, script, values)


_NO_VALUES: Mapping[str, str] = {}


def _values(path: str | os.PathLike[str], read: SqlFile, script: Script,
            environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """
    Check each variable the file uses against its directive; read their values (masked from then on).

    Raises:
        ConfigError: a variable not listed, one pasted raw (:NAME), or (with `environ`) one unset.
    """
    from .settings import env_value
    from .sqlsplit import line_col

    values: dict[str, str] = {}
    for variable in script.variables:
        line, col = line_col(read.text, variable.start)
        at = f"{where(path)}:{line}:{col}"
        if variable.kind == "raw":
            if variable.name in read.variables:
                raise ConfigError(f"{at}: :{variable.name} would paste the value of {variable.name} into the SQL "
                                  f"as it is; write :'{variable.name}' (a literal) or :\"{variable.name}\" "
                                  "(an identifier)", file=str(path), line=line, variable=variable.name)
            continue  # not a variable of this file: SQL (an array slice a[1:n])
        if variable.name not in read.variables:
            raise ConfigError(f"{at}: {read.text[variable.start:variable.end]} uses {variable.name}, which the "
                              f"file's -- bootstrap:vars line does not list", file=str(path), line=line,
                              variable=variable.name)
        if environ is None or variable.name in values:
            continue
        value, _source = env_value(environ, variable.name, empty=True)
        if value is None:
            raise ConfigError(f"{at}: {variable.name} is not set: set {variable.name} (or {variable.name}_FILE) "
                              "in bootstrap's environment", file=str(path), line=line, variable=variable.name)
        if variable.name != TENANT_VARIABLE:
            redact.register_secret(value)
        values[variable.name] = value
    return values


def _is_transaction_control(words: tuple[str, ...]) -> bool:
    if not words or words[0] not in _TRANSACTION_CONTROL:
        return False
    if words[0] == "prepare":  # PREPARE name AS ... is a prepared statement, not a transaction
        return len(words) > 1 and words[1] == "transaction"
    # ROLLBACK TO SAVEPOINT and ROLLBACK PREPARED are not the end of our transaction...
    # but ROLLBACK PREPARED cannot run in one either, and COMMIT PREPARED neither.
    return not (words[0] == "rollback" and len(words) > 1 and words[1] == "to")


_LOCK_RELEASE = ("releases bootstrap's migration lock, so another runner could take it mid-run; "
                 "bootstrap holds it for the whole run and releases it itself")


def _refused(words: tuple[str, ...]) -> str | None:
    """Why a statement (its words outside strings and comments, as the lexer read them) is refused, if it is."""
    if words[:1] == ("copy",) and "stdin" in words:
        return "COPY ... FROM STDIN needs psql; use INSERT statements or COPY from a server-side file"
    if words[:1] == ("copy",) and "stdout" in words:
        return ("COPY ... TO STDOUT sends rows to a client that keeps none; use COPY to a server-side file, or a "
                "SELECT in a verify script")
    if words[:2] == ("discard", "all"):
        return "DISCARD ALL " + _LOCK_RELEASE
    if "pg_advisory_unlock_all" in words:
        return "pg_advisory_unlock_all() " + _LOCK_RELEASE
    return None
