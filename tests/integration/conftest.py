"""In-process helpers: run the runner against the fresh database with captured logs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from bootstrap.migrations import discover_migrations
from bootstrap.runner import Migrator, open_migrator
from bootstrap.settings import load_settings
from bootstrap.typing import MigrateResult


class Runner:
    """Runs bootstrap's work in-process and keeps its log events."""

    def __init__(self, dsn: str, sql_dir: Path) -> None:
        self.dsn = dsn
        self.sql_dir = sql_dir
        self.events: list[dict[str, Any]] = []
        self.lock_poll: Any = None  # a Backoff for the lock polls, or the default schedule

    def settings(self, **env: str) -> Any:
        base = {"DATABASE_URL": self.dsn, "BOOTSTRAP_SQL_DIR": str(self.sql_dir),
                "BOOTSTRAP_WAIT_TIMEOUT": "5"}
        base.update(env)
        flags = {"out_of_order": True} if base.pop("OUT_OF_ORDER", None) else {}
        return load_settings(flags, base)

    def _with_db(self, work: Callable[[Migrator], Any], **env: str) -> Any:
        settings = self.settings(**env)
        with structlog.testing.capture_logs() as captured:
            log = structlog.get_logger()
            try:
                with open_migrator(settings, log, lock_poll=self.lock_poll) as migrator:
                    return work(migrator)
            finally:
                self.events = captured

    def files(self) -> Any:
        """The migration files, discovered as commands do."""
        return discover_migrations(self.sql_dir)

    def migrate(self, **env: str) -> MigrateResult:
        """`bootstrap migrate` with these variables on top of the defaults."""
        return self._with_db(lambda m: m.migrate(self.files()), **env)

    def status(self, **env: str) -> Any:
        """`bootstrap status`'s plan."""
        return self._with_db(lambda m: m.status(self.files()), **env)

    def names(self) -> list[str]:
        """Event names of the last call."""
        return [e["event"] for e in self.events]


@pytest.fixture
def runner(fresh_db: str, sql_dir: Path) -> Runner:
    """A Runner bound to the fresh database and the test's sql directory."""
    return Runner(fresh_db, sql_dir)
