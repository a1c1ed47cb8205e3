"""Everything the CLI prints for people: plans and errors, written once, here.

Errors carry facts (``bridge.core.errors``); this package turns them into what happened, why, and
the command or config key that fixes it. One module per thing printed:

- ``plans``: plans and sync results (text and JSON), and why a resync left a record out;
- ``errors``: the errors, each with what to do about it;
- ``status``: ``status``;
- ``explain``: ``explain``, one record's path;
- ``erasure``: ``erase`` and the erasure act.
"""

from bridge.cli.render.erasure import ENTITY_WORDS, erase_text, erasure_act_text
from bridge.cli.render.errors import ERRORS, error_text
from bridge.cli.render.explain import HOLD_WORDS, explain_json, explain_text
from bridge.cli.render.plans import (
    EXAMPLES,
    OPS,
    plan_json,
    plan_text,
    scope_text,
    sync_json,
    sync_text,
)
from bridge.cli.render.status import status_json, status_text

__all__ = [
    "ENTITY_WORDS",
    "ERRORS",
    "EXAMPLES",
    "HOLD_WORDS",
    "OPS",
    "erase_text",
    "erasure_act_text",
    "error_text",
    "explain_json",
    "explain_text",
    "plan_json",
    "plan_text",
    "scope_text",
    "status_json",
    "status_text",
    "sync_json",
    "sync_text",
]
