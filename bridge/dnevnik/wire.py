"""The emulator's wire format: :class:`ApiRequest` (HTTP as the service sees it: repeated query
keys, the ``Access-Token`` header, the body's content type), the decoding of bodies (JSON, or
the form encoding public clients send, where one field holds the object as JSON), the error
envelope ``{"type", "description"}`` and the HTML error page. Replies are the reference
portal's :class:`~bridge.refportal.wire.Reply`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs

from bridge.dnevnik.journal import ParameterInvalidError
from bridge.refportal.wire import Reply, error, to_json

HTML = "text/html"
"""Exactly this: pydnevnikruapi recognises an HTML error page by ``Content-Type ==
"text/html"``."""

STATUS_OF = {
    "parameterInvalid": 400,
    "authorizationFailed": 401,
    "invalidRequest": 400,
    "methodNotAllowed": 405,
    "apiServerError": 500,
    "apiUnknownError": 500,
}


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One HTTP request: method, path, query (every value of a repeated key), the
    ``Access-Token`` header, the body and its content type."""

    method: str
    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    token: str | None = None
    body: bytes = b""
    content_type: str = ""

    def arg(self, name: str) -> str | None:
        """The last value of a query key, or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def args(self, name: str) -> list[str]:
        """Every value of a query key (``lessons=1&lessons=2``, also ``lessons=1,2``)."""
        return [part for value in self.query.get(name, []) for part in value.split(",") if part]


def api_error(kind: str, description: str, *headers: tuple[str, str]) -> Reply:
    """The error envelope with the status its type has."""
    return error(STATUS_OF.get(kind, 400), kind, description, *headers)


def html_page(status: int, title: str, description: str) -> Reply:
    """An HTML error page as the portal's front answers some failures, with the description
    where pydnevnikruapi looks for it (``<div class="error__description"><p>…</p>``)."""
    page = (
        '<!DOCTYPE html>\n<html lang="ru"><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title></head>\n<body><div class="error">'
        f'<h1 class="error__title">{escape(title)}</h1>\n'
        f'<div class="error__description"><p>{escape(description)}</p>\n'
        f"<p>Код ошибки: {status}</p></div></div></body></html>\n"
    )
    return Reply(status, page.encode(), HTML)


def form(request: ApiRequest) -> dict[str, list[str]] | None:
    """The body as a form (``application/x-www-form-urlencoded``), or None if it is not one."""
    if "form-urlencoded" not in request.content_type:
        return None
    return parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)


def body_object(request: ApiRequest, wrapper: str) -> dict[str, Any]:
    """The object a write sends: a JSON object (itself, or under ``wrapper``), or a form whose
    field ``wrapper`` holds it as JSON (as pydnevnikruapi sends ``work=…``,
    ``lessonLogEntry=…``), or a form of plain fields. ParameterInvalidError otherwise."""
    fields = form(request)
    if fields is None:
        try:
            decoded = json.loads(request.body or b"null")
        except ValueError:
            raise ParameterInvalidError("the body must be JSON or a form") from None
        if isinstance(decoded, dict):
            inner = decoded.get(wrapper)
            return inner if isinstance(inner, dict) else decoded
        raise ParameterInvalidError("the body must be a JSON object")
    if wrapper in fields:
        try:
            decoded = json.loads(fields[wrapper][-1])
        except ValueError:
            raise ParameterInvalidError(f"{wrapper} must hold a JSON object") from None
        if not isinstance(decoded, dict):
            raise ParameterInvalidError(f"{wrapper} must hold a JSON object")
        return decoded
    return {k: _scalar(v[-1]) for k, v in fields.items()}


def body_ids(request: ApiRequest, name: str) -> list[str]:
    """A list of ids a batch read sends: a JSON array, ``{name: [...]}``, or a form with
    ``name`` repeated (pydnevnikruapi's ``lessons=1&lessons=2``)."""
    fields = form(request)
    if fields is not None:
        return [p for v in fields.get(name, []) for p in v.split(",") if p]
    try:
        decoded = json.loads(request.body or b"null")
    except ValueError:
        raise ParameterInvalidError("the body must be JSON or a form") from None
    if isinstance(decoded, dict):
        decoded = decoded.get(name)
    if not isinstance(decoded, list):
        raise ParameterInvalidError(f"{name} must be a list of ids")
    return [str(v) for v in decoded]


def _scalar(text: str) -> object:
    """A form value: JSON literals (true, 5, null) as such, anything else as the text."""
    if text in ("true", "false", "null"):
        return json.loads(text)
    return text


def ok(value: object) -> Reply:
    """A 200 JSON answer."""
    return to_json(200, value)
