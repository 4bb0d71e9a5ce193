"""Where the default ledger lives: a schema of its own, or where an older bootstrap put it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bootstrap.errors import LockTimeoutError
from bootstrap.pg import advisory_key
from tests.helpers import ledger, table_exists, write


def test_the_default_ledger_leaves_public_empty(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """With no ledger named, bootstrap's table goes to schema bootstrap: public stays as the app left it."""
    write(sql_dir, "1_a.sql", "CREATE TABLE app.a (id int);")
    runner.migrate(BOOTSTRAP_SCHEMAS="app")
    in_public = db.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE n.nspname = 'public'").fetchone()[0]
    assert 0 == in_public
    assert [(1, "1_a.sql", "versioned")] == ledger(db, "bootstrap.bootstrap_migrations")


def test_a_ledger_where_the_old_default_put_it_is_kept(runner, sql_dir: Path, db: psycopg.Connection) -> None:
    """A database migrated while the default was public.bootstrap_migrations keeps it there and re-applies nothing."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    runner.migrate(BOOTSTRAP_LEDGER_TABLE="public.bootstrap_migrations")  # what an older image did
    write(sql_dir, "2_b.sql", "CREATE TABLE b (id int);")
    outcome = runner.migrate()
    assert ["2_b.sql"] == outcome.applied
    assert [(1, "1_a.sql", "versioned"), (2, "2_b.sql", "versioned")] == ledger(db, "public.bootstrap_migrations")
    assert not table_exists(db, "bootstrap.bootstrap_migrations")
    assert [] == db.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'bootstrap'").fetchall()
    assert "ledger_found" in runner.names()
    assert runner.status().up_to_date


def test_the_default_ledger_takes_the_lock_older_images_take(runner, sql_dir: Path, fresh_db: str) -> None:
    """Old and new images serialise in a rolling deploy: the default ledger's lock key is the old default's."""
    write(sql_dir, "1_a.sql", "CREATE TABLE a (id int);")
    with psycopg.connect(fresh_db, autocommit=True) as older:
        older.execute("SELECT pg_advisory_lock(%s)", [advisory_key("public", "bootstrap_migrations")])
        with pytest.raises(LockTimeoutError):
            runner.migrate(BOOTSTRAP_LOCK_TIMEOUT="0.3")
