"""
What the Prisma tier runs and reads: the gateway as the README runs it, and the users
service's real `prisma migrate deploy` (examples/prisma-users: Prisma 6.19 with
its WebAssembly engines, installed once from the example's lock), side by side
on throwaway databases of the test server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.helpers import REPO, bootstrap_cmd, clean_env

EXAMPLE = REPO / "examples" / "prisma-users"
# Prisma's own URL parameters: where its tables live, and options of its Rust engines.
PRISMA_PARAMS = "schema=public&connection_limit=5&pool_timeout=10&pgbouncer=true"
INIT = "20261201000000_init"


@dataclass
class Finished:
    """A process that ran to its end: what a user sees of it."""

    name: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (f"{self.name} ({' '.join(self.argv[-3:])}) exited {self.returncode} after {self.seconds:.1f} s\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}")


@dataclass
class Started:
    """A process started in the background (several at once: a simultaneous start)."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[str]
    began: float = field(default_factory=time.monotonic)

    def finish(self, timeout: float = 120) -> Finished:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"{self.name} did not end within {timeout} s:\n{out[-2000:]}\n{err[-2000:]}") from None
        return Finished(self.name, self.argv, self.proc.returncode, out, err, time.monotonic() - self.began)


def _start(name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> Started:
    proc = subprocess.Popen(list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return Started(name, list(argv), proc)


class Gateway:
    """The api-gateway as the README starts it: `BOOTSTRAP_SCHEMAS=financial python -m bootstrap run -- CMD`."""

    def start(self, url: str, sql_dir: Path | None = None, **env: str) -> Started:
        variables = clean_env(DATABASE_URL=url, BOOTSTRAP_SCHEMAS="financial", **env)
        if sql_dir is not None:
            variables["BOOTSTRAP_SQL_DIR"] = str(sql_dir)
        # cwd is the repository: ./sql is this repository's sql/, as bootstrap's default finds it.
        return _start("gateway", bootstrap_cmd("run", "--", "true"), variables, REPO)

    def run(self, url: str, sql_dir: Path | None = None, **env: str) -> Finished:
        return self.start(url, sql_dir, **env).finish()


class PrismaService:
    """The users service's Prisma project (a copy of examples/prisma-users) and its real CLI."""

    def __init__(self, project: Path, node_modules: Path) -> None:
        self.project = project
        self.cli = node_modules / "prisma" / "build" / "index.js"

    def start(self, url: str) -> Started:
        node = shutil.which("node")
        assert node is not None, "node is not on PATH: ./scripts/test installs Node.js into .venv"
        env = clean_env(DATABASE_URL=url, CHECKPOINT_DISABLE="1", PRISMA_HIDE_UPDATE_MESSAGE="1")
        env.pop("DEBUG", None)
        return _start("prisma", [node, str(self.cli), "migrate", "deploy"], env, self.project)

    def deploy(self, url: str) -> Finished:
        """`prisma migrate deploy`, as the users service's entrypoint runs it."""
        return self.start(url).finish()

    def add_migration(self, name: str, text: str) -> None:
        """A new migration in prisma/migrations, as `prisma migrate dev` would leave it."""
        folder = self.project / "prisma" / "migrations" / name
        folder.mkdir()
        (folder / "migration.sql").write_text(text)


def url_of(conninfo: str, user: str | None = None, password: str | None = None, params: str = "") -> str:
    """A postgresql:// URL for a conninfo (another user's, when given), with query parameters."""
    parts = conninfo_to_dict(conninfo)
    host = parts.get("host", "127.0.0.1")
    user = user or parts.get("user", "postgres")
    password = password if user != parts.get("user", "postgres") else parts.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    url = f"postgresql://{auth}{host}:{parts.get('port', '5432')}/{parts['dbname']}"
    return f"{url}?{params}" if params else url


def connect(conninfo: str) -> psycopg.Connection[Any]:
    """An autocommit superuser connection to one database, for assertions."""
    return psycopg.connect(conninfo, autocommit=True)


def versioned_files(folder: Path = REPO / "sql") -> list[int]:
    """The versions of a sql/ directory's versioned files."""
    return sorted(int(m.group(1)) for p in folder.glob("*.sql") if (m := re.match(r"^(\d+)_.*(?<!\.down)\.sql$", p.name)))


def ledger_versions(conn: psycopg.Connection[Any], table: str) -> list[int]:
    """The versions a bootstrap ledger records (none when the table does not exist)."""
    if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
        return []
    schema, name = table.split(".")
    rows = conn.execute(sql.SQL("SELECT version FROM {} WHERE version IS NOT NULL ORDER BY version").format(
        sql.Identifier(schema, name))).fetchall()
    return [int(row[0]) for row in rows]


def prisma_migrations(conn: psycopg.Connection[Any]) -> list[tuple[str, bool]]:
    """Prisma's ledger: each migration and whether it finished (neither failed nor rolled back)."""
    return [(name, finished) for name, finished in conn.execute(
        "SELECT migration_name, finished_at IS NOT NULL AND rolled_back_at IS NULL FROM public._prisma_migrations"
        " ORDER BY migration_name").fetchall()]


def tables_in(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The tables of one schema."""
    return [row[0] for row in conn.execute(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1", [schema]).fetchall()]


def foreign_keys_to_users(conn: psycopg.Connection[Any]) -> list[str]:
    """Every foreign key that references a table named users, as `table: definition`."""
    return [f"{row[0]}: {row[1]}" for row in conn.execute(
        "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'f' AND confrelid IN (SELECT oid FROM pg_class WHERE relname = 'users')"
        " ORDER BY 1, 2").fetchall()]


# What a database holds, from the catalogs: schemas, tables, columns, constraints, indexes,
# triggers, functions and comments, each with its owner where it has one; no row data.
_SNAPSHOT = {
    "schemas": "SELECT nspname::text, pg_get_userbyid(nspowner)::text, obj_description(oid, 'pg_namespace')"
               " FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'",
    "relations": "SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_userbyid(c.relowner)::text,"
                 " obj_description(c.oid, 'pg_class')"
                 " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace {user_ns}",
    "columns": "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),"
               " a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity::text"
               " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
               " JOIN pg_namespace n ON n.oid = c.relnamespace"
               " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
               " {user_ns} AND a.attnum > 0 AND NOT a.attisdropped",
    "constraints": "SELECT n.nspname::text, conrelid::regclass::text, conname::text, pg_get_constraintdef(k.oid)"
                   " FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace {user_ns}",
    "indexes": "SELECT schemaname::text, indexname::text, indexdef FROM pg_indexes"
               " WHERE schemaname NOT LIKE 'pg\\_%%' AND schemaname <> 'information_schema'",
    "triggers": "SELECT tgrelid::regclass::text, tgname::text, pg_get_triggerdef(t.oid) FROM pg_trigger t"
                " WHERE NOT tgisinternal",
    "functions": "SELECT n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid),"
                 " md5(p.prosrc), pg_get_userbyid(p.proowner)::text"
                 " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace {user_ns}",
}
_USER_NS = "WHERE n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'"


def schema_snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the catalogs say about a database's own objects, sorted: equal snapshots, equal schemas."""
    return {what: sorted(conn.execute(query.format(user_ns=_USER_NS)).fetchall(), key=repr)  # type: ignore[arg-type]
            for what, query in _SNAPSHOT.items()}


def node_version() -> str:
    """The node the tier runs Prisma with."""
    return subprocess.run(["node", "--version"], capture_output=True, text=True, check=False).stdout.strip()
