"""Everything the CLI prints for people: plans and errors, written once, here.

Errors carry facts (``bridge.core.errors``); this module turns them into what happened, why, and the
command or config key that fixes it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.core.errors import (
    BridgeError,
    ConfigError,
    LockBusy,
    PortalAuthError,
    PortalFatalError,
    PortalUnavailable,
    SourceError,
    SourceOrderError,
    StateError,
    UnknownKey,
    UnknownPlan,
)
from bridge.core.model import Change, Op, changed_fields
from bridge.core.plan import rejection_group
from bridge.service.engine import PlanResult, SyncResult

if TYPE_CHECKING:
    from bridge.service.admin import Erasure, Explanation, Status

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
    lines += _reconcile(result, detail)
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
        return lines + [
            f"  {r.entity}: table {r.table}, key {r.key or '?'}, field {r.field}: {r.reason}"
            for r in plan.rejections
        ]
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
        return [
            "",
            "Guard: deletes, archives and closures approved by an admin "
            f"(plan {result.plan.plan_id}).",
        ]
    lines = [
        "",
        "Guard: HELD. The deletes, archives and membership closures of this plan will "
        "not be sent because it",
    ]
    lines += [f"  - {h.describe()}" for h in result.guard_holds]
    if result.approval_expired:
        lines.append("  An approval of this plan expired (guard.approval_valid_hours).")
    lines += [
        "  Check ASIOU first: a partial export or a wrong mapping looks like this.",
        "  If the changes are right, approve them:",
        f"    asiou-bridge approve {result.plan.plan_id}",
    ]
    return lines


def _reconcile(result: PlanResult, detail: bool) -> list[str]:
    """What the portal's read-back found per entity, what was planned for it and why, and
    the read-back guard's verdict."""
    drift = result.drift
    if drift is None:
        return []
    lines = [
        "",
        "Portal read back (reconciliation):",
        f"  {'entity':<14}{'delivered':>10}{'on portal':>10}{'missing':>9}{'changed':>9}"
        f"{'unexpected':>11}",
    ]
    for name, found in drift.entities.items():
        if found.in_state or found.on_portal:
            lines.append(
                f"  {name:<14}{found.in_state:>10}{found.on_portal:>10}"
                f"{len(found.missing):>9}{len(found.changed):>9}"
                f"{len(found.unexpected):>11}"
            )
    for name, found in drift.entities.items():
        for why, n in sorted(found.planned.items()):
            lines.append(f"  {name}: {why} — {n}")
        if found.reported:
            shown = ", ".join(found.reported[:EXAMPLES])
            lines.append(
                f"  {name}: {len(found.reported)} unexpected records the bridge never "
                f"sent and ASIOU does not have, left on the portal (keys {shown}"
                + (", …)" if len(found.reported) > EXAMPLES else ")")
            )
    if detail:
        lines += [f"  {c.entity} {c.key}: {c.op.value} ({c.reason})" for c in drift.samples]
    return lines + _portal_guard(result)


def _portal_guard(result: PlanResult) -> list[str]:
    if not result.portal_holds:
        return []
    if result.portal_approved:
        drift_id = result.drift.drift_id if result.drift is not None else ""
        return ["", f"Read-back guard: approved by an admin (reconciliation {drift_id})."]
    lines = ["", "Read-back guard: HELD. Nothing of this run is sent because"]
    lines += [f"  - {h.describe()}" for h in result.portal_holds]
    lines += [
        "  Check portal.url and portal.school first: a wrong portal looks like this.",
        "  If the portal really lost these records, approve sending them again:",
        f"    asiou-bridge approve {result.held_id}",
    ]
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
        "mode": plan.mode,
        "plan_id": plan.plan_id,
        "counts": {e: dict(c) for e, c in plan.counts.items()},
        "read": dict(plan.records_read),
        "held_back": {e: dict(c) for e, c in plan.holds.items()},
        "rejections": {
            "counts": dict(plan.rejection_counts),
            "sample": [
                {
                    "entity": r.entity,
                    "table": r.table,
                    "key": r.key,
                    "field": r.field,
                    "reason": r.reason,
                }
                for r in plan.rejections
            ],
        },
        "guard": {
            "held": result.held,
            "approved": result.approved,
            "approval_expired": result.approval_expired,
            "reasons": [h.describe() for h in result.guard_holds],
        },
        "failure": plan.failure,
        "reconcile": _reconcile_json(result, detail),
    }
    if detail:
        data["updates"] = [
            {
                "entity": c.entity,
                "key": c.key,
                "fields": {n: {"before": b, "after": a} for n, (b, a) in changed_fields(c).items()},
            }
            for c in plan.updates
        ]
    return json.dumps(data, ensure_ascii=False, indent=2)


def _reconcile_json(result: PlanResult, detail: bool) -> dict[str, Any] | None:
    drift = result.drift
    if drift is None:
        return None
    data: dict[str, Any] = {
        "entities": drift.summary(),
        "held": result.portal_held,
        "approved": result.portal_approved,
        "approve_id": drift.drift_id if result.portal_holds else None,
        "reasons": [h.describe() for h in result.portal_holds],
    }
    if detail:
        data["changes"] = [
            {"entity": c.entity, "key": c.key, "op": c.op.value, "reason": c.reason}
            for c in drift.samples
        ]
        data["left_unexpected"] = {n: d.reported for n, d in drift.entities.items() if d.reported}
    return data


def _config_error(exc: ConfigError) -> str:
    items = "\n".join(f"  - {p}" for p in exc.problems)
    plural = "s" if len(exc.problems) > 1 else ""
    return f"Configuration problem{plural} (nothing was done):\n{items}"


def _order_error(exc: SourceOrderError) -> str:
    return (
        f"The ASIOU table {exc.table} returned key {exc.key} after {exc.previous}, so "
        f"rows are not in key order. For text keys set source.key_collation in the "
        f"{exc.entity} mapping to a binary collation."
    )


def _source_error(exc: SourceError) -> str:
    return (
        f"The ASIOU database failed while {exc.operation}: {exc.detail}\n"
        "Nothing was deleted. Check source.url and that the database is reachable "
        "(`asiou-bridge check`)."
    )


def _state_error(exc: StateError) -> str:
    return (
        f"The state store failed while {exc.operation}: {exc.detail}\nWhat the portal "
        "acknowledged is recorded; check state.url and the disk, then run the command again."
    )


def _auth_error(exc: PortalAuthError) -> str:
    return (
        f"The portal refused our credentials (HTTP {exc.status}).\nCheck portal.client_id "
        "and the portal secret ($ASIOU_BRIDGE_PORTAL_SECRET, portal.secret_file or the "
        "credential portal-secret), then `asiou-bridge check`."
    )


def _unavailable(exc: PortalUnavailable) -> str:
    return (
        f"The portal kept failing: {exc.last} ({exc.attempts} attempts).\nWhat it "
        "acknowledged is recorded; run the command again later (the daemon retries by "
        "itself). `asiou-bridge check` tests the connection."
    )


def _portal_fatal(exc: PortalFatalError) -> str:
    return (
        f"The portal refused the request: HTTP {exc.status} {exc.kind}: {exc.detail}\n"
        "Retrying will not help; check portal.url and portal.school."
    )


def _busy(exc: LockBusy) -> str:
    return (
        f"Another sync is running ({exc.holder}).\nWait for it (run the command without "
        "--no-wait) or see `asiou-bridge status`."
    )


def _unknown_plan(exc: UnknownPlan) -> str:
    return (
        f"No held plan has the id {exc.plan_id}: nothing was approved.\nOnly a plan a guard "
        "held can be approved. `asiou-bridge status` shows the plan the last sync held, and "
        "`asiou-bridge plan` prints the id of a plan a guard would hold now."
    )


def _unknown_key(exc: UnknownKey) -> str:
    return (
        f"The ASIOU database has no {exc.entity} with key {exc.key}: nothing was sent.\n"
        f"Check the key (the ASIOU id); `asiou-bridge explain {exc.entity} KEY` traces one."
    )


def scope_text(entity: str, key: str, why: str | None) -> str | None:
    """What a resync of one pupil or class must tell the admin besides the counts: why nothing
    of it was sent (held back or rejected), as `explain` gives it."""
    if why is None:
        return None
    return (
        f"{entity} {key} was not sent: {why}.\n"
        f"`asiou-bridge explain {entity} {key}` shows the whole path."
    )


ERRORS: list[tuple[type[BridgeError], Callable[[Any], str]]] = [
    (UnknownPlan, _unknown_plan),
    (UnknownKey, _unknown_key),
    (ConfigError, _config_error),
    (SourceOrderError, _order_error),
    (SourceError, _source_error),
    (StateError, _state_error),
    (PortalAuthError, _auth_error),
    (PortalUnavailable, _unavailable),
    (PortalFatalError, _portal_fatal),
    (LockBusy, _busy),
]


def error_text(exc: BridgeError) -> str:
    """What went wrong, and what to do about it (the first renderer whose type matches)."""
    for kind, render in ERRORS:
        if isinstance(exc, kind):
            return render(exc)
    return f"Error: {exc}\nSee `asiou-bridge status` and the logs (journalctl -u asiou-bridge)."


def sync_text(outcome: SyncResult, entities: Iterable[str]) -> str:
    """What a sync delivered, what it held back or refused, and how it ended."""
    report, plan = outcome.delivery, outcome.plan
    lines = [
        f"Sync ({plan.plan.mode} run): {report.total} changes delivered in "
        f"{report.batches} batches",
        "",
    ]
    header = f"{'entity':<14}" + "".join(f"{op.value:>9}" for op in OPS) + f"{'refused':>9}"
    lines += [header, "-" * len(header)]
    for entity in entities:
        done = report.delivered.get(entity, Counter())
        if not done and not report.refused[entity]:
            continue
        lines.append(
            f"{entity:<14}"
            + "".join(f"{done.get(op.value, 0):>9}" for op in OPS)
            + f"{report.refused[entity]:>9}"
        )
    lines += _holds(plan) + _rejections(plan, detail=False) + _guard(plan)
    lines += _reconcile(plan, detail=False)
    lines += ["", _verdict(outcome)]
    return "\n".join(lines)


def _verdict(outcome: SyncResult) -> str:
    report = outcome.delivery
    if report.failure:
        return (
            f"FAILED: {report.failure}\nWhat was acknowledged is recorded; the next run "
            "sends the rest."
        )
    if report.refused:
        return (
            f"INCOMPLETE: the portal refused {sum(report.refused.values())} records "
            "(dead letters after repeated refusals; see `asiou-bridge status`)."
        )
    if report.skipped_dead:
        return (
            f"INCOMPLETE: {sum(report.skipped_dead.values())} dead letters were not sent "
            "(`asiou-bridge retry` sends them again)."
        )
    if outcome.plan.portal_held:
        return "HELD: nothing was sent; the reconciliation waits for approval (see above)."
    if outcome.plan.held:
        return "HELD: deletes, archives and closures wait for approval (see above)."
    return "OK: every planned change was delivered."


def sync_json(outcome: SyncResult) -> str:
    """The same outcome as JSON."""
    report = outcome.delivery
    data = json.loads(plan_json(outcome.plan))
    data["delivery"] = {
        "delivered": {e: dict(c) for e, c in report.delivered.items()},
        "refused": dict(report.refused),
        "skipped_dead_letters": dict(report.skipped_dead),
        "batches": report.batches,
        "failure": report.failure,
        "exit_code": outcome.exit_code,
    }
    return json.dumps(data, ensure_ascii=False, indent=2)


def status_text(found: Status) -> str:
    """``status`` for people."""
    lines = ["Last runs (newest first):"]
    for run in found.runs:
        ended = f"{run.ended_at:%Y-%m-%d %H:%M:%S}" if run.ended_at else "still running"
        who = f"manual by {run.user}" if run.trigger == "manual" else "scheduled"
        lines.append(
            f"  {run.started_at:%Y-%m-%d %H:%M:%S} → {ended}  {run.command:<12}"
            f"{run.mode:<12}{run.outcome or '-':<20}{who}, "
            f"{run.summary.get('delivered_total', 0)} delivered"
        )
    if not found.runs:
        lines.append("  none yet")
    lines += ["", "Next scheduled runs (when `asiou-bridge run` is running):"]
    lines += [
        f"  {job:<14}{when:%Y-%m-%d %H:%M}"
        for job, when in found.next_runs.items()
        if when is not None
    ]
    dead = [d for d in found.dead_letters if d.is_dead]
    lines += ["", f"Dead letters: {len(dead)} (retrying: {len(found.dead_letters) - len(dead)})"]
    lines += [
        f"  {d.entity} {d.key}: {d.kind or '-'}: {d.reason} ({d.attempts} refusals)"
        for d in found.dead_letters[:20]
    ]
    if dead:
        lines.append("  `asiou-bridge retry` sends them again.")
    lines.append(
        f"Batches sent but never answered: {found.in_doubt_batches}"
        + (" (the next run sends them again)" if found.in_doubt_batches else "")
    )
    if found.held_plan:
        lines += [
            "",
            "HELD: the last run's deletes, archives and closures wait for approval: "
            f"asiou-bridge approve {found.held_plan}",
        ]
        lines += _held_lines(found)
    return "\n".join(lines + _erasures_due(found))


def _erasures_due(found: Status) -> list[str]:
    if not found.erasures_due:
        return []
    lines = [
        "",
        "Consent withdrawn, not yet erased (152-ФЗ ст. 21 ч. 5: within 30 days; "
        "`asiou-bridge erase pupil KEY`):",
    ]
    for due in found.erasures_due:
        left = (
            f"OVERDUE by {-due.days_left} days" if due.is_overdue else f"{due.days_left} days left"
        )
        lines.append(
            f"  pupil {due.pupil}: withdrawn {due.withdrawn}, deadline {due.deadline}, {left}"
        )
    return lines


def status_json(found: Status) -> str:
    """``status`` as JSON."""
    return json.dumps(
        {
            "runs": [
                {
                    "run_id": r.run_id,
                    "trigger": r.trigger,
                    "user": r.user,
                    "command": r.command,
                    "mode": r.mode,
                    "started_at": r.started_at,
                    "ended_at": r.ended_at,
                    "outcome": r.outcome,
                    "exit_code": r.exit_code,
                    "summary": r.summary,
                }
                for r in found.runs
            ],
            "next_runs": found.next_runs,
            "dead_letters": [
                {
                    "entity": d.entity,
                    "key": d.key,
                    "attempts": d.attempts,
                    "kind": d.kind,
                    "reason": d.reason,
                    "status": d.status,
                }
                for d in found.dead_letters
            ],
            "in_doubt_batches": found.in_doubt_batches,
            "held_plan": found.held_plan,
            "held_plan_detail": None
            if found.held is None
            else {"held_at": found.held.held_at, "summary": found.held.summary},
            "approval": None
            if found.approval is None
            else {
                "by": found.approval.by,
                "at": found.approval.at,
                "expired": found.approval_expired,
            },
            "erasures_due": [
                {
                    "pupil": d.pupil,
                    "withdrawn": d.withdrawn,
                    "deadline": d.deadline,
                    "days_left": d.days_left,
                    "overdue": d.is_overdue,
                }
                for d in found.erasures_due
            ],
        },
        ensure_ascii=False,
        indent=2,
        default=str,
    )


def _held_lines(found: Status) -> list[str]:
    lines = []
    if found.held is not None:
        lines.append(f"  held since {found.held.held_at:%Y-%m-%d %H:%M} UTC: {found.held.summary}")
    approval = found.approval
    if approval is not None and found.approval_expired:
        lines.append(
            f"  the approval by {approval.by} on {approval.at:%Y-%m-%d %H:%M} UTC "
            "expired (guard.approval_valid_hours): approve it again"
        )
    elif approval is not None:
        lines.append(
            f"  approved by {approval.by} on {approval.at:%Y-%m-%d %H:%M} UTC: the "
            "next sync sends it if the plan is still the same"
        )
    return lines


def explain_text(found: Explanation) -> str:
    """``explain``: the record's path, one step a line."""
    name = f"{found.entity} {found.key}"
    if found.erased is not None:
        return (
            f"{name}: erased from the portal on {found.erased['erased_at']:%Y-%m-%d %H:%M} "
            f"by {found.erased['erased_by']}; never exported again."
        )
    lines = [f"{name}:"]
    if not found.found:
        lines.append(
            "  source: not found in ASIOU (no row with this key, or its key could not be read)"
        )
    elif found.rejection is not None:
        r = found.rejection
        lines.append(f"  source: found in table {r.table}")
        lines.append(f"  mapping: REJECTED, field {r.field}: {r.reason} (fix it in ASIOU)")
    else:
        lines.append("  source: found; mapping: ok")
        lines.append(
            f"  gate: HELD BACK: {found.hold} ({HOLD_WORDS.get(found.hold, '')})"
            if found.hold
            else "  gate: allowed to leave"
        )
    lines.append(_explain_plan(found))
    lines += _explain_delivery(found)
    return "\n".join(lines)


HOLD_WORDS = {
    "no_consent": "no written consent to publish personal data, §3.1.2",
    "after_withdrawal": "dated after the pupil left that class, §3.1.2",
    "not_enrolled": "dated before the pupil joined that class",
    "grade_1_mark": "no marks in grade 1, §3.2.4.11",
    "consent_unclear": "the consent value is not a clear yes (only 1/true/yes/да "
    "are), so no consent, §3.1.2",
    "pupil_row_rejected": "the pupil's own row was rejected (see the rejections): "
    "nothing of the pupil leaves until it is fixed",
    "enrollment_row_rejected": "an enrolment row of the pupil was rejected (see the "
    "rejections): nothing of the pupil leaves until it is "
    "fixed",
    "guardian_link_row_rejected": "a guardian-link row of the pupil was rejected (see "
    "the rejections): nothing of the pupil leaves until "
    "it is fixed",
}


def _explain_plan(found: Explanation) -> str:
    change = found.change
    if change is not None:
        why = f" ({change.reason})" if change.reason else ""
        return f"  plan: the next sync will {change.op.value} it{why}"
    if found.found and found.rejection is None and found.hold is None:
        return "  plan: nothing to send: the portal has the current version"
    return "  plan: nothing to send"


def _explain_delivery(found: Explanation) -> list[str]:
    lines = []
    done = found.delivered
    if done is None or done["status"] == "deleted":
        lines.append(
            "  delivered: never"
            if done is None
            else f"  delivered: deleted from the portal on {done['updated_at']:%Y-%m-%d %H:%M}"
        )
    else:
        lines.append(
            f"  delivered: first {done['first_delivered_at']:%Y-%m-%d %H:%M}, last "
            f"{done['updated_at']:%Y-%m-%d %H:%M} ({done['status']})"
        )
    letter = found.dead_letter
    if letter is not None:
        lines.append(
            f"  portal answered: refused {letter.attempts}×: {letter.kind}: "
            f"{letter.reason}" + (" (dead letter; `asiou-bridge retry`)" if letter.is_dead else "")
        )
    else:
        lines.append("  portal answered: accepted" if done else "  portal answered: -")
    return lines + _explain_check(found)


def _explain_check(found: Explanation) -> list[str]:
    """What the last reconciliation found on the portal for this record."""
    check, done = found.portal_check, found.delivered
    if check is None:
        return ["  portal check: never read back (`asiou-bridge sync --reconcile`)"]
    finding, at = check
    when = f"{at:%Y-%m-%d %H:%M}"
    if finding == "matches":
        if done is None or done["status"] == "deleted" or done["first_delivered_at"] > at:
            return [f"  portal check: not checked (last read back {when})"]
        return [f"  portal check: {when}: the portal had the version the bridge sent"]
    words = {
        "missing": "MISSING on the portal",
        "changed": "CHANGED on the portal (another version than the bridge sent)",
        "unexpected": "on the portal, though the bridge had not sent it (or had deleted it)",
    }.get(finding, finding)
    since = done is not None and done["updated_at"] >= at
    return [f"  portal check: {when}: {words}" + ("; sent again since" if since else "")]


def explain_json(found: Explanation) -> str:
    """``explain`` as JSON."""
    return json.dumps(
        {
            "entity": found.entity,
            "key": found.key,
            "found": found.found,
            "rejection": None
            if found.rejection is None
            else {
                "table": found.rejection.table,
                "field": found.rejection.field,
                "reason": found.rejection.reason,
            },
            "held_back": found.hold,
            "planned": None
            if found.change is None
            else {"op": found.change.op.value, "reason": found.change.reason},
            "delivered": found.delivered,
            "dead_letter": None
            if found.dead_letter is None
            else {
                "attempts": found.dead_letter.attempts,
                "kind": found.dead_letter.kind,
                "reason": found.dead_letter.reason,
                "status": found.dead_letter.status,
            },
            "erased": found.erased,
            "portal_check": None
            if found.portal_check is None
            else {"finding": found.portal_check[0], "checked_at": found.portal_check[1]},
        },
        ensure_ascii=False,
        indent=2,
        default=str,
    )


def erase_text(done: Erasure) -> str:
    """``erase``: what was deleted, and the act kept."""
    counts = ", ".join(f"{e} {n}" for e, n in done.deleted.items()) or "nothing"
    lines = [
        f"Pupil {done.pupil} erased from the portal: {counts}.",
        "The erasure is recorded (time, user, ground, counts); the pupil is never exported again.",
        f"Print the act: asiou-bridge erase act {done.pupil}",
    ]
    if done.refused:
        lines.append(
            f"INCOMPLETE: the portal refused {sum(done.refused.values())} deletes; "
            "run the command again."
        )
    return "\n".join(lines)


ENTITY_WORDS = {
    "pupil": "обучающийся",
    "enrollment": "зачисления в классы",
    "group_member": "членство в группах",
    "guardian_link": "связи с законными представителями",
    "guardian": "законные представители",
    "mark": "отметки",
    "absence": "пропуски",
    "period_mark": "итоговые отметки",
}
"""The entities an erasure deletes, as the act names them."""


def erasure_act_text(act: Mapping[str, Any], entities: Iterable[str]) -> str:
    """The erasure act as a document in Russian: who, when, on what ground, what was deleted
    per entity and what the portal acknowledged. Ids only: no names, no birth dates."""
    planned, acked = act["planned"], act["acknowledged"]
    refused, earlier = act["refused"], act["earlier"]
    done = act["completed_at"]
    lines = [
        "АКТ",
        "об уничтожении персональных данных обучающегося на портале "
        "электронного дневника (152-ФЗ, ст. 21)",
        "",
        f"Обучающийся: идентификатор {act['pupil_key']} (ключ записи в АСИОУ)",
        f"Основание: {act['ground'] or 'не указано (акт прежней версии)'}",
        f"Удаление начато: {_moment(act['erased_at'])}",
        f"Удаление завершено: {_moment(done) if done else 'НЕ ЗАВЕРШЕНО'}",
        f"Выполнил: {act['erased_by']} (пользователь ОС)",
        f"Запуск: {act['run_id'] or '-'}",
        "",
        f"{'данные':<36}{'удалить':>9}{'подтвердил портал':>19}{'отказ':>7}{'удалено ранее':>15}",
    ]
    names = [e for e in entities if e in set(planned) | set(earlier) | set(refused)]
    for entity in names:
        word = f"{ENTITY_WORDS.get(entity, entity)} ({entity})"
        lines.append(
            f"{word:<36}{planned.get(entity, 0):>9}{acked.get(entity, 0):>19}"
            f"{refused.get(entity, 0):>7}{earlier.get(entity, 0):>15}"
        )
    lines += [
        "",
        f"Итого удалений подтверждено порталом: {sum(acked.values())} из {sum(planned.values())}.",
        "Удалённая запись не хранится на портале: остаются только её ключ и время удаления.",
        "«Удалено ранее» — записи, снятые с портала до акта (например, при отзыве согласия).",
        "Обучающийся больше никогда не выгружается на портал.",
        "Акт хранится в школе; персональные данные (ФИО, дата рождения, контакты, "
        "отметки) в нём не приводятся.",
    ]
    if not done:
        lines += [
            "",
            "ВНИМАНИЕ: портал отказал в части удалений; повторите "
            f"`asiou-bridge erase pupil {act['pupil_key']}`.",
        ]
    return "\n".join(lines)


def _moment(value: object) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return f"{value:%d.%m.%Y %H:%M}" + (" UTC" if value.tzinfo is not None else "")
    return "-"
