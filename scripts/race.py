"""
Racing runners: N processes run `bootstrap migrate` at the same instant against
a fresh database, round after round; every file must be applied exactly once
and every runner must succeed.

    python scripts/race.py --rounds 1000 --runners 8 --files 42    # the soak
    (the test suite runs 50 rounds: tests/faults/test_race.py)

Each runner is a long-lived process that imports bootstrap once and runs the
CLI in-process for each round (so a round measures racing, not Python start-up);
each has its own connections, as replicas would. Every migration inserts its
number into a table without a unique key, so a double apply would show as a
duplicate row, not as an error.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@dataclass
class RaceResult:
    """What the rounds showed."""

    rounds: int = 0
    runners: int = 0
    files: int = 0
    runner_runs: int = 0
    failures: int = 0
    double_applies: int = 0
    missing_applies: int = 0
    files_applied: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def write_files(folder: Path, count: int, concurrent_index: bool = False) -> None:
    """`count` realistic migrations: a counter table, tables with an index and a row, a view."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0001_applied.sql").write_text(
        "CREATE TABLE applied (file int NOT NULL);\nINSERT INTO applied VALUES (1);\n"
    )
    for n in range(2, count):
        (folder / f"{n:04d}_table_{n}.sql").write_text(
            f"CREATE TABLE t{n} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n"
            f"CREATE INDEX t{n}_name ON t{n} (name);\n"
            f"INSERT INTO t{n} (name) VALUES ('row {n}');\n"
            f"INSERT INTO applied VALUES ({n});\n"
        )
    if concurrent_index:
        (folder / "0003_table_3.sql").write_text(
            "CREATE TABLE t3 (id bigint PRIMARY KEY, name text NOT NULL);\n"
            "INSERT INTO t3 SELECT g, md5(g::text) FROM generate_series(1, 200000) g;\n"
            "INSERT INTO applied VALUES (3);\n"
        )
        (folder / "0004_table_4.sql").write_text(
            "-- bootstrap:no-transaction\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS t3_name ON t3 (name);\n"
            "INSERT INTO applied VALUES (4);\n"
        )
    (folder / f"{count:04d}_last.sql").write_text(f"INSERT INTO applied VALUES ({count});\n")  # noqa: S608 - a test file
    (folder / "R__views.sql").write_text("CREATE OR REPLACE VIEW applied_files AS SELECT DISTINCT file FROM applied;\n")


def _runner(index: int, sql_dir: str, tasks: Any, results: Any, log_dir: str) -> None:
    """A replica: for each database it is handed, run `bootstrap migrate` and report the exit code."""
    os.environ["BOOTSTRAP_SQL_DIR"] = sql_dir
    os.environ["BOOTSTRAP_LOG_FORMAT"] = "json"
    log = open(Path(log_dir) / f"runner-{index}.log", "a")
    sys.stderr = log
    from bootstrap import cli

    while True:
        task = tasks.get()
        if task is None:
            return
        round_no, dsn, barrier_at = task
        os.environ["DATABASE_URL"] = dsn
        delay = barrier_at - time.time()
        if delay > 0:
            time.sleep(delay)  # start together: this is the race, not a synchronisation
        try:
            code = cli.cli.main(args=["migrate"], prog_name="bootstrap", standalone_mode=False)
        except SystemExit as exc:  # pragma: no cover - defensive
            code = exc.code
        log.flush()
        results.put((round_no, index, code if isinstance(code, int) else 0))


def race(base_dsn: str, rounds: int, runners: int, files: int, *, concurrent_index: bool = False,
         log_dir: str | None = None) -> RaceResult:
    """
    Run the rounds.

    Args:
        base_dsn: a superuser conninfo (databases are created and dropped).
        rounds: how many fresh databases to race on.
        runners: processes racing each round.
        files: versioned migrations per round (plus one repeatable).
        concurrent_index: include a CREATE INDEX CONCURRENTLY on a 200k-row table.
        log_dir: where runners' logs go (a temporary directory by default).
    """
    result = RaceResult(rounds=rounds, runners=runners, files=files + 1)
    work = Path(tempfile.mkdtemp(prefix="bootstrap-race-"))
    logs = Path(log_dir) if log_dir else work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    write_files(work / "sql", files, concurrent_index=concurrent_index)
    ctx = mp.get_context("spawn")
    tasks = [ctx.Queue() for _ in range(runners)]
    results = ctx.Queue()
    procs = [ctx.Process(target=_runner, args=(i, str(work / "sql"), tasks[i], results, str(logs)), daemon=True)
             for i in range(runners)]
    for proc in procs:
        proc.start()
    started = time.monotonic()
    try:
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            # FILE_COPY (PostgreSQL 15+) copies the template at once instead of through the WAL.
            strategy = sql.SQL(" STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else "")
            for round_no in range(rounds):
                name = f"bootstrap_race_{uuid.uuid4().hex[:10]}"
                admin.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), strategy))
                try:
                    dsn = make_conninfo(base_dsn, dbname=name)
                    at = time.time() + (2.0 if round_no == 0 else 0.05)  # the first round waits for imports
                    for queue in tasks:
                        queue.put((round_no, dsn, at))
                    codes = [results.get(timeout=300) for _ in range(runners)]
                    result.runner_runs += runners
                    failed = [(i, c) for _, i, c in codes if c != 0]
                    if failed:
                        result.failures += len(failed)
                        result.problems.append(f"round {round_no}: runners {failed} exited non-zero")
                    _check(dsn, files, result, round_no)
                finally:
                    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        for queue in tasks:
            queue.put(None)
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
        result.seconds = round(time.monotonic() - started, 1)
        if not log_dir:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _check(dsn: str, files: int, result: RaceResult, round_no: int) -> None:
    with psycopg.connect(dsn) as conn:
        counts = dict(conn.execute("SELECT file, count(*) FROM applied GROUP BY file").fetchall())
        ledger_rows = conn.execute("SELECT count(*) FROM bootstrap.bootstrap_migrations").fetchone()[0]
    expected = set(range(1, files + 1))
    doubles = {f: n for f, n in counts.items() if n > 1}
    missing = expected - set(counts)
    result.double_applies += sum(n - 1 for n in doubles.values())
    result.missing_applies += len(missing)
    result.files_applied += sum(counts.values())
    if doubles or missing or ledger_rows != files + 1:
        result.problems.append(f"round {round_no}: doubles {doubles}, missing {sorted(missing)}, "
                               f"{ledger_rows} ledger rows")


def main(argv: list[str]) -> int:
    """Command line for the soak."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--runners", type=int, default=8)
    parser.add_argument("--files", type=int, default=42)
    parser.add_argument("--concurrent-index", action="store_true")
    parser.add_argument("--dsn", default=os.environ.get("BOOTSTRAP_TEST_DSN", DEFAULT_DSN))
    args = parser.parse_args(argv)
    result = race(args.dsn, args.rounds, args.runners, args.files, concurrent_index=args.concurrent_index)
    print(json.dumps(asdict(result), indent=2))
    return 0 if not result.problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
