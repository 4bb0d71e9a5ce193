"""
The README's Python-app recipe, built exactly as the README writes it, on the
bootstrap image, for an app that is not this repository's gateway: its own
migrations, its own dependency (one bootstrap does not have), run as
bootstrap's non-root user after bootstrap has migrated.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest

import container
from tests.container.containers import superuser_url
from tests.helpers import REPO, ledger

pytestmark = pytest.mark.container


def readme_recipe() -> str:
    """The Dockerfile between the README's python-app-dockerfile markers, as a user would copy it."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- python-app-dockerfile -->\s*```dockerfile\n(.*?)```\s*<!-- /python-app-dockerfile -->",
                      text, re.S)
    assert block, "README.md: no ```dockerfile block between the python-app-dockerfile markers"
    return block.group(1)


def test_a_python_app_built_from_the_readme(images: tuple[str, str], fresh_db: str, pg_base_dsn: str,
                                            db: psycopg.Connection, tmp_path: Path) -> None:
    """
    Built from the README's recipe alone: the app's own migration is applied (and
    nothing of this repository's sql/), its own dependency imports, it runs as uid
    10001 with bootstrap's exit status, and its table is there when it starts.
    """
    app = tmp_path / "app"
    (app / "sql").mkdir(parents=True)
    (app / "Dockerfile").write_text(readme_recipe())
    (app / "requirements.txt").write_text("humanize==4.11.0\n")
    (app / "sql" / "001_notes.sql").write_text(
        "CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL);\n"
        "INSERT INTO notes VALUES (1, 'hello');\n")
    (app / "app.py").write_text(
        "import os\n"
        "import humanize\n"
        "print('app', humanize.intcomma(1234567), 'uid', os.getuid(), flush=True)\n")
    image = f"localhost/bootstrap-readme-app:{uuid.uuid4().hex[:8]}"
    with container.build_volumes() as volumes:
        container.build("--build-arg", f"BOOTSTRAP_IMAGE={images[0]}", *volumes, "-t", image, str(app))
    try:
        result = container.podman("run", "--rm", "--network", "host",
                                  "-e", f"DATABASE_URL={superuser_url(pg_base_dsn, fresh_db)}", image, check=False)
    finally:
        container.podman("rmi", "-f", image, check=False)
    assert 0 == result.returncode, result.stderr
    assert "app 1,234,567 uid 10001" in result.stdout, result.stdout + result.stderr
    assert [(1, "001_notes.sql")] == [(version, name) for version, name, _kind in ledger(db)]
    assert [("hello",)] == db.execute("SELECT body FROM public.notes").fetchall()
    assert db.execute("SELECT to_regnamespace('financial')").fetchone()[0] is None  # nothing of the gateway's
