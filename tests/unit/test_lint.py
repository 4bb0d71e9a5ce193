"""The linter: the pinned squawk, its rule names, the lint-ignore directive, findings as bootstrap reports them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bootstrap.errors import ConfigError, ExitCode
from bootstrap.lint import MOOT_RULES, RULES, SQUAWK_VERSION, find_squawk, lint, pg_version
from bootstrap.migrations import discover_migrations
from tests.helpers import REPO, write

SQUAWK = find_squawk()
# Every rule name starts with one of these words (squawk's own naming).
RULE_WORDS = ("adding", "ban", "changing", "constraint", "disallowed", "identifier", "prefer", "renaming",
              "require", "transaction", "unused")


def squawk() -> str:
    """The squawk the test extra installed next to this interpreter."""
    assert SQUAWK is not None, "squawk is not installed: ./scripts/test installs it (requirements/dev.txt)"
    return SQUAWK


def accepts(rule: str) -> bool:
    """Whether the pinned squawk accepts `rule` as a rule name."""
    done = subprocess.run([squawk(), f"--exclude={rule}", "--", os.devnull], capture_output=True, text=True,
                          check=False)
    return done.returncode != 2


def test_squawk_is_the_pinned_one_next_to_the_interpreter() -> None:
    """The test group's squawk is found in this interpreter's scripts directory, at the version lint.py, the lint extra and the test group pin."""
    import sysconfig

    assert os.path.join(sysconfig.get_path("scripts"), "squawk") == squawk()
    version = subprocess.run([squawk(), "--version"], capture_output=True, text=True, check=True).stdout.strip()
    assert f"squawk {SQUAWK_VERSION}" == version
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = [pyproject["project"]["optional-dependencies"]["lint"], pyproject["dependency-groups"]["test"]]
    assert [f"squawk-cli=={SQUAWK_VERSION}"] * 2 == [next(d for d in pin if "squawk" in d) for pin in pins]


def test_rule_names_are_the_pinned_squawks() -> None:
    """
    RULES is exactly what squawk 2.70.0 accepts: every name in it is accepted, a made-up one is
    refused, and no other rule-shaped string in the binary is a rule (squawk has no --list-rules).
    """
    assert accepts(",".join(sorted(RULES)))
    assert not accepts("require-a-good-reason")
    data = Path(squawk()).read_bytes()
    words = "|".join(RULE_WORDS)
    runs = {m.group().decode() for m in re.finditer(f"(?:{words})-[a-z-]+".encode(), data)}
    # Literals sit side by side in the binary: try every rule-shaped prefix of every run, except
    # known names' own prefixes and known names run into the next literal.
    candidates = set()
    for run in runs:
        for start in (m.start() for m in re.finditer(f"(?:{words})-", run)):
            for end in range(start + 5, len(run) + 1):
                name = run[start:end]
                if not name.endswith("-") and name not in RULES and not any(
                        rule.startswith(name) or (name.startswith(rule) and name[len(rule)] != "-")
                        for rule in RULES):
                    candidates.add(name)
    with ThreadPoolExecutor(4) as pool:
        extra = [name for name, ok in zip(sorted(candidates), pool.map(accepts, sorted(candidates)), strict=True)
                 if ok]
    assert [] == extra


def test_moot_rules_are_rules_and_say_why() -> None:
    """Every rule bootstrap turns off is one of squawk's, with the reason written down."""
    assert {"require-lock-timeout", "require-statement-timeout"} == set(MOOT_RULES)
    assert set(MOOT_RULES) <= RULES
    assert all("bootstrap sets" in reason for reason in MOOT_RULES.values())


def test_moot_rules_are_not_checked(sql_dir: Path) -> None:
    """squawk would ask for a lock_timeout and a statement_timeout before this build; bootstrap sets both, so it does not."""
    write(sql_dir, "1_a.sql", "-- bootstrap:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c);\n")
    files = discover_migrations(sql_dir)
    assert ["require-lock-timeout", "require-statement-timeout"] == [f.rule for f in lint(files, squawk(),
                                                                                         exclude=()).findings]
    assert [] == lint(files, squawk()).findings


DIRECTIVES = [
    ("one-rule", "-- bootstrap:lint-ignore ban-drop-column\nALTER TABLE t DROP COLUMN c;\n",
     True, {"ban-drop-column"}),
    ("comma-list", "-- why: reviewed\n-- bootstrap:lint-ignore ban-drop-column, renaming-table\nSELECT 1;\n",
     True, {"ban-drop-column", "renaming-table"}),
    ("with-no-transaction", "-- bootstrap:no-transaction lint-ignore prefer-robust-stmts\nSELECT 1;\n",
     False, {"prefer-robust-stmts"}),
    ("two-lines", "-- bootstrap:lint-ignore ban-drop-table\n-- bootstrap:lint-ignore syntax-error\nSELECT 1;\n",
     True, {"ban-drop-table", "syntax-error"}),
    ("after-sql-is-a-comment", "SELECT 1;\n-- bootstrap:lint-ignore nonsense\n", True, set()),
]


@pytest.mark.parametrize(("text", "transactional", "ignored"), [d[1:] for d in DIRECTIVES],
                         ids=[d[0] for d in DIRECTIVES])
def test_lint_ignore_directive(sql_dir: Path, text: str, transactional: bool, ignored: set[str]) -> None:
    """`-- bootstrap:lint-ignore a,b` in the leading comments names the rules the file silences."""
    write(sql_dir, "1_a.sql", text)
    (migration,) = discover_migrations(sql_dir)
    assert (transactional, ignored) == (migration.transactional, set(migration.lint_ignore))


def test_lint_ignore_without_rules_is_refused_at_discovery(sql_dir: Path) -> None:
    """A lint-ignore naming no rule is refused when the files are discovered (exit 3), naming file and line."""
    write(sql_dir, "1_a.sql", "-- bootstrap:lint-ignore\nSELECT 1;\n")
    with pytest.raises(ConfigError) as info:
        discover_migrations(sql_dir)
    assert ExitCode.CONFIG == info.value.exit_code
    assert "1_a.sql:1: bootstrap:lint-ignore needs rule names" in str(info.value)


@pytest.mark.parametrize(("rule", "said"), [("ban-drop-colum", "ban-drop-colum (did you mean ban-drop-column?)"),
                                            ("lock-timeout", "lock-timeout (did you mean require-lock-timeout?)")],
                         ids=["typo", "a-moot-typo"])
def test_an_unknown_rule_is_read_and_reported_by_the_linter(sql_dir: Path, rule: str, said: str) -> None:
    """A rule name squawk does not know never stops discovery (a squawk upgrade must not block a deploy); lint names it."""
    from bootstrap.lint import unknown_ignored

    write(sql_dir, "1_a.sql", f"-- x\n-- bootstrap:lint-ignore {rule}\nSELECT 1;\n")
    files = discover_migrations(sql_dir)
    assert [f"{sql_dir / '1_a.sql'}: {said}"] == unknown_ignored(files)


def test_a_directive_is_part_of_the_checksum(sql_dir: Path) -> None:
    """Adding a lint-ignore line changes the file's checksum, as any edit does (an applied file then needs repair)."""
    path = write(sql_dir, "1_a.sql", "ALTER TABLE t DROP COLUMN c;\n")
    before = discover_migrations(sql_dir)[0].checksum
    path.write_text("-- bootstrap:lint-ignore ban-drop-column\nALTER TABLE t DROP COLUMN c;\n")
    assert before != discover_migrations(sql_dir)[0].checksum


def test_findings_name_file_line_rule_and_help(sql_dir: Path) -> None:
    """A finding names the file, its 1-based line and column, the rule, squawk's message and its help."""
    write(sql_dir, "1_a.sql", "-- an index on an existing table\nSELECT 1;\n\nCREATE INDEX t_id ON t (id);\n")
    outcome = lint(discover_migrations(sql_dir), squawk())
    assert [(str(sql_dir / "1_a.sql"), "1_a.sql", 4, 1, "require-concurrent-index-creation", "warning")] == [
        (f.file, f.name, f.line, f.column, f.rule, f.level) for f in outcome.findings]
    assert "Use `concurrently` to avoid blocking writes." == outcome.findings[0].help
    assert f"{sql_dir / '1_a.sql'}:4:1" == outcome.findings[0].where()


def test_files_are_linted_as_they_run(sql_dir: Path) -> None:
    """Transactional files are linted as running in a transaction, no-transaction files as not; moot rules never show."""
    body = "CREATE TABLE IF NOT EXISTS t (id bigint);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_id ON t (id);\n"
    write(sql_dir, "1_in.sql", body)
    write(sql_dir, "2_out.sql", "-- bootstrap:no-transaction\n" + body)
    outcome = lint(discover_migrations(sql_dir), squawk())
    assert [("1_in.sql", 2, "ban-concurrent-index-creation-in-transaction")] == [
        (f.name, f.line, f.rule) for f in outcome.findings]


def test_each_file_silences_only_its_own_rules(sql_dir: Path) -> None:
    """A file's lint-ignore drops its own findings of those rules and says how many; other files keep theirs."""
    body = "ALTER TABLE t DROP COLUMN c;\nALTER TABLE t DROP COLUMN d;\n"
    write(sql_dir, "1_quiet.sql", "-- bootstrap:lint-ignore ban-drop-column\n" + body)
    write(sql_dir, "2_loud.sql", body)
    outcome = lint(discover_migrations(sql_dir), squawk())
    assert [("2_loud.sql", "ban-drop-column")] * 2 == [(f.name, f.rule) for f in outcome.findings]
    assert [("1_quiet.sql", ("ban-drop-column",), 2)] == [tuple(s) for s in outcome.silenced]


@pytest.mark.parametrize(("server_version", "expected"), [(100023, ["adding-field-with-default"]), (150004, [])],
                         ids=["pg10", "pg15"])
def test_the_server_version_is_told_to_squawk(sql_dir: Path, server_version: int, expected: list[str]) -> None:
    """A column with a constant default rewrites the table before PostgreSQL 11 only: the server's version decides."""
    write(sql_dir, "1_a.sql", "ALTER TABLE t ADD COLUMN c text DEFAULT 'x';\n")
    outcome = lint(discover_migrations(sql_dir), squawk(), server_version=server_version)
    assert expected == [f.rule for f in outcome.findings]
    assert "15.4" == pg_version(150004)


def test_file_names_are_not_read_as_patterns(sql_dir: Path) -> None:
    """squawk reads arguments as glob patterns: a name with [ ] * ? is linted as itself, and only itself."""
    write(sql_dir, "1_a[b].sql", "DROP TABLE t;\n")
    write(sql_dir, "2_x*.sql", "SELECT 1;\n")
    write(sql_dir, "3_xyz.sql", "DROP TABLE u;\n")
    files = discover_migrations(sql_dir)
    outcome = lint([files[0], files[1]], squawk())
    assert [("1_a[b].sql", "ban-drop-table")] == [(f.name, f.rule) for f in outcome.findings]


def test_find_squawk_looks_next_to_the_interpreter_then_on_path(tmp_path: Path) -> None:
    """The scripts directory first, then PATH; None when neither has it."""
    scripts, elsewhere, empty = tmp_path / "scripts", tmp_path / "bin", tmp_path / "empty"
    for folder in (scripts, elsewhere, empty):
        folder.mkdir()
    for folder in (scripts, elsewhere):
        (folder / "squawk").write_text("#!/bin/sh\n")
        (folder / "squawk").chmod(0o755)
    assert str(scripts / "squawk") == find_squawk(str(scripts), str(elsewhere))
    assert str(elsewhere / "squawk") == find_squawk(str(empty), str(elsewhere))
    assert None is find_squawk(str(empty), str(empty))


def test_a_failing_squawk_is_a_config_error(sql_dir: Path, tmp_path: Path) -> None:
    """squawk that cannot run or prints no JSON is a configuration error naming it (never taken for "clean")."""
    broken = tmp_path / "squawk"
    broken.write_text("#!/bin/sh\necho 'error: something broke' >&2\nexit 2\n")
    broken.chmod(0o755)
    write(sql_dir, "1_a.sql", "SELECT 1;\n")
    with pytest.raises(ConfigError, match=r"squawk \(.*\) failed \(exit 2\): error: something broke"):
        lint(discover_migrations(sql_dir), str(broken))


def test_no_files_run_no_squawk(tmp_path: Path) -> None:
    """Nothing to lint: squawk is not even started (a missing executable is not noticed)."""
    assert ([], [], []) == tuple(lint([], str(tmp_path / "absent")))


def test_lint_module_is_pure() -> None:
    """Importing bootstrap.lint loads neither psycopg nor subprocess (squawk runs only when there is work)."""
    code = "import sys, bootstrap.lint; print(sorted(m for m in ('psycopg', 'subprocess') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stdout.strip()
