"""Field converters: small closures compiled once from a mapping and applied to every row.

A converter takes the raw value a driver returned and gives a canonical value (``str``, ``int``,
``bool`` or ``None``; dates are ISO ``YYYY-MM-DD`` strings, so they compare as text and travel
as JSON unchanged) or raises :class:`InvalidValue` with a reason fit to show an admin. Reasons
for personal fields never quote the value.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bridge.core.model import Value

Converter = Callable[[Any], Value]
Step = Callable[[str], str]

CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""Every C0 and C1 control character and DEL, except tab, line feed and carriage return.
Text, value-mapped and yes/no fields reject a raw value holding one, whatever the transforms."""
CONTROL_REASON = "text contains control characters"
WHITESPACE_RUN = re.compile(r"\s+")
INTEGER = re.compile(r"[+-]?[0-9]+")
DATE_TEXT = re.compile(
    r"(?P<y1>\d{4})-(?P<m1>\d{2})-(?P<d1>\d{2})(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"|(?P<d2>\d{2})\.(?P<m2>\d{2})\.(?P<y2>\d{4})(?: \d{2}:\d{2}(?::\d{2})?)?"
    r"|(?P<y3>\d{4})(?P<m3>\d{2})(?P<d3>\d{2})"
)
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


_MISSING = object()
SEEN_LIMIT = 1000  # raw texts a value-mapped field remembers (a map has a few dozen codes)


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
    fallback: Value = None
    """For a value-mapped field: the canonical value of anything the map lacks (None: reject)."""


def _shown(spec: FieldSpec, raw: object) -> str:
    """How a bad value may appear in a reason: quoted, unless the field is personal."""
    return "" if spec.personal else f" {str(raw)[:40]!r}"


def _as_text(raw: object) -> str:
    if raw.__class__ is str:
        return raw
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidValue("text is not valid UTF-8") from exc
    return str(raw)


def _steps(spec: FieldSpec) -> Callable[[Any], str]:
    """Raw value → text with the field's transforms applied, in order."""
    steps = tuple(TRANSFORMS[t] for t in spec.transforms)
    if not steps:
        return _as_text
    if len(steps) == 1:
        (only,) = steps
        return lambda raw: only(_as_text(raw))

    def apply(raw: Any) -> str:
        text = _as_text(raw)
        for step in steps:
            text = step(text)
        return text

    return apply


def _text(spec: FieldSpec) -> Converter:
    to_text, limit, search = _steps(spec), spec.max_length, CONTROL_CHARS.search

    def convert(raw: Any) -> Value:
        # Control characters are checked on the raw text, before any transform: trim and
        # collapse_spaces would turn some of them (\x0b, \x0c, \x1c-\x1f) into spaces.
        text = _as_text(raw)
        if search(text):
            raise InvalidValue(CONTROL_REASON)
        text = to_text(text)
        if len(text) > limit:
            raise InvalidValue(f"text is {len(text)} characters long, over the limit of {limit}")
        return text

    return convert


def whole_number(raw: object) -> int | None:
    """``raw`` as an int when it is a whole number (int, integral float or Decimal, digits)."""
    if raw.__class__ is int:
        return raw
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float | Decimal):
        return int(raw) if math.isfinite(raw) and raw == int(raw) else None
    if isinstance(raw, str):
        text = raw.strip()
        return int(text) if INTEGER.fullmatch(text) else None
    return None


def _int(spec: FieldSpec) -> Converter:
    low, high = spec.min, spec.max

    def convert(raw: Any) -> Value:
        number = whole_number(raw)
        if number is None:
            raise InvalidValue(f"not a whole number:{_shown(spec, raw)}")
        if (low is not None and number < low) or (high is not None and number > high):
            shown = "the value" if spec.personal else str(number)
            raise InvalidValue(f"{shown} is outside {low}..{high}")
        return number

    return convert


def _bool(spec: FieldSpec) -> Converter:
    """Yes/no words (``TRUE_WORDS``, ``FALSE_WORDS``); anything else (2, 1.5, 'нет.', bytes,
    control characters) is the field's ``fallback`` when it has one (the consent field: "not
    a clear yes"), else a rejection."""
    fallback = spec.fallback

    def convert(raw: Any) -> Value:
        try:
            word = _as_text(raw)
        except InvalidValue:
            word = ""
        if not CONTROL_CHARS.search(word):
            word = word.strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
        if fallback is not None:
            return fallback
        raise InvalidValue(f"not a yes/no value:{_shown(spec, raw)}")

    return convert


def parse_date(raw: object, personal: bool = False) -> str:
    """Any date-like raw value as an ISO date string; raises InvalidValue when impossible.
    Text must be exactly a date (ISO, dd.mm.yyyy or yyyymmdd), optionally followed by a time."""
    if raw.__class__ is str and len(raw) == 10 and raw[4] == "-" == raw[7] and raw.isascii():
        try:  # the usual case, ISO text already: the C parser checks it (2025-02-30 fails)
            text = dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            text = _date_from_text(raw, personal)
    elif isinstance(raw, dt.datetime):
        text = raw.date().isoformat()
    elif isinstance(raw, dt.date):
        text = raw.isoformat()
    else:
        text = _date_from_text(_as_text(raw).strip(), personal)
    if not EARLIEST_DATE <= text <= LATEST_DATE:
        shown = "the date" if personal else f"date {text}"
        raise InvalidValue(f"{shown} is outside {EARLIEST_DATE}..{LATEST_DATE}")
    return text


def _date_from_text(text: str, personal: bool) -> str:
    found = DATE_TEXT.fullmatch(text)
    if found is not None:
        year, month, day = (
            found["y1"] or found["y2"] or found["y3"],
            found["m1"] or found["m2"] or found["m3"],
            found["d1"] or found["d2"] or found["d3"],
        )
        try:
            return dt.date(int(year), int(month), int(day)).isoformat()
        except ValueError:
            pass
    shown = "" if personal else f": {text[:30]!r}"
    raise InvalidValue(f"not a valid date{shown}")


def _date(spec: FieldSpec) -> Converter:
    personal = spec.personal
    return lambda raw: parse_date(raw, personal)


def _ref(spec: FieldSpec) -> Converter:
    def convert(raw: Any) -> Value:
        return key_part(raw.strip() if isinstance(raw, str) else raw)

    return convert


def _fast_ref(spec: FieldSpec) -> Converter:
    """A reference with the null handling folded in: whole-number keys take one check."""
    slow = _with_nulls(spec, _ref(spec))

    def convert(raw: Any) -> Value:
        if raw.__class__ is int:
            return str(raw)
        return slow(raw)

    return convert


def _fast_values(spec: FieldSpec) -> Converter:
    """A value-mapped field with the null handling folded in: a hit takes one lookup. Raw text
    seen before is looked up as it is (a journal holds a dozen mark codes, a million times).
    Blank text is NULL before it is a key of the map (the default, or missing when required)."""
    to_text, table, slow = (
        _steps(spec),
        dict(spec.values or {}),
        _with_nulls(spec, _with_values(spec)),
    )
    search = CONTROL_CHARS.search
    seen: dict[str, Value] = {}

    def convert(raw: Any) -> Value:
        if raw.__class__ is str:
            found = seen.get(raw, _MISSING)
            if found is not _MISSING:
                return found
            blank = not raw.strip()
            found = _MISSING if blank or search(raw) else table.get(to_text(raw), _MISSING)
            if found is not _MISSING:
                if len(seen) < SEEN_LIMIT:
                    seen[raw] = found
                return found
        return slow(raw)

    return convert


def key_part(raw: object) -> str:
    """One key column's value as key text (text keys are kept exactly as stored)."""
    if raw.__class__ is int:
        return str(raw)
    number = whole_number(raw) if isinstance(raw, float | Decimal) else None
    if number is not None:
        return str(number)
    text = _as_text(raw)
    if not text.strip():
        raise InvalidValue("empty key")
    if "\x00" in text or "\x01" in text:
        raise InvalidValue("key contains control characters")
    return text


def _with_values(spec: FieldSpec) -> Converter:
    """A value-mapped field: the text (after transforms) looked up in the map, whatever the
    field's type, since TOML map keys are always text."""
    to_text, table = _steps(spec), dict(spec.values or {})

    fallback = spec.fallback

    def convert(raw: Any) -> Value:
        text = _as_text(raw)
        if CONTROL_CHARS.search(text):
            raise InvalidValue(CONTROL_REASON)
        text = to_text(text)
        try:
            return table[text]
        except KeyError:
            if fallback is not None:
                return fallback
            shown = _shown(spec, text)
            raise InvalidValue(
                "value not in the value map of the mapping" + (f":{shown}" if shown else "")
            ) from None

    return convert


def _with_nulls(spec: FieldSpec, inner: Converter) -> Converter:
    required, default = spec.required, spec.default

    def convert(raw: Any) -> Value:
        if raw is None or (raw.__class__ is str and not raw.strip()):
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
    """The converter for one field: null handling, then the value map or the type."""
    if spec.values is not None:
        return _fast_values(spec)
    if spec.type == "ref":
        return _fast_ref(spec)
    return _with_nulls(spec, BUILDERS[spec.type](spec))


def joined(parts: Sequence[object], separator: str) -> str | None:
    """Several raw columns as one text (name parts, say), skipping empty ones."""
    # A part holding a control character is kept unstripped, for the converter to reject.
    texts = [
        t if CONTROL_CHARS.search(t) else t.strip()
        for t in (_as_text(p) for p in parts if p is not None)
    ]
    kept = [t for t in texts if t]
    return separator.join(kept) if kept else None
