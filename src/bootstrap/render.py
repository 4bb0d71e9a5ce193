"""
What the commands print on stdout: `status` as a table or one JSON document,
and the lines of `baseline`, `repair` and `adopt`.

Pure: takes result values, returns text. Logs are not here (they go to stderr,
from the runner and the CLI); these lines are for people and scripts reading stdout.
"""

from __future__ import annotations

from pathlib import Path

from .plan import Plan
from .typing import AdoptResult, BaselineResult, RepairResult


def status_json(plan: Plan) -> str:
    """`status --json`: one document with the summary and every migration."""
    import json

    doc = {
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
    return json.dumps(doc, indent=2)


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
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for r in rows:
        line = "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
        # Padding kept when a detail follows, so it stays in its column.
        lines.append(f"{line}  {r[4]}" if r[4] else line.rstrip())
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
    if not result.changes:
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
