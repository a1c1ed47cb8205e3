"""Field converters: small closures compiled once from a mapping and applied to every row.

A converter takes the raw value a driver returned and gives a canonical value (``str``, ``int``,
``bool`` or ``None``; dates are ISO ``YYYY-MM-DD`` strings, so they compare as text and travel
as JSON unchanged) or raises :class:`InvalidValue` with a reason fit to show an admin. Reasons
for personal fields never quote the value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.model import Value

Converter = Callable[[Any], Value]
Step = Callable[[str], str]

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
WHITESPACE_RUN = re.compile(r"\s+")
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y%m%d")
EARLIEST_DATE = "1900-01-01"
LATEST_DATE = "2100-12-31"
TRUE_WORDS = frozenset({"1", "true", "t", "yes", "y", "да", "д"})
FALSE_WORDS = frozenset({"0", "false", "f", "no", "n", "нет", "н"})

TRANSFORMS: dict[str, Step] = {
    "trim": str.strip,
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
    "collapse_spaces": lambda s: WHITESPACE_RUN.sub(" ", s).strip(),
}
TYPES = ("text", "int", "bool", "date", "ref")


class InvalidValue(Exception):  # noqa: N818 - an outcome of conversion, caught in mapping.py
    """A raw value cannot become a canonical value; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class FieldSpec:
    """A validated field of a mapping, ready to compile."""

    name: str
    columns: tuple[str, ...]
    type: str = "text"
    transforms: tuple[str, ...] = ()
    values: Mapping[str, Value] | None = None
    required: bool = False
    default: Value = None
    max_length: int = 2000
    min: int | None = None
    max: int | None = None
    separator: str = " "
    personal: bool = False
    export: bool = True
    ref: str | None = None


def _shown(spec: FieldSpec, raw: object) -> str:
    """How a bad value may appear in a reason: quoted, unless the field is personal."""
    return "" if spec.personal else f" {str(raw)[:40]!r}"


def _as_text(raw: object) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValue("text is not valid UTF-8") from exc
    return raw if isinstance(raw, str) else str(raw)


def _text(spec: FieldSpec) -> Converter:
    steps = [TRANSFORMS[t] for t in spec.transforms]
    limit = spec.max_length

    def convert(raw: Any) -> Value:
        text = _as_text(raw)
        for step in steps:
            text = step(text)
        if len(text) > limit:
            raise InvalidValue(f"text is {len(text)} characters long, over the limit of {limit}")
        if CONTROL_CHARS.search(text):
            raise InvalidValue("text contains control characters")
        return text

    return convert


def _int(spec: FieldSpec) -> Converter:
    low, high = spec.min, spec.max

    def convert(raw: Any) -> Value:
        if isinstance(raw, bool) or not isinstance(raw, int | str | float):
            raise InvalidValue(f"not a whole number:{_shown(spec, raw)}")
        try:
            number = int(raw.strip()) if isinstance(raw, str) else int(raw)
        except ValueError as exc:
            raise InvalidValue(f"not a whole number:{_shown(spec, raw)}") from exc
        if isinstance(raw, float) and raw != number:
            raise InvalidValue(f"not a whole number:{_shown(spec, raw)}")
        if (low is not None and number < low) or (high is not None and number > high):
            raise InvalidValue(f"{number} is outside {low}..{high}")
        return number

    return convert


def _bool(spec: FieldSpec) -> Converter:
    def convert(raw: Any) -> Value:
        word = _as_text(raw).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise InvalidValue(f"not a yes/no value:{_shown(spec, raw)}")

    return convert


def parse_date(raw: object) -> str:
    """Any date-like raw value as an ISO date string; raises InvalidValue when impossible."""
    if isinstance(raw, dt.datetime):
        text = raw.date().isoformat()
    elif isinstance(raw, dt.date):
        text = raw.isoformat()
    else:
        text = _date_from_text(_as_text(raw).strip())
    if not EARLIEST_DATE <= text <= LATEST_DATE:
        raise InvalidValue(f"date {text} is outside {EARLIEST_DATE}..{LATEST_DATE}")
    return text


def _date_from_text(text: str) -> str:
    head = text[:10]
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(head, fmt).date().isoformat()
        except ValueError:
            continue
    raise InvalidValue(f"not a valid date: {text[:30]!r}")


def _date(spec: FieldSpec) -> Converter:
    return parse_date


def _ref(spec: FieldSpec) -> Converter:
    def convert(raw: Any) -> Value:
        return key_part(raw)

    return convert


def key_part(raw: object) -> str:
    """One key column's value as key text."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    text = _as_text(raw).strip()
    if not text:
        raise InvalidValue("empty key")
    if CONTROL_CHARS.search(text) or "\x1f" in text:
        raise InvalidValue("key contains control characters")
    return text


def _with_values(spec: FieldSpec, inner: Converter) -> Converter:
    if spec.values is None:
        return inner
    table = dict(spec.values)

    def convert(raw: Any) -> Value:
        value = inner(raw)
        try:
            return table[value]
        except KeyError:
            raise InvalidValue(f"value not in the value map of the mapping:{_shown(spec, value)}")\
                from None

    return convert


def _with_nulls(spec: FieldSpec, inner: Converter) -> Converter:
    required, default = spec.required, spec.default

    def convert(raw: Any) -> Value:
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if default is not None:
                return default
            if required:
                raise InvalidValue("missing value")
            return None
        return inner(raw)

    return convert


BUILDERS: dict[str, Callable[[FieldSpec], Converter]] = {
    "text": _text,
    "int": _int,
    "bool": _bool,
    "date": _date,
    "ref": _ref,
}


def compile_field(spec: FieldSpec) -> Converter:
    """The converter for one field: null handling, then type, then value map."""
    return _with_nulls(spec, _with_values(spec, BUILDERS[spec.type](spec)))


def joined(parts: Sequence[object], separator: str) -> str | None:
    """Several raw columns as one text (name parts, say), skipping empty ones."""
    texts = [_as_text(p).strip() for p in parts if p is not None]
    kept = [t for t in texts if t]
    return separator.join(kept) if kept else None
