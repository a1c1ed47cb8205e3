"""Everything the CLI prints for people: plans and errors, written once, here.

Errors carry facts (``bridge.errors``); this module turns them into what happened, why, and the
command or config key that fixes it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bridge.engine import PlanResult
from bridge.errors import BridgeError, ConfigError, SourceError, SourceOrderError
from bridge.model import Change, Op, changed_fields
from bridge.plan import rejection_group
from bridge.sync import SyncResult

OPS = (Op.CREATE, Op.UPDATE, Op.ARCHIVE, Op.DELETE)
EXAMPLES = 3


def plan_text(result: PlanResult, entities: Iterable[str], detail: bool = False) -> str:
    """A reviewable plan: a table of counts, holds by reason, rejections, the guard's verdict."""
    plan = result.plan
    lines = [f"Plan of a {plan.mode} run (a preview: nothing was sent or recorded)", ""]
    header = f"{'entity':<14}{'read':>9}" + "".join(f"{op.value:>9}" for op in OPS)
    lines += [header + f"{'held':>9}{'rejected':>10}", "-" * (len(header) + 19)]
    for entity in entities:
        counts = plan.counts.get(entity, Counter())
        held = sum(plan.holds.get(entity, {}).values())
        row = f"{entity:<14}{plan.records_read[entity]:>9}"
        row += "".join(f"{counts.get(op.value, 0):>9}" for op in OPS)
        lines.append(row + f"{held:>9}{plan.rejection_counts[entity]:>10}")
    lines += _holds(result) + _rejections(result, detail) + _guard(result)
    if detail:
        lines += _details(plan.updates, plan.sample_limit)
    if plan.failure:
        lines += ["", f"The read failed midway, so no deletes were planned: {plan.failure}"]
    return "\n".join(lines)


def _holds(result: PlanResult) -> list[str]:
    holds = result.plan.holds
    if not holds:
        return []
    lines = ["", "Held back (never exported):"]
    for entity, reasons in holds.items():
        text = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        lines.append(f"  {entity:<14}{text}")
    return lines


def _rejections(result: PlanResult, detail: bool) -> list[str]:
    plan = result.plan
    if not plan.rejections:
        return []
    total = sum(plan.rejection_counts.values())
    lines = ["", f"Rejected rows: {total} (fix them in ASIOU; every other record is planned)"]
    if detail:
        return lines + [f"  {r.entity}: table {r.table}, key {r.key or '?'}, field {r.field}: "
                        f"{r.reason}" for r in plan.rejections]
    examples: dict[tuple[str, str, str, str], list[str]] = {}
    for r in plan.rejections:
        examples.setdefault(rejection_group(r), []).append(r.key or "?")
    for group, count in plan.rejection_groups.items():
        entity, table, name, kind = group
        keys = examples.get(group, [])
        shown = ", ".join(keys[:EXAMPLES]) + (", …" if count > EXAMPLES else "")
        lines.append(f"  {entity} ({table}.{name}): {kind} — {count}× (keys {shown})")
    lines.append("  (`plan --detail` lists the rows one by one)")
    return lines


def _guard(result: PlanResult) -> list[str]:
    if not result.guard_holds:
        return []
    if result.approved:
        return ["", f"Guard: deletes approved by an admin (plan {result.plan.plan_id})."]
    lines = ["", "Guard: HELD. The deletes of this plan will not be sent because it"]
    lines += [f"  - {h.describe()}" for h in result.guard_holds]
    lines += ["  Check ASIOU first: a partial export or a wrong mapping looks like this.",
              "  If the deletes are right, approve them:",
              f"    asiou-bridge approve {result.plan.plan_id}"]
    return lines


def _details(updates: list[Change], limit: int) -> list[str]:
    lines = ["", f"Updates, field by field (first {limit} per entity):"]
    for change in updates:
        lines.append(f"  {change.entity} {change.key}:")
        for name, (before, after) in changed_fields(change).items():
            lines.append(f"      {name}: {before!r} -> {after!r}")
    return lines


def plan_json(result: PlanResult, detail: bool = False) -> str:
    """The same plan as JSON."""
    plan = result.plan
    data: dict[str, Any] = {
        "mode": plan.mode, "plan_id": plan.plan_id,
        "counts": {e: dict(c) for e, c in plan.counts.items()},
        "read": dict(plan.records_read),
        "held_back": {e: dict(c) for e, c in plan.holds.items()},
        "rejections": {"counts": dict(plan.rejection_counts), "sample": [
            {"entity": r.entity, "table": r.table, "key": r.key, "field": r.field,
             "reason": r.reason} for r in plan.rejections]},
        "guard": {"held": result.held, "approved": result.approved,
                  "reasons": [h.describe() for h in result.guard_holds]},
        "failure": plan.failure,
    }
    if detail:
        data["updates"] = [{"entity": c.entity, "key": c.key, "fields": {
            n: {"before": b, "after": a} for n, (b, a) in changed_fields(c).items()}}
            for c in plan.updates]
    return json.dumps(data, ensure_ascii=False, indent=2)


def error_text(exc: BridgeError) -> str:
    """What went wrong, and what to do about it."""
    if isinstance(exc, ConfigError):
        items = "\n".join(f"  - {p}" for p in exc.problems)
        return (f"Configuration problem{'s' if len(exc.problems) > 1 else ''} "
                f"(nothing was done):\n{items}")
    if isinstance(exc, SourceOrderError):
        return (f"The ASIOU table {exc.table} returned key {exc.key} after {exc.previous}, so "
                f"rows are not in key order. For text keys set source.key_collation in the "
                f"{exc.entity} mapping to a binary collation.")
    if isinstance(exc, SourceError):
        return (f"The ASIOU database failed while {exc.operation}: {exc.detail}\n"
                "Nothing was deleted. Check source.url and that the database is reachable "
                "(`asiou-bridge check`).")
    return f"Error: {exc}"


def sync_text(outcome: SyncResult, entities: Iterable[str]) -> str:
    """What a sync delivered, what it held back or refused, and how it ended."""
    report, plan = outcome.delivery, outcome.plan
    lines = [f"Sync ({plan.plan.mode} run): {report.total} changes delivered in "
             f"{report.batches} batches", ""]
    header = f"{'entity':<14}" + "".join(f"{op.value:>9}" for op in OPS) + f"{'refused':>9}"
    lines += [header, "-" * len(header)]
    for entity in entities:
        done = report.delivered.get(entity, Counter())
        if not done and not report.refused[entity]:
            continue
        lines.append(f"{entity:<14}" + "".join(f"{done.get(op.value, 0):>9}" for op in OPS)
                     + f"{report.refused[entity]:>9}")
    lines += _holds(plan) + _rejections(plan, detail=False) + _guard(plan)
    lines += ["", _verdict(outcome)]
    return "\n".join(lines)


def _verdict(outcome: SyncResult) -> str:
    report = outcome.delivery
    if report.failure:
        return (f"FAILED: {report.failure}\nWhat was acknowledged is recorded; the next run "
                "sends the rest.")
    if report.refused:
        return (f"INCOMPLETE: the portal refused {sum(report.refused.values())} records "
                "(dead letters after repeated refusals; see `asiou-bridge status`).")
    if report.skipped_dead:
        return (f"INCOMPLETE: {sum(report.skipped_dead.values())} dead letters were not sent "
                "(`asiou-bridge retry` sends them again).")
    if outcome.plan.held:
        return "HELD: deletes wait for approval (see above)."
    return "OK: every planned change was delivered."


def sync_json(outcome: SyncResult) -> str:
    """The same outcome as JSON."""
    report = outcome.delivery
    data = json.loads(plan_json(outcome.plan))
    data["delivery"] = {"delivered": {e: dict(c) for e, c in report.delivered.items()},
                        "refused": dict(report.refused),
                        "skipped_dead_letters": dict(report.skipped_dead),
                        "batches": report.batches, "failure": report.failure,
                        "exit_code": outcome.exit_code}
    return json.dumps(data, ensure_ascii=False, indent=2)
