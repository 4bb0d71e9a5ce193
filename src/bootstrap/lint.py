"""
Linting migration files for dangerous DDL with squawk, before they run.

squawk (PyPI `squawk-cli`, bootstrap's optional extra `lint`) is a static
binary: it is found next to the running interpreter, then on PATH, and run as
a subprocess with `--reporter json`, once for the files that run in a
transaction (`--assume-in-transaction`) and once for the others, every file
of a kind in one invocation. Its findings are parsed, the rules bootstrap
makes moot are excluded, and each file's `-- bootstrap:lint-ignore` rules are
applied.

Also the lint step of `migrate` (`lint_step`: warn, error or off) and the
error for findings that remain. No database, no driver. `subprocess` and
`json` load only when squawk runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from .errors import ConfigError, LintFindingsError
from .typing import Finding, LintResult, Logger, Silenced

if TYPE_CHECKING:
    from .migrations import Migration

# The squawk bootstrap is tested with (pyproject.toml pins the same; a test checks both).
SQUAWK_VERSION = "2.70.0"
INSTALL_HINT = f"pip install squawk-cli=={SQUAWK_VERSION} (into bootstrap's environment)"

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

# Style preferences, not hazards: `bootstrap lint` reports them; migrate's own lint step (and --dry-run's)
# warns only about what takes locks or breaks a rolling deploy, so a deploy log is not noise.
STYLE_RULES = frozenset({
    "prefer-bigint-over-int", "prefer-bigint-over-smallint", "prefer-identity", "prefer-text-field",
    "prefer-timestamp-tz", "ban-char-field", "require-table-schema",
})


class Outcome(NamedTuple):
    """What linting some files found: the findings left, what each file silenced, and unknown silenced rules."""

    findings: list[Finding]
    silenced: list[Silenced]
    unknown: list[str]  # "file: rule (did you mean ...?)" for lint-ignore names squawk does not know


def find_squawk(scripts_dir: str | None = None, path: str | None = None) -> str | None:
    """
    The squawk executable: in the running interpreter's scripts directory
    (where pip installs `squawk-cli`, the `lint` extra), else on PATH.

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


def unknown_ignored(migrations: Sequence[Migration]) -> list[str]:
    """
    The `-- bootstrap:lint-ignore` names the pinned squawk does not know, each as
    "file: rule (did you mean ...?)". Checked when linting runs, never when files
    are read: a squawk upgrade that renames a rule must not block a deploy.
    """
    out = []
    for m in migrations:
        for rule in sorted(m.lint_ignore - IGNORABLE):
            import difflib

            close = difflib.get_close_matches(rule, sorted(IGNORABLE), n=1)
            out.append(f"{m.location}: {rule}" + (f" (did you mean {close[0]}?)" if close else ""))
    return out


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
        paths = [os.fspath(m.location) for m in migrations if m.transactional is in_transaction and not m.variables]
        for chunk in _chunks(paths):
            found += _run(squawk, chunk, by_path, in_transaction=in_transaction, server_version=server_version,
                          exclude=exclude)
    for m in migrations:  # a file with variables: as written, each variable a stand-in of its own length
        if m.variables:
            found += _run(squawk, [os.fspath(m.location)], by_path, in_transaction=m.transactional,
                          server_version=server_version, exclude=exclude, text=_stand_ins(m))
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
                          for path, items in silenced.items()], unknown_ignored(migrations))


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


def _stand_ins(migration: Migration) -> str:
    """
    A file's text with each psql variable (:'NAME', :"NAME") replaced by a literal or an identifier
    of the same length ('NAME' , "NAME" ): squawk parses it, lines and columns stay; no value is read.
    """
    from .sqlfile import read_sql_file
    from .sqlsplit import split_statements

    text = migration.text if migration.text is not None else read_sql_file(migration.location).text
    out, at = [], 0
    for variable in split_statements(text, variables=True).variables:
        if variable.kind != "raw":
            quote = "'" if variable.kind == "literal" else '"'
            out += [text[at : variable.start], f"{quote}{variable.name}{quote} "]
            at = variable.end
    return "".join([*out, text[at:]])


def _run(squawk: str, paths: list[str], by_path: dict[str, Migration], *, in_transaction: bool,
         server_version: int | None, exclude: Sequence[str], text: str | None = None) -> list[Finding]:
    """One squawk invocation over `paths` (or over `text`, reported as the one path): its findings."""
    import json
    import subprocess

    argv = [squawk, "--reporter", "json", "--assume-in-transaction" if in_transaction else "--no-assume-in-transaction"]
    if server_version is not None:
        argv.append(f"--pg-version={pg_version(server_version)}")
    if exclude:
        argv.append("--exclude=" + ",".join(exclude))
    argv += [f"--stdin-filepath={paths[0]}"] if text is not None else ["--", *(p.translate(_GLOB) for p in paths)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=_linter_environ(),
                              **({"input": text} if text is not None else {"stdin": subprocess.DEVNULL}))
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


def run_lint(files: Sequence[Migration], log: Logger, *, server_version: int | None,
             scope: str = "pending", style: bool = True) -> LintResult:
    """
    Lint `files` with squawk and log what it found: each finding (warning),
    each file's silenced findings, unknown silenced rules, and one `lint_completed` line.

    Args:
        style: report style preferences too (`bootstrap lint`); migrate's step leaves them out.

    Raises:
        ConfigError: squawk is not installed, or failed.
    """
    import time

    squawk = find_squawk()
    if squawk is None:
        raise not_installed()
    started = time.monotonic()
    excluded = sorted(MOOT_RULES) if style else sorted({*MOOT_RULES, *STYLE_RULES})
    outcome = lint(files, squawk, server_version=server_version, exclude=excluded)
    for f in outcome.findings:
        log.warning("lint_finding_reported", migration=f.name, file=f.file, line=f.line, column=f.column,
                    rule=f.rule, message=f.message, help=f.help)
    for s in outcome.silenced:
        log.info("lint_findings_silenced", migration=s.name, rules=list(s.rules), findings=s.findings,
                 reason="-- bootstrap:lint-ignore in the file")
    for unknown in outcome.unknown:
        log.warning("lint_ignore_unknown", rule=unknown,
                    reason=f"squawk {SQUAWK_VERSION} knows no such rule: the lint-ignore silences nothing")
    log.info("lint_completed", files=len(files), findings=len(outcome.findings),
             silenced=sum(s.findings for s in outcome.silenced), scope=scope, excluded=excluded,
             duration_ms=round((time.monotonic() - started) * 1000))
    return LintResult(list(files), outcome.findings, outcome.silenced, scope=scope, server_version=server_version,
                      unknown=outcome.unknown)


def lint_step(mode: str, files: Sequence[Migration], log: Logger, *, server_version: int | None,
              block: bool) -> LintResult | None:
    """
    The lint `migrate` runs on the files about to run, before its lock (`--lint`):
    each finding logged as a warning; `error` refuses; `off` skips.

    Args:
        mode: warn, error or off.
        block: with `error`, refuse when findings remain.

    Returns:
        What linting found; None with `--lint off` or nothing to lint.

    Raises:
        ConfigError: `--lint error` without squawk, or squawk failed (exit 3).
        LintFindingsError: `--lint error` and `block`, with findings (exit 11).
    """
    if mode == "off" or not files:
        return None
    try:
        result = run_lint(files, log, server_version=server_version, style=False)
    except ConfigError as exc:
        if mode == "error":
            raise
        log.warning("lint_skipped", reason=exc.message, **exc.fields)
        return LintResult(list(files), [], [], skipped=exc.message)
    if block and mode == "error" and result.findings:
        raise findings_error(result)
    return result


def findings_error(result: LintResult, *, refusing: bool = True) -> LintFindingsError:
    """
    The error for findings that remain (exit 11), naming each place and rule.

    Args:
        result: what linting found.
        refusing: `migrate --lint error` refusing to run (False: `bootstrap lint` reporting).
    """
    count, files = len(result.findings), len({f.file for f in result.findings})
    shown = "; ".join(f"{f.where()}: {f.rule}" for f in result.findings[:10])
    more = f"; and {count - 10} more" if count > 10 else ""
    return LintFindingsError(
        f"{count} lint finding{'s' if count != 1 else ''} in {files} file{'s' if files != 1 else ''}"
        f"{', nothing was changed' if refusing else ''}: {shown}{more}. Fix them, or silence a rule in a file "
        f"with '-- bootstrap:lint-ignore RULE'{' (or pass --lint warn)' if refusing else ''}",
        findings=count, files=files,
    )
