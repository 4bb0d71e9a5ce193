"""
Write docs/cli.md, the CLI reference, from `bootstrap --help` and each
command's `--help` (a test keeps the file in step with the code).

    python scripts/cli_reference.py          # rewrite docs/cli.md
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "docs" / "cli.md"
WIDTH = 100


def help_text(args: list[str]) -> str:
    """What `bootstrap ARGS --help` prints, at a fixed width."""
    from click.testing import CliRunner

    from bootstrap.cli import cli

    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=WIDTH, prog_name="bootstrap")
    if result.exit_code != 0:
        raise RuntimeError(f"bootstrap {' '.join(args)} --help exited {result.exit_code}: {result.output}")
    return result.output.rstrip() + "\n"


def reference() -> str:
    """The whole reference page."""
    from bootstrap.cli import cli

    parts = [
        "# CLI reference\n",
        "Generated from `--help` by `python scripts/cli_reference.py`; "
        "`tests/unit/test_docs.py` fails when it is out of date.\n",
        "```\n" + help_text([]) + "```\n",
    ]
    for name in cli.commands:
        parts.append(f"## `bootstrap {name}`\n")
        parts.append("```\n" + help_text([name]) + "```\n")
    return "\n".join(parts)


def main() -> int:
    """Rewrite docs/cli.md."""
    sys.path.insert(0, str(REPO / "src"))
    TARGET.write_text(reference())
    print(TARGET)
    return 0


if __name__ == "__main__":
    sys.exit(main())
