"""JSON written at the adapters' seams: orjson (a C library, faster than the standard
library: docs/benchmarks.md) for what it takes, the standard library for what it refuses (an
integer beyond 64 bits, which a hostile row can hold), to the same compact UTF-8 JSON.

Answers are read with the standard library: orjson reads an integer beyond 64 bits as a float,
silently inexact."""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson


def dumps(value: object, default: Callable[[object], object] | None = None) -> bytes:
    """``value`` as compact UTF-8 JSON (no spaces, non-ASCII kept); ``default`` converts what
    JSON has no type for (a date: orjson and ``default`` must agree). Raises TypeError."""
    try:
        return orjson.dumps(value, default=default)
    except orjson.JSONEncodeError:
        text = json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8")
