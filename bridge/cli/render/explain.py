"""``explain``: one record's path from ASIOU to the portal (source, mapping, gate, plan,
delivery, the portal's answer and the last read-back), for people and as JSON."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from bridge.cli.render.rejections import rejection_words
from bridge.i18n import N_, _

if TYPE_CHECKING:
    from bridge.service.admin import Explanation


def explain_text(found: Explanation) -> str:
    """``explain``: the record's path, one step a line."""
    name = f"{found.entity} {found.key}"
    if found.erased is not None:
        return _(
            "{record}: erased from the portal on {at} by {user}; never exported again."
        ).format(
            record=name,
            at=f"{found.erased['erased_at']:%Y-%m-%d %H:%M}",
            user=found.erased["erased_by"],
        )
    lines = [f"{name}:"]
    if not found.found:
        lines.append(
            "  "
            + _("source: not found in ASIOU (no row with this key, or its key could not be read)")
        )
    elif found.rejection is not None:
        r = found.rejection
        lines.append("  " + _("source: found in table {table}").format(table=r.table))
        lines.append(
            "  "
            + _("mapping: REJECTED, field {field}: {reason} (fix it in ASIOU)").format(
                field=r.field, reason=rejection_words(r.reason)
            )
        )
    else:
        lines.append("  " + _("source: found; mapping: ok"))
        lines.append("  " + _gate(found.hold))
    lines.append(_explain_plan(found))
    lines += _explain_delivery(found)
    return "\n".join(lines)


HOLD_WORDS = {
    "no_consent": N_("no written consent to publish personal data, §3.1.2"),
    "after_withdrawal": N_("dated after the pupil left that class, §3.1.2"),
    "not_enrolled": N_("dated before the pupil joined that class"),
    "grade_1_mark": N_("no marks in grade 1, §3.2.4.11"),
    "consent_unclear": N_(
        "the consent value is not a clear yes (only 1/true/yes/да are), so no consent, §3.1.2"
    ),
    "pupil_row_rejected": N_(
        "the pupil's own row was rejected (see the rejections): nothing of the pupil leaves "
        "until it is fixed"
    ),
    "enrollment_row_rejected": N_(
        "an enrolment row of the pupil was rejected (see the rejections): nothing of the "
        "pupil leaves until it is fixed"
    ),
    "guardian_link_row_rejected": N_(
        "a guardian-link row of the pupil was rejected (see the rejections): nothing of the "
        "pupil leaves until it is fixed"
    ),
    "not_matched": N_(
        "the portal has no record this pupil is matched with (missing, ambiguous or rejected): "
        "`asiou-bridge match list`"
    ),
}
"""Why the gate holds a record back, by hold reason (English ids: translate with ``_``)."""


def hold_words(hold: str) -> str:
    """Why the gate holds a record back, in the active language ('' for an unknown reason)."""
    return _(HOLD_WORDS[hold]) if hold in HOLD_WORDS else ""


def _gate(hold: str | None) -> str:
    if not hold:
        return _("gate: allowed to leave")
    return _("gate: HELD BACK: {hold} ({why})").format(hold=hold, why=hold_words(hold))


def _explain_plan(found: Explanation) -> str:
    change = found.change
    if change is not None:
        why = f" ({change.reason})" if change.reason else ""
        return "  " + _(PLAN_WORDS[change.op.value]) + why
    if found.found and found.rejection is None and found.hold is None:
        return "  " + _("plan: nothing to send: the portal has the current version")
    return "  " + _("plan: nothing to send")


PLAN_WORDS = {
    "create": N_("plan: the next sync will create it"),
    "update": N_("plan: the next sync will update it"),
    "archive": N_("plan: the next sync will archive it"),
    "delete": N_("plan: the next sync will delete it"),
}
"""What the next sync will do with the record, by operation (translated where printed)."""


def _explain_delivery(found: Explanation) -> list[str]:
    lines = []
    done = found.delivered
    if done is None or done["status"] == "deleted":
        lines.append(
            "  " + _("delivered: never")
            if done is None
            else "  "
            + _("delivered: deleted from the portal on {at}").format(
                at=f"{done['updated_at']:%Y-%m-%d %H:%M}"
            )
        )
    else:
        lines.append(
            "  "
            + _("delivered: first {first}, last {last} ({status})").format(
                first=f"{done['first_delivered_at']:%Y-%m-%d %H:%M}",
                last=f"{done['updated_at']:%Y-%m-%d %H:%M}",
                status=done["status"],
            )
        )
    letter = found.dead_letter
    if letter is not None:
        lines.append(
            "  "
            + _("portal answered: refused {n}×: {kind}: {reason}").format(
                n=letter.attempts, kind=letter.kind, reason=letter.reason
            )
            + (" " + _("(dead letter; `asiou-bridge retry`)") if letter.is_dead else "")
        )
    else:
        lines.append("  " + (_("portal answered: accepted") if done else _("portal answered: -")))
    return lines + _explain_check(found)


def _explain_check(found: Explanation) -> list[str]:
    """What the last reconciliation found on the portal for this record."""
    check, done = found.portal_check, found.delivered
    if check is None:
        return ["  " + _("portal check: never read back (`asiou-bridge sync --reconcile`)")]
    finding, at = check
    when = f"{at:%Y-%m-%d %H:%M}"
    if finding == "matches":
        if done is None or done["status"] == "deleted" or done["first_delivered_at"] > at:
            return ["  " + _("portal check: not checked (last read back {when})").format(when=when)]
        return [
            "  "
            + _("portal check: {when}: the portal had the version the bridge sent").format(
                when=when
            )
        ]
    words = _(FINDING_WORDS[finding]) if finding in FINDING_WORDS else finding
    since = done is not None and done["updated_at"] >= at
    return [
        "  "
        + _("portal check: {when}: {finding}").format(when=when, finding=words)
        + (_("; sent again since") if since else "")
    ]


FINDING_WORDS = {
    "missing": N_("MISSING on the portal"),
    "changed": N_("CHANGED on the portal (another version than the bridge sent)"),
    "unexpected": N_("on the portal, though the bridge had not sent it (or had deleted it)"),
}
"""What a read-back found for a record, by finding (translated where printed)."""


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
