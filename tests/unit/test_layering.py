"""Module layering: the CLI and the pure modules never load the database driver."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["bootstrap.cli", "bootstrap.plan", "bootstrap.migrations", "bootstrap.settings",
                                    "bootstrap.runner", "bootstrap.render", "bootstrap.typing", "bootstrap.backoff",
                                    "bootstrap.lint", "bootstrap.preflight"])
def test_module_does_not_import_psycopg(module: str) -> None:
    """Importing it leaves psycopg unloaded (fast --help, testable without a database)."""
    code = f"import sys, {module}; print('psycopg' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "False" == out.stdout.strip()


def test_help_does_not_import_psycopg_or_structlog() -> None:
    """`bootstrap --help` loads neither the driver nor the logging stack."""
    code = ("import sys\nfrom bootstrap._entry import run_cli\ntry:\n    run_cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('psycopg', 'structlog', 'tenacity') if m in sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == out.stderr.strip()


def test_only_the_pg_package_imports_the_driver() -> None:
    """psycopg is imported under bootstrap/pg/ and nowhere else; tenacity only by the one retry loop (backoff)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "src" / "bootstrap"
    offenders = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n.split(".")[0] == "psycopg" for n in names) and path.parent.name != "pg":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
            if any(n.split(".")[0] == "tenacity" for n in names) and path.name != "backoff.py":
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert [] == offenders
