"""``status``: the last runs, the next scheduled ones, dead letters, the held plan and its
approval, and the erasures due, for people and as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bridge.cli.render.plans import reason_table
from bridge.i18n import _, ngettext

if TYPE_CHECKING:
    from bridge.service.admin import Status


def status_text(found: Status) -> str:
    """``status`` for people."""
    lines = [_("Last runs (newest first; times in {zone}):").format(zone=_zone())]
    for run in found.runs:
        ended = _when(run.ended_at) if run.ended_at else _("still running")
        who = (
            _("manual by {user}").format(user=run.user)
            if run.trigger == "manual"
            else _("scheduled")
        )
        delivered = run.summary.get("delivered_total", 0)
        lines.append(
            f"  {_when(run.started_at)} → {ended}  {run.command:<12}"
            f"{run.mode:<12}{run.outcome or '-':<20}{who}, "
            + ngettext("{n} delivered", "{n} delivered", delivered).format(n=delivered)
        )
        why = _why(run.outcome, run.summary)
        if why:
            lines.append("      " + _("why: {why}").format(why=why))
    if not found.runs:
        lines.append("  " + _("none yet"))
    lines += ["", _("Next scheduled runs (when `asiou-bridge run` is running):")]
    lines += [
        f"  {job:<14}{_when(when)}" for job, when in found.next_runs.items() if when is not None
    ]
    dead = [d for d in found.dead_letters if d.is_dead]
    retrying = len(found.dead_letters) - len(dead)
    lines += [
        "",
        _("Dead letters: {dead} (retrying: {retrying})").format(dead=len(dead), retrying=retrying),
    ]
    lines += [
        f"  {d.entity} {d.key}: {d.kind or '-'}: {d.reason} ("
        + ngettext("{n} refusal", "{n} refusals", d.attempts).format(n=d.attempts)
        + ")"
        for d in found.dead_letters[:20]
    ]
    if dead:
        lines.append("  " + _("`asiou-bridge retry` sends them again."))
    lines.append(
        _("Batches sent but never answered: {n}").format(n=found.in_doubt_batches)
        + (" " + _("(the next run sends them again)") if found.in_doubt_batches else "")
    )
    if found.held_plan:
        lines += [
            "",
            _(
                "HELD: the last run's deletes, archives and closures wait for approval: "
                "asiou-bridge approve {plan_id}"
            ).format(plan_id=found.held_plan),
        ]
        lines += _held_lines(found)
    return "\n".join(lines + _not_supported(found) + _erasures_due(found))


def _when(moment: datetime) -> str:
    """``moment`` in the machine's time zone, with its offset (the run history keeps UTC; a
    naive time from it is UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    local = aware.astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


def _iso(moment: datetime) -> str:
    """``moment`` as ISO 8601 in the machine's time zone, with its offset."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone().isoformat(timespec="seconds")


def _zone() -> str:
    """The machine's time zone, as ``status`` shows it (``MSK, UTC+03:00``)."""
    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.tzname()}, UTC{offset[:3]}:{offset[3:]}"


def _why(outcome: str | None, summary: Mapping[str, Any]) -> str:
    """What stopped a run that did not end ok: its error and reason from the history."""
    if outcome in (None, "ok"):
        return ""
    reason, error = summary.get("reason"), summary.get("error")
    if outcome == "held":
        return _("deletes, archives or closures wait for approval (see HELD below)")
    parts = [str(p) for p in (error, reason) if p]
    return ": ".join(parts)


def _not_supported(found: Status) -> list[str]:
    """What the last sync could not send because the portal does not take it (a mark's
    correction or retraction on a diary that allows neither): it stays to be done by hand."""
    last = next((r for r in found.runs if r.command in {"sync", "resync", "retry"}), None)
    refused = last.summary.get("not_supported") if last is not None else None
    return reason_table(
        _("Not sent by the last sync: this portal does not take them (do them by hand):"),
        refused or {},
    )


def _erasures_due(found: Status) -> list[str]:
    if not found.erasures_due:
        return []
    lines = [
        "",
        _(
            "Consent withdrawn, not yet erased (152-FZ art. 21 part 5: within 30 days; "
            "`asiou-bridge erase pupil KEY`):"
        ),
    ]
    for due in found.erasures_due:
        left = (
            ngettext("OVERDUE by {n} day", "OVERDUE by {n} days", -due.days_left)
            if due.is_overdue
            else ngettext("{n} day left", "{n} days left", due.days_left)
        ).format(n=abs(due.days_left))
        lines.append(
            "  "
            + _("pupil {pupil}: withdrawn {withdrawn}, deadline {deadline}, {left}").format(
                pupil=due.pupil, withdrawn=due.withdrawn, deadline=due.deadline, left=left
            )
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
                    "started_at": _iso(r.started_at),
                    "ended_at": _iso(r.ended_at) if r.ended_at else None,
                    "outcome": r.outcome,
                    "exit_code": r.exit_code,
                    "summary": r.summary,
                }
                for r in found.runs
            ],
            "next_runs": {
                job: _iso(when) if when is not None else None
                for job, when in found.next_runs.items()
            },
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
        lines.append(
            "  "
            + _("held since {at} UTC: {summary}").format(
                at=f"{found.held.held_at:%Y-%m-%d %H:%M}", summary=found.held.summary
            )
        )
    approval = found.approval
    if approval is not None and found.approval_expired:
        lines.append(
            "  "
            + _(
                "the approval by {user} on {at} UTC expired (guard.approval_valid_hours): "
                "approve it again"
            ).format(user=approval.by, at=f"{approval.at:%Y-%m-%d %H:%M}")
        )
    elif approval is not None:
        lines.append(
            "  "
            + _(
                "approved by {user} on {at} UTC: the next sync sends it if the plan is "
                "still the same"
            ).format(user=approval.by, at=f"{approval.at:%Y-%m-%d %H:%M}")
        )
    return lines
