"""In-process helpers: run the runner against the fresh database with captured logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from bootstrap.db import Database
from bootstrap.runner import Outcome, migrate, status
from bootstrap.settings import load_settings


class Runner:
    """Runs bootstrap's work in-process and keeps its log events."""

    def __init__(self, dsn: str, sql_dir: Path) -> None:
        self.dsn = dsn
        self.sql_dir = sql_dir
        self.events: list[dict[str, Any]] = []

    def settings(self, **env: str) -> Any:
        base = {"DATABASE_URL": self.dsn, "BOOTSTRAP_SQL_DIR": str(self.sql_dir),
                "BOOTSTRAP_WAIT_TIMEOUT": "5"}
        base.update(env)
        flags = {"out_of_order": True} if base.pop("OUT_OF_ORDER", None) else {}
        return load_settings(flags, base)

    def _with_db(self, work: Callable[[Any, Any, Database], Any], **env: str) -> Any:
        settings = self.settings(**env)
        with structlog.testing.capture_logs() as captured:
            log = structlog.get_logger()
            try:
                db = Database.connect(settings, log)
                try:
                    return work(settings, log, db)
                finally:
                    db.close()
            finally:
                self.events = captured

    def migrate(self, **env: str) -> Outcome:
        """`bootstrap migrate` with these variables on top of the defaults."""
        outcome = Outcome()
        self._with_db(lambda s, log, db: migrate(s, log, db, outcome), **env)
        return outcome

    def status(self, **env: str) -> Any:
        """`bootstrap status`'s plan."""
        return self._with_db(lambda s, log, db: status(s, log, db), **env)

    def names(self) -> list[str]:
        """Event names of the last call."""
        return [e["event"] for e in self.events]


@pytest.fixture
def runner(fresh_db: str, sql_dir: Path) -> Runner:
    """A Runner bound to the fresh database and the test's sql directory."""
    return Runner(fresh_db, sql_dir)
