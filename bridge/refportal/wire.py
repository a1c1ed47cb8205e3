"""The reference portal's wire format: :class:`Request` and :class:`Reply` (HTTP as the service
sees it), the JSON and error replies, and the parsing of request bodies and batches
(``docs/portal-api.md``).
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.ports import Operation
from bridge.refportal.rules import MAX_BATCH

JSON = "application/json"
HTML = "text/html; charset=utf-8"
HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center>"
    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the service needs it."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    authorization: str | None = None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer; ``drop`` ("reset" or "lost") closes the connection instead of answering."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: str | None = None


def _compact_encoder() -> Callable[[object], str]:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, with the C encoder
    made once instead of per call (the portal writes a JSON text per record it stores)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return lambda value: json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    default = json.JSONEncoder().default  # the TypeError json.dumps raises
    encode: Callable[[object, int], list[str]] = c_make_encoder(
        None, default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )

    def compact(value: object) -> str:
        if isinstance(value, str):
            return json.encoder.encode_basestring(value)
        return "".join(encode(value, 0))

    return compact


compact_json = _compact_encoder()
"""A value as compact JSON text (non-ASCII kept), as ``json.dumps`` with those options."""


def to_json(status: int, value: object, *headers: tuple[str, str]) -> Reply:
    """A JSON reply."""
    return Reply(status, compact_json(value).encode(), JSON, headers)


def error(status: int, kind: str, description: str, *headers: tuple[str, str]) -> Reply:
    """An error reply: ``{"type": kind, "description": description}``."""
    return to_json(status, {"type": kind, "description": description}, *headers)


def unauthorized(kind: str, description: str) -> Reply:
    """A 401 with the bearer challenge."""
    return error(401, kind, description, ("WWW-Authenticate", 'Bearer error="invalid_token"'))


def not_allowed(*methods: str) -> Reply:
    """A 405 naming the methods the resource takes."""
    return error(
        405, "methodNotAllowed", f"use {' or '.join(methods)}", ("Allow", ", ".join(methods))
    )


def decode(body: bytes) -> object:
    """The body's JSON, or None when it is not JSON at all."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def batch_items(body: object) -> list[dict[str, Any]] | Reply:
    """The operations of a batch body as JSON objects, each with a string ``id``, or the
    400/413 to answer (the whole batch refused, as :func:`parse_batch` refuses it)."""
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        return error(400, "badRequest", 'the body must be {"operations": [...]}')
    items: list[Any] = body["operations"]
    if len(items) > MAX_BATCH:
        return error(413, "batchTooLarge", f"{len(items)} operations; at most {MAX_BATCH}")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return error(400, "badRequest", f"operations[{index}] needs an id string")
    return items


def parse_batch(body: object) -> list[Operation] | Reply:
    """The operations of a batch body, or the 400/413 to answer. An operation with a bad method,
    entity or data still becomes an Operation: it gets its own per-operation rejection."""
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        return error(400, "badRequest", 'the body must be {"operations": [...]}')
    items: list[object] = body["operations"]
    if len(items) > MAX_BATCH:
        return error(413, "batchTooLarge", f"{len(items)} operations; at most {MAX_BATCH}")
    operations = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return error(400, "badRequest", f"operations[{index}] needs an id string")
        operations.append(
            Operation(
                item["id"],
                _text(item, "method"),
                _text(item, "entity"),
                _text(item, "sourcedId"),
                item.get("fingerprint") if isinstance(item.get("fingerprint"), str) else None,
                item.get("data"),
            )
        )
    return operations


def _text(item: Mapping[str, object], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""
