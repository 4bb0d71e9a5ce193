"""Module layering: the CLI and the pure modules never load the database driver."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["bootstrap.cli", "bootstrap.plan", "bootstrap.migrations", "bootstrap.settings",
                                    "bootstrap.runner", "bootstrap.render", "bootstrap.typing", "bootstrap.backoff"])
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
