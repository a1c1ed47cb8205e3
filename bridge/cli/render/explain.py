"""``explain``: one record's path from ASIOU to the portal (source, mapping, gate, plan,
delivery, the portal's answer and the last read-back), for people and as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.service.admin import Explanation


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
