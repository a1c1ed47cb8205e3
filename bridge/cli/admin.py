"""Admin commands: ``run`` (the daemon), ``resync``, ``status``, ``retry``, ``explain``,
``erase``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import threading
import uuid
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from bridge import logs
from bridge.cli.common import Subparsers, command, load, say, tty_progress, wait_flags
from bridge.cli.render import (
    erase_text,
    erasure_act_text,
    explain_json,
    explain_text,
    scope_text,
    status_json,
    status_text,
    sync_json,
    sync_text,
)
from bridge.core.errors import ExitCode
from bridge.core.scope import Scope, everything, of_class, of_pupil, since
from bridge.i18n import _, ngettext
from bridge.service import admin
from bridge.service.admin import require_key, why_not_sent
from bridge.service.daemon import Daemon, install_signals, next_runs
from bridge.service.metrics import MetricsSink
from bridge.service.notify import Notifier
from bridge.service.runner import Request, Service
from bridge.service.runs import DEFAULT_GROUND, Erasures, SyncLock


def add_all(sub: Subparsers) -> None:
    """Register every admin command."""
    command(
        sub,
        "run",
        _("Run the daemon: scheduled syncs until SIGTERM (systemd)."),
        cmd_run,
        _("example:\n  asiou-bridge run        (what asiou-bridge.service starts)"),
    )
    _add_resync(sub)
    cmd = command(
        sub,
        "status",
        _("Last runs, next runs, dead letters, a held plan."),
        cmd_status,
        _("examples:") + "\n  asiou-bridge status\n  asiou-bridge status --json",
    )
    cmd.add_argument("--json", action="store_true", help=_("print JSON"))
    cmd = command(
        sub,
        "retry",
        _("Send the dead letters again (a full sync)."),
        cmd_retry,
        _("example:") + "\n  asiou-bridge retry",
    )
    wait_flags(cmd)
    cmd = command(
        sub,
        "explain",
        _("Why a record was or was not sent."),
        cmd_explain,
        _("examples:")
        + "\n  asiou-bridge explain mark 123456\n  asiou-bridge explain pupil 77 --json",
    )
    cmd.add_argument("entity", choices=["pupil", "mark", "lesson", "absence", "period_mark"])
    cmd.add_argument("key", help=_("the record's key (its ASIOU id)"))
    cmd.add_argument("--json", action="store_true", help=_("print JSON"))
    cmd = command(
        sub,
        "erase",
        _("Delete everything of a pupil from the portal (152-FZ); print the act."),
        cmd_erase,
        _(
            "examples:\n  asiou-bridge erase pupil 77\n"
            "  asiou-bridge erase pupil 77 --ground 'заявление родителя от 01.06.2026'\n"
            "  asiou-bridge erase act 77        print the erasure act (Russian)"
        ),
    )
    cmd.add_argument(
        "entity",
        choices=["pupil", "act"],
        help=_("pupil: erase the pupil; act: print the pupil's erasure act"),
    )
    cmd.add_argument("key", help=_("the pupil's key (ASIOU id)"))
    cmd.add_argument(
        "--ground",
        default=DEFAULT_GROUND,
        help=_("the ground the act names (default: «{ground}»)").format(ground=DEFAULT_GROUND),
    )
    wait_flags(cmd)


def _add_resync(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "resync",
        _("Send a scope again even where it was delivered."),
        cmd_resync,
        _(
            "examples:\n  asiou-bridge resync --pupil 77      a parent says a mark is "
            "missing\n  asiou-bridge resync --class 12\n"
            "  asiou-bridge resync --since 2026-03-01\n  asiou-bridge resync --full"
        ),
    )
    scope = cmd.add_mutually_exclusive_group(required=True)
    scope.add_argument("--full", action="store_true", help=_("everything"))
    scope.add_argument("--pupil", metavar="KEY", help=_("one pupil and all of their records"))
    scope.add_argument("--class", dest="class_key", metavar="KEY", help=_("one class"))
    scope.add_argument(
        "--since",
        type=date.fromisoformat,
        metavar="DATE",
        help=_("records dated on or after DATE"),
    )
    cmd.add_argument("--json", action="store_true", help=_("print the outcome as JSON"))
    wait_flags(cmd)


def _scope(args: argparse.Namespace) -> Scope:
    if args.pupil:
        return of_pupil(args.pupil)
    if args.class_key:
        return of_class(args.class_key)
    if args.since:
        return since(args.since.isoformat())
    return everything


def manual(command_name: str, args: argparse.Namespace, **changes: Any) -> Request:
    """A manual request by the OS user running the command."""
    return replace(
        Request(
            command=command_name,
            trigger="manual",
            user=getpass.getuser(),
            wait=getattr(args, "wait", True),
        ),
        **changes,
    )


def _named(args: argparse.Namespace) -> tuple[str, str] | None:
    """The (entity, key) a scoped resync names, if it names one."""
    if args.pupil:
        return "pupil", args.pupil
    if args.class_key:
        return "class", args.class_key
    return None


def cmd_resync(args: argparse.Namespace) -> int:
    """``resync``: a full sync that re-sends the scope. A pupil or class the source lacks is a
    usage error (nothing runs); one that is held back or rejected is said, with the reason."""
    config, mappings = load(args)
    named = _named(args)
    if named is not None:
        require_key(config, mappings, *named)
    outcome = Service(config, mappings).sync(
        manual("resync", args, resend=_scope(args), tap=named),
        say=say,
        progress=tty_progress(args.json),
    )
    why = None if named is None else why_not_sent(outcome.plan.tapped)
    if args.json:
        data = json.loads(sync_json(outcome))
        if named is not None:
            data["scope"] = {"entity": named[0], "key": named[1], "not_sent": why}
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(sync_text(outcome, mappings.entities))
    note = None if named is None else scope_text(*named, why)
    if note is not None:
        say(note)
    return outcome.exit_code


def cmd_retry(args: argparse.Namespace) -> int:
    """``retry``: revive dead letters, then a full sync sends them."""
    config, mappings = load(args)
    service = Service(config, mappings)
    with service.state_store() as state:
        revived = state.revive()
    say(
        ngettext(
            "{n} dead letter will be sent again.", "{n} dead letters will be sent again.", revived
        ).format(n=revived)
    )
    outcome = service.sync(manual("retry", args), say=say, progress=tty_progress())
    print(sync_text(outcome, mappings.entities))
    return outcome.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: what the bridge did and will do."""
    config, mappings = load(args)
    service = Service(config, mappings)
    with service.state_store() as state:
        found = admin.status(
            state,
            next_runs(Daemon(config, mappings, Notifier.from_env({}), service)),
            timedelta(hours=config.thresholds.approval_valid_hours),
        )
    print(status_json(found) if args.json else status_text(found))
    return ExitCode.OK


def cmd_explain(args: argparse.Namespace) -> int:
    """``explain``: one record's path through the bridge."""
    config, mappings = load(args)
    service = Service(config, mappings)
    with service.adapters() as io:
        found = admin.explain(service, io, args.entity, args.key)
    print(explain_json(found) if args.json else explain_text(found))
    return ExitCode.OK


def cmd_erase(args: argparse.Namespace) -> int:
    """``erase pupil KEY``: delete the pupil's records from the portal, keep the act and print
    it; ``erase act KEY``: print the act kept."""
    config, mappings = load(args)
    with Service(config, mappings).state_store() as state:
        if args.entity == "act":
            act = Erasures(state.engine).get(args.key)
            if act is None:
                print(
                    _(
                        "No erasure act for pupil {key}: the pupil was never erased "
                        "(asiou-bridge erase pupil {key})."
                    ).format(key=args.key),
                    file=sys.stderr,
                )
                return ExitCode.USAGE
            print(erasure_act_text(act, mappings.entities))
            return ExitCode.OK
        lock = SyncLock(state.engine, f"sync:{config.portal.school}")
        with lock.held(args.wait, say):
            done = admin.erase_pupil(
                config, mappings, state, args.key, uuid.uuid4().hex[:12], ground=args.ground
            )
    print(erase_text(done))
    if done.act is not None:
        print("\n" + erasure_act_text(done.act, mappings.entities))
    return ExitCode.OK if not done.refused else ExitCode.PARTIAL


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: the daemon, logging JSON lines to stdout for journald."""
    logs.configure(sys.stdout)
    config, mappings = load(args)
    stop = threading.Event()
    install_signals(stop)
    notifier = Notifier.from_env(os.environ)
    listen = _listen(config.metrics.listen)
    sink = (
        MetricsSink(
            textfile=config.metrics.textfile or None, listen=listen, config_file=config.file
        )
        if config.metrics.textfile or listen
        else None
    )
    try:
        service = Service(config, mappings, metrics=sink, stop=stop)
        daemon = Daemon(config, mappings, notifier, service)
        return daemon.serve(stop, prepared=sink.start if sink is not None else lambda: None)
    finally:
        if sink is not None:
            sink.close()


def _listen(text: str) -> tuple[str, int] | None:
    if not text:
        return None
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)
