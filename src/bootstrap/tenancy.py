"""
One tenant's work, and the workers that go over a fleet's tenants.

Each tenant is a small `runner.Migrator` of its own: its ledger inside it (the ledger
table's name, in the tenant's schema or database), its own advisory lock, the same
planner, applier and checks as the shared files, on the tenant directory's files
(`tenant_migrations`, checked before anything runs) with its own settings
(`tenant_settings`). `Fleet`'s `--jobs` workers, each on a connection of its own, take
tenants from one queue; a tenant whose lock another runner holds is left for the end
and then waited for (another runner's work is never done twice). A failing tenant is
that tenant's result, never the others' stop. What the workers do over the whole fleet
(migrate, status, wait-migrated) is `fleet`'s.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import BootstrapError, ConfigError, DatabaseUnavailableError, LockTimeoutError, TenantMissingError
from .logs import live_line
from .migrations import discover_migrations
from .parsing import parse_migration
from .runner import Migrator
from .sqlfile import TENANT_VARIABLE  # a tenant's files may use it as :'BOOTSTRAP_TENANT' / :"BOOTSTRAP_TENANT"
from .typing import Logger, TenantResult

if TYPE_CHECKING:
    from .pg import Session
    from .settings import Settings

PROGRESS_EVERY_S = 5.0
ABSENT = {"applied": 0, "pending": 0, "changed": 0, "missing": 0, "future": 0, "absent": 1}  # no such tenant
TENANT_CONNECT_WAIT_S = 10.0  # a worker's connection, once the server has answered: a blip, not a start-up
T = TypeVar("T")


def tenant_dir(settings: Settings) -> Path:
    """Where the tenants' files are: --tenant-sql-dir, else <sql dir>/tenant."""
    return settings.tenant_sql_dir or settings.sql_dir / "tenant"


def tenant_migrations(settings: Settings) -> list[Any]:
    """
    The tenants' files, checked (names, versions, directives) before anything runs.

    Raises:
        ConfigError: the directory is missing or holds a bad file (exit 3), naming the tenant settings.
    """
    folder = tenant_dir(settings)
    if not folder.is_dir():
        raise ConfigError(f"tenant directory {folder} does not exist (set BOOTSTRAP_TENANT_SQL_DIR or "
                          "--tenant-sql-dir; the default is <sql dir>/tenant)", variable="BOOTSTRAP_TENANT_SQL_DIR")
    migrations = discover_migrations(folder)
    environ = {**settings.environ, TENANT_VARIABLE: "tenant"}
    for migration in migrations:  # every variable of a tenant file set (BOOTSTRAP_TENANT aside), before anything
        if migration.variables:
            parse_migration(migration, environ)
    return migrations


def tenant_settings(settings: Settings, tenant: str, *, lock_timeout: float) -> Settings:
    """One tenant's settings: its files, its ledger (in its schema), its placeholder; no lint, no schemas."""
    schema = settings.tenant_kind == "schema"
    return settings._replace(
        sql_dir=tenant_dir(settings), schemas=(), lint="off", tenants_query=None, tenant=tenant,
        ledger_schema=tenant if schema else settings.ledger_schema,
        ledger_default=False if schema else settings.ledger_default,
        lock_timeout=lock_timeout, environ={**settings.environ, TENANT_VARIABLE: tenant})


class _PerTenant:
    """A tenant's log: its lines carry `tenant`; what is routine for one tenant (info) is debug for a fleet."""

    def __init__(self, log: Logger, tenant: str) -> None:
        self._log = log.bind(tenant=tenant)

    def bind(self, **fields: Any) -> _PerTenant:
        bound = _PerTenant.__new__(_PerTenant)
        bound._log = self._log.bind(**fields)
        return bound

    def debug(self, event: str, **fields: Any) -> None:
        self._log.debug(event, **fields)

    info = debug

    def warning(self, event: str, **fields: Any) -> None:
        self._log.warning(event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log.error(event, **fields)


class Fleet:
    """
    The tenants of one run and the workers that go over them.

    Args:
        settings: the run's settings (the tenants query, --jobs, --tenant-kind).
        log: a structlog logger.
        tenants: the names the query returned.
    """

    def __init__(self, settings: Settings, log: Logger, tenants: list[str]) -> None:
        self.settings = settings
        self.log = log
        self.tenants = tenants
        self.migrations = tenant_migrations(settings)
        self.stop = threading.Event()
        self._sessions: list[Session] = []  # every open one (to cancel on a signal, to close at the end)
        self._idle: list[Session] = []  # a schema fleet's sessions between runs (wait-migrated polls again)
        self._lock = threading.Lock()

    # -- one tenant ------------------------------------------------------------------------

    @contextmanager
    def _migrator(self, tenant: str, held: dict[str, Session], *, lock_timeout: float) -> Iterator[Migrator]:
        """A Migrator for `tenant` on this worker's session (a database tenant: a connection to it)."""
        from .pg import AdvisoryLocker, PgLedger, advisory_key, open_session
        from .pg.applier import Applier

        settings = tenant_settings(self.settings, tenant, lock_timeout=lock_timeout)
        log = _PerTenant(self.log, tenant)
        database = self.settings.tenant_kind == "database"
        session = held.get("session")
        if session is None and not database:
            with self._lock:
                session = self._idle.pop() if self._idle else None
        if database or session is None or session.closed:
            # The server answered already: a tenant that cannot be reached is that tenant's failure, soon.
            reach = self.settings._replace(wait_timeout=min(self.settings.wait_timeout, TENANT_CONNECT_WAIT_S))
            session = open_session(reach, log, dbname=tenant if database else None)
            with self._lock:
                self._sessions.append(session)
        if not database:
            held["session"] = session
        session.use_schema(None if database else tenant)
        ledger = PgLedger(session, settings, log)
        locker = AdvisoryLocker(session, advisory_key(*settings.lock_ledger), timeout_s=lock_timeout, log=log)
        try:
            yield Migrator(settings, log, session, ledger, locker,
                           lambda: Applier(session, ledger, retries=settings.ddl_lock_retries, log=log))
        finally:
            session.use_schema(None)
            if database:
                session.close()
                with self._lock:
                    self._sessions.remove(session)

    def migrate_one(self, tenant: str, held: dict[str, Session], *, wait: bool) -> TenantResult | None:
        """
        Migrate one tenant. Without `wait`, a tenant whose lock another runner holds is
        returned as None (to come back to); with it, its lock is waited for.
        """
        started = time.monotonic()

        def took(outcome: str, applied: tuple[str, ...] = (), error: str | None = None) -> TenantResult:
            return TenantResult(tenant, outcome, applied, error, round((time.monotonic() - started) * 1000))

        done: list[str] = []  # what was applied, even when a later file of the tenant failed
        try:
            with self._migrator(tenant, held, lock_timeout=self.settings.lock_timeout if wait else 0.0) as m:
                try:
                    result = m.migrate(self.migrations)
                finally:
                    done += [*m.result.applied, *m.result.repeatables]
        except LockTimeoutError as exc:
            if not wait:
                return None
            return self._failed(tenant, exc, took, held, tuple(done))
        except TenantMissingError as exc:
            self.log.warning("tenant_missing", tenant=tenant, reason=exc.message)
            return took("missing", error=exc.message)
        except ConfigError as exc:
            if self.settings.tenant_kind == "database" and exc.fields.get("error_type") == "not_found":
                self.log.warning("tenant_missing", tenant=tenant, reason=exc.message)
                return took("missing", error=exc.message)
            return self._failed(tenant, exc, took, held, tuple(done))
        except BootstrapError as exc:
            return self._failed(tenant, exc, took, held, tuple(done))
        applied = (*result.applied, *result.repeatables)
        outcome = took("applied" if applied else "current", applied)
        self.log.debug("tenant_migrated", tenant=tenant, outcome=outcome.outcome, applied=len(applied),
                       duration_ms=outcome.duration_ms)
        return outcome

    def _failed(self, tenant: str, exc: BootstrapError, took: Callable[..., TenantResult],
                held: dict[str, Session], applied: tuple[str, ...]) -> TenantResult:
        if isinstance(exc, DatabaseUnavailableError):
            held.pop("session", None)  # lost: the next tenant connects again
        if not self.stop.is_set():  # stopping (a signal): the cancelled tenants are the interruption, not failures
            self.log.error("tenant_failed", tenant=tenant, error=exc.message, exit_code=int(exc.exit_code),
                           applied=len(applied), **{k: v for k, v in exc.fields.items() if k in ("file", "line",
                                                                                                 "sqlstate")})
        return took("failed", applied, exc.message)

    # -- the whole fleet -------------------------------------------------------------------

    def run(self, work: Callable[[str, dict[str, Session], bool], T | None], what: str) -> list[T]:
        """
        `work(tenant, held, wait)` on every tenant by `--jobs` workers; tenants it returns None
        for (held by another runner) go again at the end, waited for. Results in the tenants' order.
        """
        pending: queue.SimpleQueue[str] = queue.SimpleQueue()
        for tenant in self.tenants:
            pending.put(tenant)
        results: dict[str, T] = {}
        later: list[str] = []
        failures = [0]
        crashed: list[BaseException] = []

        def worker() -> None:
            held: dict[str, Session] = {}
            try:
                while not self.stop.is_set():
                    try:
                        tenant = pending.get_nowait()
                    except queue.Empty:
                        break
                    done = work(tenant, held, False)
                    with self._lock:
                        if done is None:
                            later.append(tenant)
                        else:
                            results[tenant] = done
                            failures[0] += int(getattr(done, "outcome", "") == "failed")
                for tenant in self._take(later):  # another runner held them: wait for it, then see
                    if self.stop.is_set():
                        break
                    done = work(tenant, held, True)
                    with self._lock:
                        results[tenant] = done  # type: ignore[assignment]
                        failures[0] += int(getattr(done, "outcome", "") == "failed")
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                crashed.append(exc)
                self.stop.set()
            finally:
                kept = held.get("session")
                if kept is not None and not kept.closed:
                    with self._lock:
                        self._idle.append(kept)

        threads = [threading.Thread(target=worker, name=f"bootstrap-fleet-{i}", daemon=True)
                   for i in range(min(self.settings.jobs, max(1, len(self.tenants))))]
        for thread in threads:
            thread.start()
        try:
            self._watch(threads, results, failures, what)
        except BaseException:
            self.stop.set()
            self._cancel()
            for thread in threads:
                thread.join(10)
            raise
        if crashed:
            raise crashed[0]
        return [results[t] for t in self.tenants if t in results]

    def _take(self, later: list[str]) -> Iterator[str]:
        while True:
            with self._lock:
                if not later:
                    return
                tenant = later.pop(0)
            yield tenant

    def _watch(self, threads: list[threading.Thread], results: dict[str, Any], failures: list[int],
               what: str) -> None:
        """Wait for the workers; progress on one updating line (a terminal), or a log line every few seconds."""
        started = time.monotonic()
        live, next_line = live_line(), PROGRESS_EVERY_S
        total = len(self.tenants)
        while any(t.is_alive() for t in threads):
            threads[0].join(0.25) if threads[0].is_alive() else time.sleep(0.25)
            done, waited = len(results), time.monotonic() - started
            rate = done / waited if waited > 0 else 0.0
            eta = round((total - done) / rate) if rate > 0 else None
            if live is not None:
                live.update(f"{what}: {done}/{total} tenants, {rate:.1f}/s, ETA "
                            f"{'?' if eta is None else f'{eta}s'}, {failures[0]} failed")
            elif waited >= next_line:
                self.log.info("fleet_progress", done=done, total=total, failed=failures[0], rate_per_s=round(rate, 1),
                              eta_s=eta)
                next_line = waited + PROGRESS_EVERY_S
        if live is not None:
            live.end()

    def _cancel(self) -> None:
        """Stopping (a signal): cancel what each worker's connection is running; the server rolls it back."""
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            try:
                session.conn.cancel_safe()
            except Exception:  # noqa: BLE001, S110 - a closed or broken connection has nothing to cancel
                pass

    def close(self) -> None:
        """Close every worker's connection."""
        with self._lock:
            sessions, self._sessions, self._idle = self._sessions, [], []
        for session in sessions:
            session.close()

    # -- status and wait-migrated over the fleet -------------------------------------------

    def status_one(self, tenant: str, held: dict[str, Session], _wait: bool) -> tuple[str, dict[str, int]]:
        """One tenant's counts by state (a missing tenant: `absent` 1)."""
        from .pg.tenants import schema_exists

        try:
            with self._migrator(tenant, held, lock_timeout=0.0) as m:
                if self.settings.tenant_kind == "schema" and not schema_exists(m.session, tenant):
                    return tenant, {**ABSENT}
                return tenant, {**m.status(self.migrations).counts(), "absent": 0}
        except ConfigError as exc:
            if self.settings.tenant_kind == "database" and exc.fields.get("error_type") == "not_found":
                return tenant, {**ABSENT}
            raise
