"""
What the commands print on stdout: `status` as a table or one JSON document,
the lines of `baseline`, `repair` and `adopt`, and, before a deploy, `lint`,
`migrate --dry-run` and `migrate --rehearse` as text or one JSON document.

Pure: takes result values, returns text. Logs are not here (they go to stderr,
from the runner and the CLI); these lines are for people and scripts reading stdout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .migrations import Kind
from .plan import Plan
from .typing import (
    AdoptResult,
    BaselineResult,
    DryRunResult,
    Finding,
    FleetResult,
    FleetStatus,
    LintResult,
    MigrateResult,
    RehearsalResult,
    RepairResult,
)


def status_json(plan: Plan, fleet: FleetStatus | None = None) -> str:
    """`status --json`: one document with the summary and every migration (and each tenant's counts)."""
    doc: dict[str, Any] = {
        "up_to_date": plan.up_to_date,
        "summary": plan.counts(),
        "migrations": [
            {
                "version": e.version,
                "name": e.name,
                "kind": e.kind.value,
                "state": e.state.value,
                "checksum": e.migration.checksum if e.migration else None,
                "applied_checksum": e.applied.checksum if e.applied else None,
                "applied_at": e.applied.applied_at.isoformat() if e.applied and e.applied.applied_at else None,
                "detail": e.detail or None,
            }
            for e in plan.entries
        ],
    }
    if fleet is not None:
        doc["up_to_date"] = plan.up_to_date and not fleet.behind
        doc["tenants"] = fleet.tenants
    return _json(doc)


def fleet_status_lines(fleet: FleetStatus) -> list[str]:
    """`status` over a fleet: how many tenants, the counts by state over all of them, the tenants behind."""
    totals: dict[str, int] = {}
    for counts in fleet.tenants.values():
        for state, n in counts.items():
            totals[state] = totals.get(state, 0) + n
    behind, absent = fleet.behind, fleet.absent
    totals.pop("absent", None)
    lines = [f"\n{len(fleet.tenants)} tenants: {len(fleet.tenants) - len(behind) - len(absent)} up to date, "
             f"{len(behind)} behind" + (f", {len(absent)} missing (no such schema or database)" if absent else "")
             + "; their files: " + ", ".join(f"{n} {state}" for state, n in totals.items())]
    for name in behind[:20]:
        lines.append(f"  {name}: " + ", ".join(f"{n} {state}" for state, n in fleet.tenants[name].items() if n))
    for name in absent[:20]:
        lines.append(f"  {name}: missing")
    if len(behind) > 20:
        lines.append(f"  ... and {len(behind) - 20} more (status --json lists every tenant)")
    return lines


def fleet_json(shared: MigrateResult, fleet: FleetResult) -> str:
    """`migrate --json` over a fleet: the shared files, then each tenant's outcome."""
    return _json({
        "shared": {"applied": shared.applied, "repeatables": shared.repeatables, "after": shared.after},
        "summary": {k.removeprefix("tenants_"): v for k, v in fleet.as_log().items() if k != "tenants"},
        "tenants": [{"tenant": t.tenant, "outcome": t.outcome, "applied": list(t.applied), "error": t.error,
                     "duration_ms": t.duration_ms} for t in fleet.tenants],
        "duration_ms": fleet.duration_ms,
    })


def status_table(plan: Plan) -> list[str]:
    """`status`: one aligned line per migration, then a summary line."""
    entries = plan.entries
    rows = [("VERSION", "STATE", "NAME", "APPLIED AT", "DETAIL")]
    for e in entries:
        applied_at = (
            e.applied.applied_at.strftime("%Y-%m-%d %H:%M:%S%z") if e.applied and e.applied.applied_at else ""
        )
        rows.append((str(e.version) if e.version is not None else "R", e.state.value, e.name,
                     applied_at, e.detail))
    lines = _aligned(rows)
    counts = plan.counts()
    lines.append(
        f"\n{len(entries)} migrations: "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
        + (" (up to date)" if plan.up_to_date else "")
    )
    return lines


def baseline_lines(result: BaselineResult) -> list[str]:
    """`baseline`: each version recorded, or why none was."""
    if not result.recorded:
        return [f"nothing to record: no unrecorded file with a version up to {result.version}"]
    return [f"baselined  {m.version}  {m.name}" for m in result.recorded]


def repair_lines(result: RepairResult) -> list[str]:
    """`repair`: each re-recorded (or, with --dry-run, fixable) version and each missing file."""
    lines = []
    for entry in result.entries:
        row, migration = entry.row, entry.migration
        if migration is None:
            lines.append(f"missing    {row.version}  {row.name}: no file; left as it is")
            continue
        what = []
        if migration.checksum != row.checksum:
            what.append(f"checksum {row.checksum[:12]} -> {migration.checksum[:12]}")
        if migration.name != row.name:
            what.append(f"name {row.name} -> {migration.name}")
        lines.append(f"{'would fix' if result.dry_run else 'repaired '}  {row.version}  {migration.name}: "
                     f"{', '.join(what)}")
    for row in result.retired:
        lines.append(f"{'would retire' if result.dry_run else 'retired  '}  R  {row.name}: its file was deleted; "
                     "its ledger row goes, what it created stays")
    if not result.changes and not result.retired:
        lines.append("nothing to repair: every applied file matches the ledger")
    return lines


def adopt_lines(result: AdoptResult, sql_dir: Path) -> list[str]:
    """`adopt`: what matched, what was already recorded, what could not be placed, what stays pending."""
    found, tool = result.match, result.tool
    verb = "would adopt" if result.dry_run else "adopted    "
    lines = [f"{verb}  {m.version}  {m.name}  <- {e.label}" for m, e in found.matched]
    lines += [f"already     {m.version}  {m.name}" for m in found.already]
    lines += [f"unmatched   {e.label}: no file in {sql_dir} with version {e.version}" for e in found.unmatched]
    lines += [f"pending     {m.version}  {m.name}: not in {tool.name}'s ledger; migrate will apply it"
              for m in found.pending]
    lines += [f"repeatable  {e.label}: not adopted; migrate re-applies it once (repeatables are idempotent)"
              for e in found.repeatables]
    return lines


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows in aligned columns; the last column (a detail) follows unpadded, and only when there is one."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True))
        # Padding kept when a detail follows, so it stays in its column.
        lines.append(f"{line}  {r[-1]}" if r[-1] else line.rstrip())
    return lines


def _version(version: int | None, kind: Kind | None = None) -> str:
    """A file's version column: its version, R for a repeatable, - for an after-migrate script."""
    return "-" if kind is Kind.AFTER else str(version) if version is not None else "R"


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


# -- before a deploy -----------------------------------------------------------------------


def finding_lines(findings: list[Finding]) -> list[str]:
    """Each finding: `file:line:column: rule (level): message`, then its help."""
    lines = []
    for f in findings:
        lines.append(f"{f.where()}: {f.rule} ({f.level}): {f.message}")
        if f.help:
            lines.append(f"    help: {f.help}")
    return lines


def _lint_summary(result: LintResult) -> str:
    if result.skipped:
        return f"lint skipped: {result.skipped}"
    version = (f"; PostgreSQL {result.server_version // 10000}.{result.server_version % 10000}"
               if result.server_version else "")
    silenced = sum(s.findings for s in result.silenced)
    return (f"{_plural(len(result.findings), 'lint finding')} in {_plural(len(result.files), 'file')} linted "
            f"({result.scope}{version})" + (f"; {silenced} silenced by lint-ignore" if silenced else ""))


def lint_lines(result: LintResult) -> list[str]:
    """`lint`: the findings, then a summary."""
    return [*finding_lines(result.findings), *([""] if result.findings else []), _lint_summary(result)]


def _lint_doc(result: LintResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    from .lint import MOOT_RULES

    return {
        "clean": not result.findings,
        "scope": result.scope,
        "skipped": result.skipped,
        "server_version": result.server_version,
        "files": [m.name for m in result.files],
        "findings": [{"file": f.file, "migration": f.name, "line": f.line, "column": f.column, "rule": f.rule,
                      "level": f.level, "message": f.message, "help": f.help} for f in result.findings],
        "silenced": [{"migration": s.name, "rules": list(s.rules), "findings": s.findings}
                     for s in result.silenced],
        "excluded": MOOT_RULES,
    }


def _json(doc: dict[str, Any]) -> str:
    import json

    return json.dumps(doc, indent=2)


def lint_json(result: LintResult) -> str:
    """`lint --json`: one document."""
    doc = _lint_doc(result)
    assert doc is not None
    return _json(doc)


def dry_run_lines(result: DryRunResult) -> list[str]:
    """`migrate --dry-run`: each file that would run, in order, then the findings and a summary."""
    lint = result.lint
    lines = []
    if result.files:
        rows = [("ORDER", "VERSION", "KIND", "STATEMENTS", "FILE", "LINT")]
        for order, p in enumerate(result.files, 1):
            findings = len(lint.of(p.migration)) if lint is not None and not lint.skipped else None
            found = "-" if findings is None else _plural(findings, "finding") if findings else "clean"
            rows.append((str(order), _version(p.migration.version, p.migration.kind), p.kind, str(p.statements),
                         p.migration.name, found))
        lines += _aligned(rows)
    if lint is not None and lint.findings:
        lines += ["", *finding_lines(lint.findings)]
    lines.append("")
    if result.creates:
        lines.append(f"would create: {', '.join(result.creates)}")
    if result.left_pending:
        lines.append(f"left pending by --to: {', '.join(m.name for m in result.left_pending)}")
    if result.tenants_behind is not None:
        behind = result.tenants_behind
        lines.append(f"tenants: {len(behind)} would be migrated" + (
            f": {', '.join(behind[:20])}{' ...' if len(behind) > 20 else ''}" if behind else ""))
    after = len(result.files) - len(result.migrations)
    then = f"; then {_plural(after, 'after-migrate script')}" if after else ""
    if not result.migrations:
        where = "every shared file is applied" if result.tenants_behind else "every file is applied"
        lines.append(f"no migration of the database would run: {where}"
                     f"{then.replace('; then', '; migrate would run')}" if result.tenants_behind else
                     f"nothing would run: {where}{then.replace('; then', '; migrate would run')}")
        return lines
    lines.append(f"{_plural(len(result.migrations), 'file')} would run{then}"
                 + (f"; {_lint_summary(lint)}" if lint is not None else "; lint off"))
    return lines


def dry_run_json(result: DryRunResult) -> str:
    """`migrate --dry-run --json`: one document."""
    lint = result.lint
    return _json({
        "would_run": result.would_run,
        "files": [{"order": order, "version": p.migration.version, "name": p.migration.name,
                   "path": str(p.migration.path), "kind": p.kind, "transactional": p.migration.transactional,
                   "statements": p.statements,
                   "findings": len(lint.of(p.migration)) if lint is not None else None}
                  for order, p in enumerate(result.files, 1)],
        "creates": result.creates,
        "left_pending": [m.name for m in result.left_pending],
        **({"tenants_behind": result.tenants_behind} if result.tenants_behind is not None else {}),
        "lint": _lint_doc(lint),
    })


def rehearsal_lines(result: RehearsalResult) -> list[str]:
    """`migrate --rehearse`: each file's outcome and duration, in order, then a summary."""
    if not result.files:
        return ["nothing to rehearse: every file is applied"]
    rows = [("ORDER", "VERSION", "RESULT", "DURATION", "FILE", "DETAIL")]
    for order, f in enumerate(result.files, 1):
        rows.append((str(order), _version(f.migration.version, f.migration.kind), f.outcome,
                     f"{f.duration_ms} ms" if f.duration_ms is not None else "", f.migration.name, f.detail))
    counts = ", ".join(f"{result.count(o)} {o}" for o in ("passed", "failed", "not rehearsed"))
    return [*_aligned(rows), "", f"rolled back, nothing kept: {counts}"]


def rehearsal_json(result: RehearsalResult) -> str:
    """`migrate --rehearse --json`: one document."""
    return _json({
        "rolled_back": True,
        "passed": result.count("passed"),
        "failed": result.count("failed"),
        "not_rehearsed": result.count("not rehearsed"),
        "files": [{"order": order, "version": f.migration.version, "name": f.migration.name,
                   "kind": "repeatable" if f.migration.version is None else "versioned",
                   "transactional": f.migration.transactional, "outcome": f.outcome,
                   "duration_ms": f.duration_ms, "detail": f.detail or None}
                  for order, f in enumerate(result.files, 1)],
        "lint": _lint_doc(result.lint),
    })
