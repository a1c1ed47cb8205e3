"""``match``: how the school's contingent stands with the portal's, and the admin's decisions.

``match list`` shows the last matching (by default only what waits for a decision: ambiguous
and missing records), ``match confirm ENTITY KEY PORTAL_ID`` and ``match reject ENTITY KEY``
settle one record for good. Keys and portal ids only: the names compared stay in memory."""

from __future__ import annotations

import argparse
import getpass
import json

from bridge.cli.common import Subparsers, command, config_option, load, say
from bridge.cli.render.plans import heading
from bridge.core.errors import ExitCode
from bridge.core.matching import Match, MatchStatus, Settled
from bridge.i18n import N_, _, ngettext
from bridge.service.runner import Service
from bridge.service.wiring import matched_entities

UNDECIDED = frozenset({MatchStatus.AMBIGUOUS, MatchStatus.MISSING})


def add_match(sub: Subparsers) -> None:
    """Register ``match`` and its three actions."""
    cmd = command(
        sub,
        "match",
        _("The school's pupils and classes matched with the portal's; settle them."),
        cmd_match,
        _(
            "examples:\n  asiou-bridge match list            what waits for a decision\n"
            "  asiou-bridge match list --all --json\n"
            "  asiou-bridge match confirm pupil 77 1000000000000123\n"
            "  asiou-bridge match reject pupil 78\n\n"
            "A pupil without a match (missing, ambiguous or rejected) is never sent: settle it,\n"
            "and the next sync sends what is theirs."
        ),
    )
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help=_("the last matching (default: the undecided)"))
    listing.add_argument("--entity", help=_("one entity only (pupil, class, group, subject, ...)"))
    listing.add_argument("--all", action="store_true", help=_("every record, matched ones too"))
    listing.add_argument("--json", action="store_true", help=_("print JSON"))
    confirm = actions.add_parser("confirm", help=_("this record is that portal record"))
    confirm.add_argument("entity")
    confirm.add_argument("key", help=_("the record's ASIOU key"))
    confirm.add_argument("portal_id", help=_("the portal's id of the record"))
    reject = actions.add_parser(
        "reject", help=_("this record has no portal record: never match it")
    )
    reject.add_argument("entity")
    reject.add_argument("key", help=_("the record's ASIOU key"))
    for action in (listing, confirm, reject):
        config_option(action, default=argparse.SUPPRESS)


def cmd_match(args: argparse.Namespace) -> int:
    """``match list | confirm | reject``."""
    config, mappings = load(args)
    matched = matched_entities(config)
    entity = getattr(args, "entity", None)
    if entity is not None and entity not in matched:
        what = ", ".join(sorted(matched)) or _("nothing: it takes the school's records as they are")
        say(
            _("match: the configured portal does not match {entity}; it matches {what}.").format(
                entity=entity, what=what
            )
        )
        return ExitCode.USAGE
    with Service(config, mappings).state_store() as state:
        if args.action == "list":
            found = [m for m in state.matches(entity) if args.all or m.status in UNDECIDED]
            print(_as_json(found) if args.json else _as_text(found, args.all))
            return ExitCode.OK
        status = MatchStatus.CONFIRMED if args.action == "confirm" else MatchStatus.REJECTED
        portal_id = args.portal_id if args.action == "confirm" else None
        state.settle(Settled(str(entity), args.key, status, portal_id), getpass.getuser())
    say(
        f"{entity} {args.key}: {status.value}"
        + (" " + _("as portal record {id}").format(id=portal_id) if portal_id else "")
        + ". "
        + _("The next sync uses it.")
    )
    return ExitCode.OK


def _as_text(found: list[Match], every: bool) -> str:
    if not found:
        return (
            _("Every record is matched.") if not every else _("Nothing matched yet (run a sync).")
        )
    lines = [
        heading(
            (N_("entity"), -10),
            (N_("key"), -12),
            (N_("status"), -11),
            (N_("portal id"), -22),
            (N_("candidates / rule"), 0),
        )
    ]
    for m in found:
        hint = " ".join(m.candidates) or "-"
        shown = f"{m.entity:<10}{m.key:<12}{m.status.value:<11}{m.portal_id or '-':<22}"
        lines.append(f"{shown}{hint} ({m.rule})")
    undecided = sum(m.status in UNDECIDED for m in found)
    if undecided:
        lines += [
            "",
            ngettext(
                "{n} waiting for a decision: nothing of these is sent.",
                "{n} waiting for a decision: nothing of these is sent.",
                undecided,
            ).format(n=undecided)
            + " "
            + _("`asiou-bridge match confirm ENTITY KEY PORTAL_ID` or `match reject ENTITY KEY`."),
        ]
    return "\n".join(lines)


def _as_json(found: list[Match]) -> str:
    return json.dumps(
        [
            {
                "entity": m.entity,
                "key": m.key,
                "status": m.status.value,
                "portal_id": m.portal_id,
                "candidates": list(m.candidates),
                "rule": m.rule,
            }
            for m in found
        ],
        ensure_ascii=False,
        indent=2,
    )
