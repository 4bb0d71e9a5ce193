"""
Linting migration files for dangerous DDL with squawk, before they run.

squawk (PyPI `squawk-cli`, the optional extra `bootstrap[lint]`) is a static
binary: it is found next to the running interpreter, then on PATH, and run as
a subprocess with `--reporter json`, once for the files that run in a
transaction (`--assume-in-transaction`) and once for the others, every file
of a kind in one invocation. Its findings are parsed, the rules bootstrap
makes moot are excluded, and each file's `-- bootstrap:lint-ignore` rules are
applied.

Pure: no database, no driver. `subprocess` and `json` load only when squawk runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError

if TYPE_CHECKING:
    from .migrations import Migration

# The squawk bootstrap is tested with (pyproject.toml pins the same; a test checks both).
SQUAWK_VERSION = "2.70.0"
INSTALL_HINT = "pip install 'bootstrap[lint]'"

# Every rule name squawk 2.70.0 accepts (`--exclude`), as it reports them. squawk has no
# --list-rules: tests/unit/test_lint.py checks this set against the pinned binary.
RULES = frozenset({
    "adding-field-with-default", "adding-foreign-key-constraint", "adding-not-nullable-field",
    "adding-required-field", "adding-serial-primary-key-field", "ban-add-column", "ban-add-composite-attribute",
    "ban-add-enum-value", "ban-alter-database-options", "ban-alter-domain-with-add-constraint",
    "ban-alter-extension", "ban-alter-function-options", "ban-alter-generated-expression", "ban-alter-identity",
    "ban-alter-policy-condition", "ban-alter-policy-roles", "ban-alter-role-options",
    "ban-alter-row-level-security", "ban-alter-sequence-values", "ban-alter-system-options",
    "ban-alter-view-options", "ban-char-field", "ban-concurrent-index-creation-in-transaction",
    "ban-create-domain-with-constraint", "ban-create-policy", "ban-detach-inheritance", "ban-disable-trigger",
    "ban-drop-column", "ban-drop-constraint", "ban-drop-database", "ban-drop-default", "ban-drop-domain",
    "ban-drop-extension", "ban-drop-function", "ban-drop-generated-expression", "ban-drop-index",
    "ban-drop-not-null", "ban-drop-policy", "ban-drop-schema", "ban-drop-sequence", "ban-drop-table",
    "ban-drop-trigger", "ban-drop-type", "ban-drop-view", "ban-duplicate-column-assignments",
    "ban-new-write-restriction", "ban-replace-view-function", "ban-replica-identity", "ban-revoke",
    "ban-set-default", "ban-set-schema", "ban-truncate-cascade", "ban-uncommitted-transaction",
    "changing-column-type", "constraint-missing-not-valid", "disallowed-unique-constraint",
    "identifier-too-long", "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity",
    "prefer-repack", "prefer-robust-stmts", "prefer-text-field", "prefer-timestamp-tz", "renaming-column",
    "renaming-object", "renaming-table", "require-concurrent-index-creation",
    "require-concurrent-index-deletion", "require-concurrent-partition-detach", "require-concurrent-reindex",
    "require-enum-value-ordering", "require-lock-timeout", "require-statement-timeout", "require-table-schema",
    "require-timeout-settings", "transaction-nesting",
})
# What squawk reports for a statement its own parser cannot read (not a rule it can exclude,
# but a file may silence it: squawk's parser is not PostgreSQL's).
SYNTAX_ERROR = "syntax-error"
IGNORABLE = RULES | {SYNTAX_ERROR}

# The rules bootstrap makes moot: never checked; each reason says why the advice does not apply.
MOOT_RULES: dict[str, str] = {
    "require-lock-timeout": (
        "bootstrap sets lock_timeout itself for every migration statement (--ddl-lock-timeout, 5 s by default: "
        "SET LOCAL in each file's transaction, SET before a no-transaction file's statements) and retries a file "
        "that could not get its locks with backoff"
    ),
    "require-statement-timeout": (
        "bootstrap sets statement_timeout itself for every migration statement from --statement-timeout (the "
        "same SET LOCAL / SET), so the limit is one setting of the deploy, not a line repeated in each file"
    ),
}


class Finding(NamedTuple):
    """
    One lint finding.

    Attributes:
        file: the file's path, as discovery found it.
        name: the file's name (as the ledger records it).
        line: 1-based line of the statement squawk points at.
        column: 1-based column.
        rule: squawk's rule name.
        message: what is wrong.
        help: how to fix it (None when squawk gives no help).
        level: `warning` or `error` (squawk's level; both count as findings).
    """

    file: str
    name: str
    line: int
    column: int
    rule: str
    message: str
    help: str | None
    level: str

    def where(self) -> str:
        """`file:line:column`, as errors name places."""
        return f"{self.file}:{self.line}:{self.column}"


class Silenced(NamedTuple):
    """A file's findings silenced by its `-- bootstrap:lint-ignore` directive."""

    name: str
    rules: tuple[str, ...]
    findings: int


class Outcome(NamedTuple):
    """What linting some files found: the findings left, and what each file silenced."""

    findings: list[Finding]
    silenced: list[Silenced]


def find_squawk(scripts_dir: str | None = None, path: str | None = None) -> str | None:
    """
    The squawk executable: in the running interpreter's scripts directory
    (where `pip install 'bootstrap[lint]'` puts it), else on PATH.

    Args:
        scripts_dir: where to look first (default: `sysconfig.get_path("scripts")`).
        path: the search path (default: `$PATH`).

    Returns:
        Its path, or None when it is not installed.
    """
    import shutil
    import sysconfig

    folder = scripts_dir if scripts_dir is not None else sysconfig.get_path("scripts")
    candidate = os.path.join(folder, "squawk")
    if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which("squawk", path=path)


def not_installed(scripts_dir: str | None = None) -> ConfigError:
    """The error for a command that must lint without squawk installed (exit 3)."""
    import sysconfig

    folder = scripts_dir if scripts_dir is not None else sysconfig.get_path("scripts")
    return ConfigError(
        f"squawk, the linter, is not installed (looked in {folder} and on PATH); install it with "
        f"{INSTALL_HINT}, or pass --lint warn or --lint off",
        install=INSTALL_HINT,
    )


def check_ignored(path: str, line: int, rules: Sequence[str]) -> None:
    """
    Check the rule names of a `-- bootstrap:lint-ignore` directive.

    Raises:
        ConfigError: an empty list or an unknown rule name, naming the file and line.
    """
    if not rules:
        raise ConfigError(f"{path}:{line}: bootstrap:lint-ignore needs rule names (lint-ignore rule-a,rule-b)",
                          file=path, line=line)
    for rule in rules:
        if rule not in IGNORABLE:
            import difflib

            close = difflib.get_close_matches(rule, sorted(IGNORABLE), n=1)
            hint = (f"; did you mean {close[0]}?" if close
                    else f"; squawk {SQUAWK_VERSION} names the rule of each finding it reports")
            raise ConfigError(f"{path}:{line}: unknown lint rule '{rule}' in bootstrap:lint-ignore{hint}",
                              file=path, line=line, rule=rule)


def pg_version(server_version: int) -> str:
    """`--pg-version` from libpq's number: 150004 -> `15.4`."""
    return f"{server_version // 10000}.{server_version % 10000}"


# squawk reads its arguments as glob patterns: a file name holding one of these is escaped.
_GLOB = str.maketrans({"*": "[*]", "?": "[?]", "[": "[[]", "]": "[]]"})
# Paths per squawk invocation stay well under the kernel's argument limit.
_ARGV_BYTES = 512 * 1024


def lint(migrations: Sequence[Migration], squawk: str, *, server_version: int | None = None,
         exclude: Sequence[str] = tuple(MOOT_RULES)) -> Outcome:
    """
    Lint `migrations` with squawk: the transactional ones as running in a
    transaction, the others not; then drop what each file silences.

    Args:
        migrations: the files, in the order they would run.
        squawk: the executable (`find_squawk`).
        server_version: the server's (libpq's number), told to squawk; None when unknown.
        exclude: rules not checked at all.

    Returns:
        The findings in file order, then line; and what each file silenced.

    Raises:
        ConfigError: squawk failed (not its findings: it could not run, or printed no JSON).
    """
    by_path = {os.fspath(m.location): m for m in migrations}
    found: list[Finding] = []
    for in_transaction in (True, False):
        paths = [os.fspath(m.location) for m in migrations if m.transactional is in_transaction]
        for chunk in _chunks(paths):
            found += _run(squawk, chunk, by_path, in_transaction=in_transaction, server_version=server_version,
                          exclude=exclude)
    order = {name: i for i, name in enumerate(by_path)}
    found.sort(key=lambda f: (order.get(f.file, len(order)), f.line, f.column, f.rule))
    kept: list[Finding] = []
    silenced: dict[str, list[Finding]] = {}
    for finding in found:
        ignored = by_path[finding.file].lint_ignore if finding.file in by_path else frozenset()
        if finding.rule in ignored:
            silenced.setdefault(finding.file, []).append(finding)
        else:
            kept.append(finding)
    return Outcome(kept, [Silenced(by_path[path].name, tuple(sorted({f.rule for f in items})), len(items))
                          for path, items in silenced.items()])


def _chunks(paths: list[str]) -> list[list[str]]:
    out: list[list[str]] = []
    size = _ARGV_BYTES
    for path in paths:
        if size + len(path) + 1 > _ARGV_BYTES:
            out.append([])
            size = 0
        out[-1].append(path)
        size += len(path) + 1
    return out


def _linter_environ() -> dict[str, str]:
    """squawk's environment: bootstrap's, without the connections and their secrets (it needs none)."""
    return {k: v for k, v in os.environ.items()
            if not (k.startswith("PG") or k.endswith(("DATABASE_URL", "DATABASE_URL_FILE")))}


def _run(squawk: str, paths: list[str], by_path: dict[str, Migration], *, in_transaction: bool,
         server_version: int | None, exclude: Sequence[str]) -> list[Finding]:
    """One squawk invocation over `paths`: its findings."""
    import json
    import subprocess

    argv = [squawk, "--reporter", "json", "--assume-in-transaction" if in_transaction else "--no-assume-in-transaction"]
    if server_version is not None:
        argv.append(f"--pg-version={pg_version(server_version)}")
    if exclude:
        argv.append("--exclude=" + ",".join(exclude))
    argv += ["--", *(p.translate(_GLOB) for p in paths)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                              env=_linter_environ())
    except OSError as exc:
        raise ConfigError(f"cannot run squawk ({squawk}): {exc.strerror or exc}", squawk=squawk) from None
    try:
        if done.returncode not in (0, 1):
            raise ValueError(done.returncode)
        reported = json.loads(done.stdout or "[]")
    except ValueError:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"squawk ({squawk}) failed (exit {done.returncode}): {detail[0] if detail else 'no output'}",
            squawk=squawk,
        ) from None
    out = []
    for item in reported:
        file = str(item.get("file", ""))
        migration = by_path.get(file) or by_path.get(os.path.normpath(file))
        out.append(Finding(
            file=os.fspath(migration.location) if migration is not None else file,
            name=migration.name if migration is not None else os.path.basename(file),
            line=int(item.get("line") or 0) + 1,
            column=int(item.get("column") or 0) + 1,
            rule=str(item.get("rule_name", "")),
            message=str(item.get("message", "")),
            help=item.get("help") or None,
            level=str(item.get("level", "warning")).lower(),
        ))
    return out
