"""Why a guard holds a plan, for people: the facts of a ``GuardHold`` (deletes, archives and
closures of an entity or a class) or a ``PortalHold`` (a portal mostly missing), worded in the
active language. In English the words are those of their ``describe()``, which the JSON keeps
(``guard.reasons``): tools read one wording whatever the admin's language."""

from __future__ import annotations

from bridge.core.guard import GuardHold
from bridge.core.reconcile import PortalHold
from bridge.i18n import _, ngettext


def guard_hold_text(hold: GuardHold) -> str:
    """One line: what the held plan would do to the entity (or the class), and how much."""
    if hold.class_key is not None:
        if not hold.archives and not hold.closures:
            return _("would delete all {n} {entity} records of class {class_key}").format(
                n=hold.deletes, entity=hold.entity, class_key=hold.class_key
            )
        left = (
            _("no pupil is left in it")
            if hold.entity == "pupil"
            else _("every one still open there")
        )
        return _("would {verbs} {entity} records of class {class_key}: {left}").format(
            verbs=_verbs(hold), entity=hold.entity, class_key=hold.class_key, left=left
        )
    share = 100.0 * hold.changes / hold.total if hold.total else 100.0
    return ngettext(
        "would {verbs} of {total} {entity} records ({share} %)",
        "would {verbs} of {total} {entity} records ({share} %)",
        hold.total,
    ).format(verbs=_verbs(hold), total=hold.total, entity=hold.entity, share=f"{share:.1f}")


def _verbs(hold: GuardHold) -> str:
    done = (
        (hold.deletes, _("delete {n}")),
        (hold.archives, _("archive {n}")),
        (hold.closures, _("close {n}")),
    )
    words = [verb.format(n=n) for n, verb in done if n]
    return _(" and ").join(words) or _("delete {n}").format(n=0)


def portal_hold_text(hold: PortalHold) -> str:
    """One line: what the read-back found missing on the portal."""
    if hold.entity is None:
        return ngettext(
            "the portal holds no records at all, though the state says {n} were delivered",
            "the portal holds no records at all, though the state says {n} were delivered",
            hold.total,
        ).format(n=hold.total)
    share = 100.0 * hold.missing / hold.total if hold.total else 100.0
    return ngettext(
        "the portal is missing {missing} of {total} delivered {entity} records ({share} %)",
        "the portal is missing {missing} of {total} delivered {entity} records ({share} %)",
        hold.total,
    ).format(missing=hold.missing, total=hold.total, entity=hold.entity, share=f"{share:.1f}")
