"""
Module layering: imports point downward, counting every import (lazy ones inside
functions and TYPE_CHECKING ones too); the CLI and the pure modules never load
the database driver.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "bootstrap"
# Top to bottom: a module imports only modules below its own line (docs/architecture.md).
LAYERS = """
__main__
_entry
cli
cligroup
preflight takeover fleet
command
pipeline tenancy
runner
pg.applier
pg
pg.ledger
pg.foreign pg.indexes pg.lock pg.verifier pg.tenants
pg.session
pg.timeouts
pg.connection pg.pooler pg.failure pg.binding render
pg.provision
pg.conninfo
lint plan scaffold
typing
adoption parsing
migrations
sqlfile concurrently handoff
sqlsplit settings logs
options redact errors backoff
bootstrap
"""


def imports() -> dict[str, set[str]]:
    """Every module of the package (`pg.session`, `bootstrap` for the package itself) and what it imports of it."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        modules[".".join(parts) or "bootstrap"] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = [] if name == "bootstrap" else name.split(".")[: -1 if path.name != "__init__.py" else None]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue  # the package imports itself only relatively
            base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for target in (".".join(base) or "bootstrap", *(".".join([*base, a.name]) for a in node.names)):
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def test_imports_point_downward() -> None:
    """Every import, lazy and TYPE_CHECKING ones included, goes to a module on a lower line of LAYERS: no cycles."""
    rank = {module: line for line, names in enumerate(LAYERS.split("\n")) for module in names.split()}
    graph = imports()
    assert sorted(graph) == sorted(rank), "LAYERS must list every module exactly once"
    upward = sorted(f"{name} -> {target}" for name, targets in graph.items() for target in targets
                    if rank[target] <= rank[name])
    assert [] == upward


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
