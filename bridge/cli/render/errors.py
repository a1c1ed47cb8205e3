"""The errors the CLI prints: what went wrong, why, and the command or config key that fixes it.

Errors carry facts (``bridge.core.errors``); this module turns them into text, one renderer per
error type in ``ERRORS``, the first whose type matches winning (``error_text``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from bridge.i18n import _, ngettext


def _config_error(exc: ConfigError) -> str:
    items = "\n".join(f"  - {p}" for p in exc.problems)
    head = ngettext(
        "Configuration problem (nothing was done):",
        "Configuration problems (nothing was done):",
        len(exc.problems),
    )
    return f"{head}\n{items}"


def _order_error(exc: SourceOrderError) -> str:
    return _(
        "The ASIOU table {table} returned key {key} after {previous}, so rows are not in key "
        "order. For text keys set source.key_collation in the {entity} mapping to a binary "
        "collation."
    ).format(table=exc.table, key=exc.key, previous=exc.previous, entity=exc.entity)


def _source_error(exc: SourceError) -> str:
    return _(
        "The ASIOU database failed while {operation}: {detail}\n"
        "Nothing was deleted. Check source.url and that the database is reachable "
        "(`asiou-bridge check`)."
    ).format(operation=exc.operation, detail=exc.detail)


def _state_error(exc: StateError) -> str:
    return _(
        "The state store failed while {operation}: {detail}\nWhat the portal "
        "acknowledged is recorded; check state.url and the disk, then run the command again."
    ).format(operation=exc.operation, detail=exc.detail)


def _auth_error(exc: PortalAuthError) -> str:
    return _(
        "The portal refused our credentials (HTTP {status}).\nCheck portal.client_id "
        "and the portal secret ($ASIOU_BRIDGE_PORTAL_SECRET, portal.secret_file or the "
        "credential portal-secret), then `asiou-bridge check`."
    ).format(status=exc.status)


def _unavailable(exc: PortalUnavailable) -> str:
    return _(
        "The portal kept failing: {last} ({attempts} attempts).\nWhat it "
        "acknowledged is recorded; run the command again later (the daemon retries by "
        "itself). `asiou-bridge check` tests the connection."
    ).format(last=exc.last, attempts=exc.attempts)


def _portal_fatal(exc: PortalFatalError) -> str:
    return _(
        "The portal refused the request: HTTP {status} {kind}: {detail}\n"
        "Retrying will not help; check portal.url and portal.school."
    ).format(status=exc.status, kind=exc.kind, detail=exc.detail)


def _busy(exc: LockBusy) -> str:
    return _(
        "Another sync is running ({holder}).\nWait for it (run the command without "
        "--no-wait) or see `asiou-bridge status`."
    ).format(holder=exc.holder)


def _unknown_plan(exc: UnknownPlan) -> str:
    return _(
        "No held plan has the id {plan_id}: nothing was approved.\nOnly a plan a guard "
        "held can be approved. `asiou-bridge status` shows the plan the last sync held, and "
        "`asiou-bridge plan` prints the id of a plan a guard would hold now."
    ).format(plan_id=exc.plan_id)


def _unknown_key(exc: UnknownKey) -> str:
    return _(
        "The ASIOU database has no {entity} with key {key}: nothing was sent.\n"
        "Check the key (the ASIOU id); `asiou-bridge explain {entity} KEY` traces one."
    ).format(entity=exc.entity, key=exc.key)


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
    return _(
        "Error: {error}\nSee `asiou-bridge status` and the logs (journalctl -u asiou-bridge)."
    ).format(error=exc)
