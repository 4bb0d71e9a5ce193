"""
bootstrap's benchmark suite: whole-process runs against a physical limit and
against the tools users would pick instead, measured in one run.

    ./bench/run                 # everything; writes bench/results.md and bench/results.json
    ./bench/run --quick         # fewer repetitions, for a smoke check

Scenarios (medians over repeated whole-process runs; ratios from the same run):
  P1 no-op start     1,000 migrations applied, database up: `bootstrap migrate` and `run -- true`
                     vs the floor `python -c "import psycopg; connect; SELECT 1"`, and the peers;
                     bootstrap as the images install it, side by side: the venv install and the
                     self-contained bundle (same interpreter), each warm and cold (its files
                     dropped from the page cache first).
  P2 apply 1,000     small realistic migrations (a table, an index, a row) on an empty database
                     vs psql applying the same files in one session, each in its own transaction
                     with its ledger insert; and the peers.
  P3 wait-db         latency from the server accepting connections (its own log line) to
                     bootstrap's `database_ready`, and attempts per second while waiting.
  P4 50 replicas     started at once on a fresh database (the 1,000 migrations): time until all
                     exec'd, vs one runner alone.
  P5 CLI start       `bootstrap --help` and `--version`; peak memory of every scenario.
  F1 a fleet         1,000 tenant schemas x 20 tenant files (bench/fleet.py): the loops users write
                     (one `bootstrap migrate`, or one dbmate run, per tenant) against `bootstrap migrate`
                     with --tenants-query at --jobs 1, 2, 4, 8 and two runners at once; the no-op pass;
                     tenants per second with the client's and the server's CPU. Not in the default run
                     (about 15 minutes on 2 cores): `--only F1`. Writes bench/results-fleet.{md,json}.

The server is a throwaway cluster with fsync off and its data on tmpfs: every tool
pays the same commits, and taking the disk out makes the tools' own overhead stand
out (a stricter test). Databases are dropped only at the end: dropping one with
3,000 relations slows the server's next runs by half on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(BENCH))

import fleet  # noqa: E402
from installs import Install, evict, make_installs  # noqa: E402
from peers import Peer, install_peers  # noqa: E402
from pgcluster import Cluster  # noqa: E402

WORK = BENCH / ".work"
BOOTSTRAP = [str(Path(sys.executable).parent / "bootstrap")]
FILES = 1000


@dataclass
class Measure:
    """Repeated whole-process runs of one command."""

    scenario: str
    tool: str
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    max_rss_kb: int = 0
    failures: int = 0
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def add(self, elapsed: float, cpu: float, rss: int, code: int) -> None:
        self.seconds.append(elapsed)
        self.cpu.append(cpu)
        self.max_rss_kb = max(self.max_rss_kb, rss)
        self.failures += code != 0


GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
_RSS = re.compile(r"@@maxrss (\d+)\s*$")


def run_measured(argv: list[str], env: dict[str, str], cwd: Path | None = None,
                 stdin: Any = subprocess.DEVNULL) -> tuple[float, float, int, int, str]:
    """
    Run a command to completion: (seconds, client CPU seconds, peak RSS in KiB,
    exit status, stderr tail). Client CPU is user + system time of the process and
    the children it waited for: the tool's own work, not the server's.

    Peak memory comes from GNU time when present: a child forked from this (large)
    process would otherwise be charged the parent's pages until it execs.
    """
    wrapped = [GNU_TIME, "-f", "@@maxrss %M", *argv] if GNU_TIME else argv
    started = time.perf_counter()
    proc = subprocess.Popen(wrapped, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _pid, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    match = _RSS.search(err)
    rss = int(match.group(1)) if match else usage.ru_maxrss
    if match:
        err = err[: match.start()]
        if code != 0 and err.rstrip().endswith(f"Command exited with non-zero status {code}"):
            err = err.rstrip().rsplit("\n", 1)[0]
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, rss, code, err[-500:]


def base_env(**extra: str) -> dict[str, str]:
    """A clean environment for the measured processes."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("BOOTSTRAP_", "PG")) and k not in ("DATABASE_URL", "DATABASE_URL_FILE")}
    return {**keep, "BOOTSTRAP_LOG_FORMAT": "json", **extra}


def write_workload(folder: Path, count: int = FILES) -> None:
    """`count` small realistic migrations: a table, an index, a row."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        (folder / f"{n:05d}_create_table_{n}.sql").write_text(
            f"CREATE TABLE bench_{n} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,"
            f" created_at timestamptz NOT NULL DEFAULT now());\n"
            f"CREATE INDEX bench_{n}_name ON bench_{n} (name);\n"
            f"INSERT INTO bench_{n} (name) VALUES ('row {n}');\n"
        )


def psql_script(folder: Path, target: Path) -> None:
    """The limit: one psql session, each file in its own transaction with its ledger insert."""
    parts = ["CREATE TABLE IF NOT EXISTS psql_ledger (version bigint PRIMARY KEY, name text NOT NULL,"
             " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());\n"]
    import hashlib

    for path in sorted(folder.glob("*.sql")):
        version = int(path.name.split("_", 1)[0])
        body = path.read_text()
        digest = hashlib.sha256(body.encode()).hexdigest()
        parts.append(f"BEGIN;\n{body}INSERT INTO psql_ledger (version, name, checksum) VALUES "
                     f"({version}, '{path.name}', '{digest}');\nCOMMIT;\n")
    target.write_text("".join(parts))


class Server:
    """The benchmark's own cluster and fresh databases on it."""

    def __init__(self) -> None:
        # Data on tmpfs when there is one: with fsync off the disk only adds noise
        # (this VM's discard-mounted disk slows every run after large deletions).
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.cluster = Cluster(fast=True, settings=("max_connections=300", "log_line_prefix='%m '"), base_dir=shm)
        self.cluster.start()
        self.cluster.wait_ready()
        with psycopg.connect(self.cluster.dsn()) as conn:
            self.version = conn.execute("SHOW server_version").fetchone()[0]

    def fresh(self) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as admin:
            strategy = sql.SQL(" STRATEGY FILE_COPY") if int(self.version.split(".")[0]) >= 15 else sql.SQL("")
            admin.execute(sql.SQL("CREATE DATABASE {}{}").format(sql.Identifier(name), strategy))
        return self.cluster.dsn(name)

    def drop(self, url: str) -> None:
        """Nothing until the end: dropping a database of 3,000 relations slows the
        server's next runs down by half (measured), which would skew the figures."""

    def close(self) -> None:
        self.cluster.destroy()


def p1_noop(server: Server, files: Path, peers: list[Peer], installs: list[Install], runs: int) -> list[Measure]:
    """P1: a container start with everything applied."""
    results = []
    url = server.fresh()
    env = base_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(files))
    *_measured, code, err = run_measured([*BOOTSTRAP, "migrate"], env)
    assert code == 0, err
    connect = f"c = psycopg.connect({url!r})\nc.execute('SELECT 1')\nc.close()"
    floor = [sys.executable, "-c", f"import psycopg\n{connect}"]
    libraries = [sys.executable, "-c", f"import psycopg, click, structlog\n{connect}"]
    # (name, argv, environment, what to do before each run, untimed)
    commands: list[tuple[str, list[str], dict[str, str], Callable[[], None] | None]] = [
        ("floor: python + import psycopg + connect", floor, env, None),
        ("floor + import click, structlog (the design's libraries)", libraries, env, None),
        ("bootstrap migrate", [*BOOTSTRAP, "migrate"], env, None),
        ("bootstrap run -- true", [*BOOTSTRAP, "run", "--", "true"], env, None),
    ]
    for install in installs:
        if install.why_not:
            results.append(Measure("P1", install.name, note=f"skipped: {install.why_not}"))
            continue
        commands.append((install.name, install.command, env, None))
        commands.append((f"{install.name}, cold", install.command, env, lambda i=install: evict(i.files)))
    for peer in peers:
        if not peer.available:
            results.append(Measure("P1", peer.name, note=f"skipped: {peer.why_not}"))
            continue
        peer_url = server.fresh()
        folder = peer.prepare(files, WORK / "peers")
        peer_env = base_env(**peer.env(peer_url))
        *_measured, code, err = run_measured(peer.up(folder, peer_url), peer_env)
        if code != 0:
            results.append(Measure("P1", peer.name, note=f"failed to apply: {err.strip()[-200:]}"))
            continue
        commands.append((peer.name, peer.up(folder, peer_url), peer_env, None))
    measures = {name: Measure("P1", name) for name, _argv, _env, _before in commands}
    for _ in range(runs):
        random.shuffle(commands)  # interleaved, so drift hits every tool alike
        for name, argv, cmd_env, before in commands:
            if before is not None:
                before()
            elapsed, cpu, rss, code, _err = run_measured(argv, cmd_env)
            measures[name].add(elapsed, cpu, rss, code)
    return [*measures.values(), *results]


def p2_apply(server: Server, files: Path, peers: list[Peer], runs: int) -> list[Measure]:
    """P2: apply 1,000 migrations to an empty database."""
    script = WORK / "psql-limit.sql"
    psql_script(files, script)
    psql = shutil.which("psql") or str(server.cluster.bindir / "psql")
    tools: list[tuple[str, Any]] = [
        ("limit: psql, one session, a transaction per file", lambda url: ([psql, "-q", "-X", "-v", "ON_ERROR_STOP=1",
                                                                            "-f", str(script), url], base_env())),
        ("bootstrap migrate",
         lambda url: ([*BOOTSTRAP, "migrate"], base_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(files)))),
    ]
    skipped = []
    for peer in peers:
        if not peer.available:
            skipped.append(Measure("P2", peer.name, note=f"skipped: {peer.why_not}"))
            continue
        folder = peer.prepare(files, WORK / "peers")
        tools.append((peer.name, lambda url, p=peer, f=folder: (p.up(f, url), base_env(**p.env(url)))))
    measures = {name: Measure("P2", name) for name, _ in tools}
    for _ in range(runs):
        random.shuffle(tools)
        for name, make in tools:
            url = server.fresh()
            argv, env = make(url)
            elapsed, cpu, rss, code, err = run_measured(argv, env)
            m = measures[name]
            m.add(elapsed, cpu, rss, code)
            if code != 0:
                m.note = err.strip()[-200:]
            server.drop(url)
    return [*measures.values(), *skipped]


_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\w+) .*ready to accept connections", re.M)


def p3_wait(trials: int) -> tuple[Measure, Measure, Measure]:
    """P3: how soon after the server is ready bootstrap proceeds, and how often it knocks meanwhile."""
    latency = Measure("P3", "latency after the server is ready (s)")
    rate = Measure("P3", "attempts per second while waiting")
    rss = Measure("P3", "bootstrap wait-db")
    cluster = Cluster(fast=True, settings=("log_line_prefix='%m '", "log_timezone=UTC"))
    cluster.init()
    try:
        rng = random.Random(7)
        for _ in range(trials):
            down_for = rng.uniform(0.5, 3.0)
            env = base_env(DATABASE_URL=cluster.dsn(), BOOTSTRAP_WAIT_TIMEOUT="60")
            started = time.perf_counter()
            proc = subprocess.Popen([*( [GNU_TIME, "-f", "@@maxrss %M"] if GNU_TIME else []), *BOOTSTRAP,
                                     "wait-db"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(down_for)  # the database being down for a while is the scenario, not a synchronisation
            cluster.start(wait=False)
            err = proc.stderr.read() if proc.stderr else ""
            _pid, _status, usage = os.wait4(proc.pid, 0)
            waited = time.perf_counter() - started
            lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
            ready = next(e for e in lines if e["event"] == "database_ready")
            server_log = cluster.logfile.read_text()
            stamps = _LOG_TIME.findall(server_log)
            server_ready = datetime.strptime(stamps[-1][0] + "+0000", "%Y-%m-%d %H:%M:%S.%f%z")
            ours = datetime.fromisoformat(ready["timestamp"].replace("Z", "+00:00"))
            latency.seconds.append((ours - server_ready).total_seconds())
            rate.seconds.append(ready["attempts"] / waited)
            rss.seconds.append(waited)
            found = _RSS.search(err)
            rss.max_rss_kb = max(rss.max_rss_kb, int(found.group(1)) if found else usage.ru_maxrss)
            cluster.stop("fast")
    finally:
        cluster.destroy()
    return latency, rate, rss


def p4_replicas(server: Server, files: Path, replicas: int, runs: int) -> list[Measure]:
    """P4: N replicas start at once on a fresh database; time until the last one exec'd its app."""
    one = Measure("P4", "one runner: run -- true, fresh database")
    many = Measure("P4", f"{replicas} replicas at once: run -- true, fresh database")
    restart = Measure("P4", f"{replicas} replicas at once: run -- true, already migrated")
    for _ in range(runs):
        url = server.fresh()
        env = base_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(files))
        elapsed, cpu, rss, code, _err = run_measured([*BOOTSTRAP, "run", "--", "true"], env)
        one.add(elapsed, cpu, rss, code)
        server.drop(url)
        for measure, migrated in ((many, False), (restart, True)):
            url = server.fresh()
            env = base_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR=str(files))
            if migrated:
                run_measured([*BOOTSTRAP, "migrate"], env)
            started = time.perf_counter()
            procs = [subprocess.Popen([*BOOTSTRAP, "run", "--", "true"], env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(replicas)]
            cpu = 0.0
            for proc in procs:
                _pid, status, usage = os.wait4(proc.pid, 0)
                measure.failures += os.waitstatus_to_exitcode(status) != 0
                cpu += usage.ru_utime + usage.ru_stime
            measure.seconds.append(time.perf_counter() - started)
            measure.cpu.append(cpu)
            server.drop(url)
    return [one, many, restart]


def p5_cli(runs: int) -> list[Measure]:
    """P5: the CLI's own start."""
    out = []
    for args in (["--help"], ["--version"]):
        m = Measure("P5", "bootstrap " + " ".join(args))
        for _ in range(runs):
            elapsed, cpu, rss, code, _err = run_measured([*BOOTSTRAP, *args], base_env())
            m.add(elapsed, cpu, rss, code)
        out.append(m)
    floor = Measure("P5", "python -c pass (interpreter alone)")
    click = Measure("P5", "python -c 'import click' (any click CLI's floor)")
    for _ in range(runs):
        for m, code_line in ((floor, "pass"), (click, "import click")):
            elapsed, cpu, rss, code, _err = run_measured([sys.executable, "-c", code_line], base_env())
            m.add(elapsed, cpu, rss, code)
    return [*out, floor, click]


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def main(argv: list[str]) -> int:
    """Run the suite, print the table, write bench/results.{md,json}."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke check)")
    parser.add_argument("--only", default="P1,P2,P3,P4,P5", help="comma-separated scenarios")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results files")
    parser.add_argument("--fleet-scale", metavar="TENANTSxFILES",
                        help=f"F1's fleet: tenant schemas x tenant files (at most {len(fleet.TENANT_FILES)} files; "
                             "default 1000x20, with --quick 100x20)")
    parser.add_argument("--fleet-noop-sample", type=int, default=100, metavar="N",
                        help="F1: the loops' no-op pass (and the default-lint loop) time this many tenants")
    parser.add_argument("--fleet-rounds", type=int, metavar="N",
                        help="F1: runs of each fleet command, for their median (default 3, with --quick 1)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    scale = args.fleet_scale or ("100x20" if args.quick else "1000x20")
    tenants, tenant_files = (int(x) for x in scale.lower().split("x"))
    if not 1 <= tenant_files <= len(fleet.TENANT_FILES):
        parser.error(f"--fleet-scale: 1 to {len(fleet.TENANT_FILES)} tenant files")
    runs = {"P1": 5 if args.quick else 21, "P2": 1 if args.quick else 5, "P3": 3 if args.quick else 15,
            "P4": 1 if args.quick else 3, "P5": 5 if args.quick else 31}
    shutil.rmtree(WORK, ignore_errors=True)
    files = WORK / "sql"
    write_workload(files)
    peers = install_peers() if only & {"P1", "P2"} else []
    installs = make_installs() if "P1" in only else []
    server = Server()
    measures: list[Measure] = []
    try:
        if "P5" in only:
            measures += p5_cli(runs["P5"])
        if "P1" in only:
            measures += p1_noop(server, files, peers, installs, runs["P1"])
        if "P2" in only:
            measures += p2_apply(server, files, peers, runs["P2"])
        if "P4" in only:
            measures += p4_replicas(server, files, 50, runs["P4"])
        if "P3" in only:
            measures += list(p3_wait(runs["P3"]))
        fleet_report = None
        if "F1" in only:
            fleet_report = fleet.FleetBench(server, WORK, BOOTSTRAP, tenants, tenant_files, args.fleet_noop_sample,
                                            run_measured, base_env,
                                            rounds=args.fleet_rounds or (1 if args.quick else 3)).run()
        info = {**machine(), "postgresql": server.version}
    finally:
        server.close()
    if fleet_report is not None:
        print(fleet.render(fleet_report, info))
        if not args.no_write:
            fleet.write(fleet_report, info, BENCH)
    if not measures:  # F1 alone: bench/results.{md,json} keep the last run of P1..P5
        return 0
    report = render(measures, info)
    print(report)
    if not args.no_write:
        (BENCH / "results.md").write_text(report)
        (BENCH / "results.json").write_text(json.dumps(
            {"machine": info, "measures": [{**asdict(m), "median": m.median} for m in measures]}, indent=2))
    return 0


def _find(measures: list[Measure], scenario: str, prefix: str) -> Measure | None:
    return next((m for m in measures if m.scenario == scenario and m.tool.startswith(prefix) and m.seconds), None)


def _named(measures: list[Measure], scenario: str, name: str) -> Measure | None:
    return next((m for m in measures if m.scenario == scenario and m.tool == name and m.seconds), None)


def render(measures: list[Measure], info: dict[str, str]) -> str:
    """The results as Markdown: one table per scenario, ratios against the scenario's reference."""
    references = {"P1": "floor", "P2": "limit", "P4": "one runner", "P5": "python -c pass"}
    lines = [
        "# bootstrap benchmark results",
        "",
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Linux {info['kernel']}, "
        f"Python {info['python']}, PostgreSQL {info.get('postgresql', '?')} "
        "(throwaway cluster, fsync off, data on tmpfs).",
        "Medians of whole-process runs; each scenario's runs are interleaved across tools; "
        "ratios are against the scenario's reference measured in the same run. "
        "Reproduce with `./bench/run`.",
        "",
    ]
    titles = {"P1": "P1 no-op start (1,000 migrations applied)", "P2": "P2 apply 1,000 migrations",
              "P3": "P3 wait-db", "P4": "P4 50 replicas at once", "P5": "P5 CLI start"}
    for scenario in ("P1", "P2", "P3", "P4", "P5"):
        rows = [m for m in measures if m.scenario == scenario]
        if not rows:
            continue
        lines += [f"## {titles[scenario]}", "", "| tool | median | ratio | client CPU | peak RSS | runs | note |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        ref = _find(measures, scenario, references.get(scenario, "\0"))
        for m in rows:
            if not m.seconds:
                lines.append(f"| {m.tool} | — | — | — | — | 0 | {m.note} |")
                continue
            if scenario == "P3":
                value = f"{m.median * 1000:.0f} ms" if "latency" in m.tool else (
                    f"{m.median:.1f} /s" if "attempts" in m.tool else f"{m.median:.2f} s")
                ratio = "—"
            else:
                value = _seconds(m.median)
                ratio = f"{m.median / ref.median:.2f}\u00d7" if ref else "—"
            rss = f"{m.max_rss_kb / 1024:.0f} MB" if m.max_rss_kb else "—"
            cpu = _seconds(m.median_cpu) if m.cpu else "—"
            note = m.note or (f"{m.failures} failed" if m.failures else "")
            lines.append(f"| {m.tool} | {value} | {ratio} | {cpu} | {rss} | {len(m.seconds)} | {note} |")
        lines.append("")
    lines += bounds(measures)
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def bounds(measures: list[Measure]) -> list[str]:
    """
    Lower bounds derived from figures of the same run, for the targets a Python
    tool cannot reach on this machine (the README's Performance section).
    """
    out = ["## Bounds from this run", ""]
    floor = _find(measures, "P1", "floor: ")
    libraries = _find(measures, "P1", "floor + import click")
    noop = _named(measures, "P1", "bootstrap migrate")
    if floor and libraries and noop:
        out.append(
            f"- P1: importing click and structlog on top of the floor takes {_seconds(libraries.median)} = "
            f"{libraries.median / floor.median:.2f}\u00d7 the floor before any work (target 1.1\u00d7); "
            f"`bootstrap migrate` with nothing to do takes {noop.median / libraries.median:.2f}\u00d7 that.")
    venv = _named(measures, "P1", "bootstrap migrate: venv install")
    bundled = _named(measures, "P1", "bootstrap migrate: bundle")
    if venv and bundled:
        cold_venv = _named(measures, "P1", "bootstrap migrate: venv install, cold")
        cold_bundle = _named(measures, "P1", "bootstrap migrate: bundle, cold")
        cold = (f"; cold, {_seconds(cold_bundle.median)} against {_seconds(cold_venv.median)}"
                if cold_venv and cold_bundle else "")
        out.append(
            f"- P1 packaging: the bundle starts in {_seconds(bundled.median)} = "
            f"{bundled.median / venv.median:.2f}\u00d7 the venv install's {_seconds(venv.median)} "
            f"(the same interpreter and libraries){cold}.")
    native = _named(measures, "P1", "dbmate (Go binary)")
    launcher = _named(measures, "P1", "dbmate (npm launcher)")
    if native and noop and floor:
        via = (f"; through its npm launcher {_seconds(launcher.median)}, of which "
               f"{_seconds(launcher.median - native.median)} is Node starting" if launcher else "")
        out.append(
            f"- P1 against a compiled peer: dbmate's Go binary does its no-op `up` in {_seconds(native.median)}; "
            f"`bootstrap migrate` takes {noop.median / native.median:.1f}\u00d7 that "
            f"({_seconds(noop.median - native.median)} more){via}. "
            f"The Python floor alone is {floor.median / native.median:.1f}\u00d7 it.")
    limit = _find(measures, "P2", "limit")
    applied = _find(measures, "P2", "bootstrap")
    if floor and limit and applied:
        out.append(
            f"- P2: bootstrap {_seconds(applied.median)} = {applied.median / limit.median:.2f}\u00d7 psql; "
            f"client CPU {_seconds(applied.median_cpu)}, of it {_seconds(floor.median_cpu)} the Python floor "
            f"and {(applied.median_cpu - floor.median_cpu) / FILES * 1000:.2f} ms per file. psql sends each "
            f"statement of a file as its own round trip; bootstrap sends a file and its ledger row as one.")
    one = _find(measures, "P4", "one runner")
    restart = _find(measures, "P4", "50 replicas at once: run -- true, already")
    cores = os.cpu_count() or 1
    if one and restart and floor:
        least = 50 * floor.median_cpu / cores
        out.append(
            f"- P4: 50 Python processes that only import psycopg and connect need 50 \u00d7 "
            f"{_seconds(floor.median_cpu)} of CPU; on {cores} cores that alone takes at least {_seconds(least)} = "
            f"{least / one.median:.2f}\u00d7 one runner's {_seconds(one.median)} (target 1.5\u00d7 = "
            f"{_seconds(1.5 * one.median)}). 50 bootstrap starts with nothing to apply used "
            f"{_seconds(restart.median_cpu)} of CPU in all.")
    help_ = _find(measures, "P5", "bootstrap --help")
    click = _find(measures, "P5", "python -c 'import click'")
    if help_ and click:
        out.append(
            f"- P5: `python -c 'import click'` alone takes {_seconds(click.median)} (target 60 ms); "
            f"`bootstrap --help` {_seconds(help_.median)}.")
    out.append("")
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
