"""Plans and sync results: the table of counts, holds, rejections, the guards' verdicts and the
portal read-back of a plan, what a sync delivered, and the JSON forms of both.

A sync's report reuses the plan's sections (holds, rejections, guard, reconciliation), so both
live here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.cli.render.holds import guard_hold_text, portal_hold_text
from bridge.cli.render.rejections import rejection_words
from bridge.core.model import Change, HoldReason, Op, changed_fields
from bridge.core.plan import rejection_group
from bridge.i18n import N_, _, ngettext
from bridge.service.engine import PlanResult, SyncResult

OPS = (Op.CREATE, Op.UPDATE, Op.ARCHIVE, Op.DELETE)
EXAMPLES = 3
OP_WORDS = {
    Op.CREATE.value: N_("create"),
    Op.UPDATE.value: N_("update"),
    Op.ARCHIVE.value: N_("archive"),
    Op.DELETE.value: N_("delete"),
}
"""The column heading of each operation (translated where printed)."""
MODE_WORDS = {"full": N_("full"), "incremental": N_("incremental")}
"""A run's mode, as a heading names it (translated where printed)."""
PLAN_HEADINGS = {
    "full": N_("Plan of a full run (a preview: nothing was sent or recorded)"),
    "incremental": N_("Plan of an incremental run (a preview: nothing was sent or recorded)"),
}
"""The heading of a plan, by mode (whole sentences: a language declines the mode)."""


def heading(*cells: tuple[str, int]) -> str:
    """A table's column headings: each word (marked ``N_``) translated and aligned to its
    width, a negative width aligning left."""
    return "".join(
        _(word).ljust(-width) if width < 0 else _(word).rjust(width) for word, width in cells
    )


def _op_columns() -> str:
    return heading(*((OP_WORDS[op.value], 9) for op in OPS))


def _mode(mode: str) -> str:
    return _(MODE_WORDS[mode]) if mode in MODE_WORDS else mode


def plan_text(result: PlanResult, entities: Iterable[str], detail: bool = False) -> str:
    """A reviewable plan: a table of counts, holds by reason, rejections, the guard's verdict."""
    plan = result.plan
    lines = [
        _(PLAN_HEADINGS[plan.mode])
        if plan.mode in PLAN_HEADINGS
        else _("Plan of a {mode} run (a preview: nothing was sent or recorded)").format(
            mode=plan.mode
        ),
        "",
    ]
    header = heading((N_("entity"), -14), (N_("read"), 9)) + _op_columns()
    lines += [
        header + heading((N_("held"), 9), (N_("rejected"), 10)),
        "-" * (len(header) + 19),
    ]
    for entity in entities:
        counts = plan.counts.get(entity, Counter())
        held = sum(plan.holds.get(entity, {}).values())
        row = f"{entity:<14}{plan.records_read[entity]:>9}"
        row += "".join(f"{counts.get(op.value, 0):>9}" for op in OPS)
        lines.append(row + f"{held:>9}{plan.rejection_counts[entity]:>10}")
    lines += _holds(result) + _not_supported(result) + _rejections(result, detail)
    lines += _guard(result) + _reconcile(result, detail)
    if detail:
        lines += _details(plan.updates, plan.sample_limit)
    if plan.failure:
        lines += [
            "",
            _("The read failed midway, so no deletes were planned: {failure}").format(
                failure=plan.failure
            ),
        ]
    return "\n".join(lines)


HOLD_LABELS: dict[str, str] = {
    HoldReason.NO_CONSENT: N_("no_consent"),
    HoldReason.CONSENT_UNCLEAR: N_("consent_unclear"),
    HoldReason.PUPIL_ROW_REJECTED: N_("pupil_row_rejected"),
    HoldReason.ENROLLMENT_ROW_REJECTED: N_("enrollment_row_rejected"),
    HoldReason.GUARDIAN_LINK_ROW_REJECTED: N_("guardian_link_row_rejected"),
    HoldReason.AFTER_WITHDRAWAL: N_("after_withdrawal"),
    HoldReason.NOT_ENROLLED: N_("not_enrolled"),
    HoldReason.GRADE_1_MARK: N_("grade_1_mark"),
    HoldReason.NOT_MATCHED: N_("not_matched"),
}
"""A hold reason as the table of held-back records names it: the code itself in English (what
the logs, the JSON and the docs say), a few words and the code in another language."""


def reason_table(
    heading: str,
    by_entity: Mapping[str, Mapping[str, int]],
    labels: Mapping[str, str] | None = None,
) -> list[str]:
    """A blank line, ``heading`` and a line per entity with each reason (its label, if
    ``labels`` has one, translated) and its count, in the order of the reasons; nothing when
    there is nothing to count."""
    if not by_entity:
        return []
    named = labels or {}
    lines = ["", heading]
    for entity, reasons in by_entity.items():
        text = ", ".join(
            f"{_(named[reason]) if reason in named else reason} {n}"
            for reason, n in sorted(reasons.items())
        )
        lines.append(f"  {entity:<14}{text}")
    return lines


def _holds(result: PlanResult) -> list[str]:
    return reason_table(_("Held back (never exported):"), result.plan.holds, HOLD_LABELS)


def _not_supported(result: PlanResult) -> list[str]:
    return reason_table(
        _("Not sent: this portal does not take them (planned and counted again each run):"),
        result.plan.not_supported,
    )


def _rejections(result: PlanResult, detail: bool) -> list[str]:
    plan = result.plan
    if not plan.rejections:
        return []
    total = sum(plan.rejection_counts.values())
    lines = [
        "",
        _("Rejected rows: {total} (fix them in ASIOU; every other record is planned)").format(
            total=total
        ),
    ]
    if detail:
        return lines + [
            "  "
            + _("{entity}: table {table}, key {key}, field {field}: {reason}").format(
                entity=r.entity,
                table=r.table,
                key=r.key or "?",
                field=r.field,
                reason=rejection_words(r.reason),
            )
            for r in plan.rejections
        ]
    examples: dict[tuple[str, str, str, str], list[str]] = {}
    for r in plan.rejections:
        examples.setdefault(rejection_group(r), []).append(r.key or "?")
    for group, count in plan.rejection_groups.items():
        entity, table, name, kind = group
        keys = examples.get(group, [])
        shown = ", ".join(keys[:EXAMPLES]) + (", …" if count > EXAMPLES else "")
        lines.append(
            "  "
            + _("{entity} ({table}.{field}): {kind} — {count}× (keys {keys})").format(
                entity=entity,
                table=table,
                field=name,
                kind=rejection_words(kind),
                count=count,
                keys=shown,
            )
        )
    lines.append("  " + _("(`plan --detail` lists the rows one by one)"))
    return lines


def _guard(result: PlanResult) -> list[str]:
    if not result.guard_holds:
        return []
    if result.approved:
        return [
            "",
            _(
                "Guard: deletes, archives and closures approved by an admin (plan {plan_id})."
            ).format(plan_id=result.plan.plan_id),
        ]
    lines = [
        "",
        _(
            "Guard: HELD. The deletes, archives and membership closures of this plan will "
            "not be sent because it"
        ),
    ]
    lines += [f"  - {guard_hold_text(h)}" for h in result.guard_holds]
    if result.approval_expired:
        lines.append("  " + _("An approval of this plan expired (guard.approval_valid_hours)."))
    lines += [
        "  " + _("Check ASIOU first: a partial export or a wrong mapping looks like this."),
        "  " + _("If the changes are right, approve them:"),
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
        _("Portal read back (reconciliation):"),
        "  "
        + heading(
            (N_("entity"), -14),
            (N_("delivered"), 10),
            (N_("on portal"), 10),
            (N_("missing"), 9),
            (N_("changed"), 9),
            (N_("unexpected"), 11),
        ),
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
            more = ", …" if len(found.reported) > EXAMPLES else ""
            lines.append(
                f"  {name}: "
                + ngettext(
                    "{n} unexpected record the bridge never sent and ASIOU does not have, "
                    "left on the portal (keys {keys})",
                    "{n} unexpected records the bridge never sent and ASIOU does not have, "
                    "left on the portal (keys {keys})",
                    len(found.reported),
                ).format(n=len(found.reported), keys=shown + more)
            )
    if detail:
        lines += [f"  {c.entity} {c.key}: {c.op.value} ({c.reason})" for c in drift.samples]
    return lines + _portal_guard(result)


def _portal_guard(result: PlanResult) -> list[str]:
    if not result.portal_holds:
        return []
    if result.portal_approved:
        drift_id = result.drift.drift_id if result.drift is not None else ""
        return [
            "",
            _("Read-back guard: approved by an admin (reconciliation {drift_id}).").format(
                drift_id=drift_id
            ),
        ]
    lines = ["", _("Read-back guard: HELD. Nothing of this run is sent because")]
    lines += [f"  - {portal_hold_text(h)}" for h in result.portal_holds]
    lines += [
        "  " + _("Check portal.url and portal.school first: a wrong portal looks like this."),
        "  " + _("If the portal really lost these records, approve sending them again:"),
        f"    asiou-bridge approve {result.held_id}",
    ]
    return lines


def _details(updates: list[Change], limit: int) -> list[str]:
    lines = ["", _("Updates, field by field (first {limit} per entity):").format(limit=limit)]
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
        "not_supported": {e: dict(c) for e, c in plan.not_supported.items()},
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


def scope_text(entity: str, key: str, why: str | None) -> str | None:
    """What a resync of one pupil or class must tell the admin besides the counts: why nothing
    of it was sent (held back or rejected), as `explain` gives it."""
    if why is None:
        return None
    return _(
        "{entity} {key} was not sent: {why}.\n"
        "`asiou-bridge explain {entity} {key}` shows the whole path."
    ).format(entity=entity, key=key, why=why)


def sync_text(outcome: SyncResult, entities: Iterable[str]) -> str:
    """What a sync delivered, what it held back or refused, and how it ended."""
    report, plan = outcome.delivery, outcome.plan
    lines = [
        _("Sync ({mode} run): {changes} delivered in {batches}").format(
            mode=_mode(plan.plan.mode),
            changes=ngettext("{n} change", "{n} changes", report.total).format(n=report.total),
            batches=ngettext("{n} batch", "{n} batches", report.batches).format(n=report.batches),
        ),
        "",
    ]
    header = heading((N_("entity"), -14)) + _op_columns() + heading((N_("refused"), 9))
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
    lines += _holds(plan) + _not_supported(plan) + _rejections(plan, detail=False)
    lines += _guard(plan)
    lines += _reconcile(plan, detail=False)
    lines += ["", _verdict(outcome)]
    return "\n".join(lines)


def _verdict(outcome: SyncResult) -> str:
    report = outcome.delivery
    if report.failure:
        return _(
            "FAILED: {failure}\nWhat was acknowledged is recorded; the next run sends the rest."
        ).format(failure=report.failure)
    if report.refused:
        refused = sum(report.refused.values())
        return ngettext(
            "INCOMPLETE: the portal refused {n} record "
            "(dead letters after repeated refusals; see `asiou-bridge status`).",
            "INCOMPLETE: the portal refused {n} records "
            "(dead letters after repeated refusals; see `asiou-bridge status`).",
            refused,
        ).format(n=refused)
    if report.skipped_dead:
        skipped = sum(report.skipped_dead.values())
        return ngettext(
            "INCOMPLETE: {n} dead letter was not sent (`asiou-bridge retry` sends it again).",
            "INCOMPLETE: {n} dead letters were not sent (`asiou-bridge retry` sends them again).",
            skipped,
        ).format(n=skipped)
    if outcome.plan.portal_held:
        return _("HELD: nothing was sent; the reconciliation waits for approval (see above).")
    if outcome.plan.held:
        return _("HELD: deletes, archives and closures wait for approval (see above).")
    return _("OK: every planned change was delivered.")


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
