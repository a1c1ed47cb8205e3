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
