"""The wire format of the reference import API: batches of operations as JSON, and the
results, fingerprints and tokens parsed back, each checked for the shape it must have."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bridge.adapters import jsontext
from bridge.adapters.portal_client.answers import DETAIL_LIMIT, Disposition, classify_result
from bridge.adapters.portal_client.retries import _TransientError
from bridge.ports import Operation, OperationResult

REFRESH_MARGIN = 30.0


"""Seconds before expiry at which a token is replaced proactively."""


METHODS = frozenset({"PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class _Token:
    """A bearer token and the clock reading at which it expires."""

    value: str
    expires_at: float

    def is_fresh(self, now: float) -> bool:
        """True while more than ``REFRESH_MARGIN`` seconds remain."""
        return now < self.expires_at - REFRESH_MARGIN


def encode_batch(operations: Sequence[Operation]) -> bytes:
    """The batch request body, compact UTF-8 JSON; dates become ISO strings. Raises ValueError
    on an unknown method, TypeError on a value JSON cannot hold."""
    return jsontext.dumps(
        {"operations": [_wire_operation(op) for op in operations]}, default=_json_value
    )


def _wire_operation(op: Operation) -> dict[str, Any]:
    """One operation as the API spells it."""
    if op.method not in METHODS:
        raise ValueError(f"operation {op.op_id}: method must be PUT or DELETE")
    data = op.data if op.data is None or type(op.data) is dict else dict(op.data)
    return {
        "id": op.op_id,
        "method": op.method,
        "entity": op.entity,
        "sourcedId": op.sourced_id,
        "fingerprint": op.fingerprint,
        "data": data,
    }


def _json_value(value: object) -> str:
    """JSON for the canonical value types json cannot write itself (the type only on failure)."""
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode a {type(value).__name__} value")


def parse_results(body: object, operations: Sequence[Operation]) -> list[OperationResult]:
    """One result per operation, in order. Raises _TransientError when the answer does not fit
    the operations (lost or garbled) or when any operation met a retriable status."""
    items = body.get("results") if isinstance(body, dict) else None
    if not isinstance(items, list) or len(items) != len(operations):
        count = len(items) if isinstance(items, list) else "no"
        raise _TransientError(f"HTTP 200 garbled: {count} results for {len(operations)} operations")
    results = [_parse_result(item, op) for item, op in zip(items, operations, strict=True)]
    for result, op in zip(results, operations, strict=True):
        if not result.ok and classify_result(result.status) is Disposition.RETRIABLE:
            raise _TransientError(
                f"operation {op.op_id} ({op.entity} {op.sourced_id}): HTTP "
                f"{result.status} {result.type}: {result.description}"
            )
    return results


def _parse_result(item: object, op: Operation) -> OperationResult:
    """One per-operation answer; its id must be the operation's."""
    if not isinstance(item, dict) or item.get("id") != op.op_id:
        raise _TransientError(f"HTTP 200 garbled: result for {op.op_id} missing or out of order")
    status = item.get("status")
    if type(status) is not int:  # bool is a subclass of int, and no status
        raise _TransientError(f"HTTP 200 garbled: result for {op.op_id} has no status")
    kind, description = item.get("type"), item.get("description")
    return OperationResult(
        op.op_id,
        classify_result(status) is Disposition.OK,
        status,
        kind if isinstance(kind, str) else None,
        description[:DETAIL_LIMIT] if isinstance(description, str) else None,
    )


def parse_fingerprints(body: object) -> dict[str, str]:
    """sourcedId → fingerprint from a listing; a null fingerprint becomes "" (matches nothing,
    so the record is re-sent). Raises _TransientError when the listing is garbled."""
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise _TransientError("HTTP 200 garbled: listing without records")
    found: dict[str, str] = {}
    for record in records:
        key = record.get("sourcedId") if isinstance(record, dict) else None
        fingerprint = record.get("fingerprint") if isinstance(record, dict) else None
        if not isinstance(key, str) or not isinstance(fingerprint, str | None):
            raise _TransientError("HTTP 200 garbled: listing record without sourcedId")
        found[key] = fingerprint or ""
    return found


def parse_token(body: object, now: float) -> _Token:
    """The token from a token answer; no ``expires_in`` means valid until the portal says 401.
    Raises _TransientError when the answer holds no token."""
    answer = body if isinstance(body, dict) else {}
    token, lifetime = answer.get("access_token"), answer.get("expires_in")
    if not isinstance(token, str) or not token:
        raise _TransientError("HTTP 200 garbled: token answer without access_token")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float):
        return _Token(token, float("inf"))
    return _Token(token, now + float(lifetime))
