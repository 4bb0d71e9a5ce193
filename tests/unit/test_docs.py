"""The README stays in step with the code: configuration, exit codes, commands, CI."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from bootstrap import cli
from bootstrap.errors import EXIT_CODE_MEANINGS, ExitCode
from bootstrap.settings import OPTIONS

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def table(marker: str) -> list[list[str]]:
    """The rows of the README table between <!-- marker --> and <!-- /marker -->."""
    body = README.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    rows = [line for line in body.strip().splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_configuration_table_matches_the_code() -> None:
    """Every variable, flag and default in the README is the one the code uses."""
    documented = {row[0].strip("`"): (row[1].strip("`"), row[2].replace("`", "")) for row in table("configuration-table")}
    assert "—" == documented.pop("BOOTSTRAP_DATABASE_URL")[0]
    assert "—" == documented.pop("BOOTSTRAP_PASSWORD_COMMAND")[0]
    assert {o.env: (o.flag, o.default) for o in OPTIONS} == documented


def test_exit_code_table_matches_the_enum() -> None:
    """Every exit code and its meaning in the README is the one in errors.ExitCode."""
    rows = table("exit-codes-table")
    documented = {int(row[0]): row[1] for row in rows if row[0].isdigit()}
    assert {int(code): meaning for code, meaning in EXIT_CODE_MEANINGS.items()} == documented
    assert {int(c) for c in ExitCode} == set(documented)
    assert any(row[0] == "128+N" for row in rows)


def test_every_command_is_documented() -> None:
    """Each CLI command appears in the README's command table and has help text."""
    for name, command in cli.cli.commands.items():
        assert f"`bootstrap {name}" in README, name
        assert command.help and "Example:" in command.help, name
        assert 0 == CliRunner().invoke(cli.cli, [name, "--help"]).exit_code


def test_module_map_matches_the_package() -> None:
    """The README's module map names every module of src/bootstrap/ and nothing that is not there."""
    body = README.split("<!-- module-map -->")[1].split("<!-- /module-map -->")[0]
    documented, folder = set(), ""
    for line in body.splitlines():
        name = line.strip().split(" ")[0] if line.startswith("  ") else ""
        if name.endswith("/"):
            folder = name
        elif name.endswith(".py"):
            documented.add(folder + name if line.startswith("    ") else name)
    package = REPO / "src" / "bootstrap"
    assert {str(p.relative_to(package)) for p in package.rglob("*.py")} == documented


def test_cli_reference_is_current() -> None:
    """docs/cli.md is what `--help` prints today (regenerate: python scripts/cli_reference.py)."""
    from cli_reference import reference

    assert reference() == (REPO / "docs" / "cli.md").read_text()


def test_docs_links_resolve() -> None:
    """Every relative link in the README and docs/ points at a file that exists."""
    broken = []
    for page in [REPO / "README.md", REPO / "sql" / "README.md", *(REPO / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert [] == broken


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run ends by running exactly the README's whole-run test command."""
    command = re.search(r"^(\./scripts/test --all)\s+#", README, re.M)
    assert command is not None
    assert f"exec {command.group(1)}" == (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
