"""Rows to records: keys, sort keys, fingerprints, and the builder compiled for each mapping.

A record's key is its key columns' values as text; its sort key is an order-preserving text
form of them (whole numbers sort as numbers), the order every merge in the planner follows; its
fingerprint is a short hash of its payload that the state store keeps.

``compile_builder`` turns a mapping's fields into one function, row → record, run once per
source row (a million times a run). It is generated as Python source from the field positions
alone, so that a row is mapped in one frame: one line per field, the reference fields' usual
case (a whole-number id) done inline, the payload a dict display. Nothing from a mapping file
becomes code: field names, converters and the entity are values the function is given, and the
source is built from integers and fixed text only. A value that fails to convert is named by
the slow path, ``_first_problem``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import xxhash

from bridge.core.fields import (
    FieldSpec,
    InvalidValue,
    compile_field,
    joined,
    key_part,
    whole_number,
)
from bridge.core.model import Record, Value

RecordBuilder = Callable[[Sequence[Any]], Record]
NO_ATTRS: Mapping[str, Value] = MappingProxyType({})  # shared: records never change attrs
KEY_SEPARATOR = "-"
SORT_SEPARATOR = "\x01"  # below every character a key part may hold
INT_OFFSET = 2**63
_xxh3 = xxhash.xxh3_64_hexdigest


class RowRejected(Exception):  # noqa: N818 - an outcome of building a record
    """A row cannot become a record: ``field`` and ``reason`` say why."""

    def __init__(self, key: str, sort_key: str, field: str, reason: str) -> None:
        super().__init__(reason)
        self.key, self.sort_key, self.field, self.reason = key, sort_key, field, reason


# --- keys and fingerprints ------------------------------------------------------------------


def sort_key_part(part: object) -> str:
    """An order-preserving text form of one key part: whole numbers (int, or the Decimal some
    drivers return) sort as numbers, text in code point order (the binary collation's)."""
    number = (
        part
        if part.__class__ is int
        else (whole_number(part) if isinstance(part, float | Decimal) else None)
    )
    if number is not None:
        return "i%020d" % (number + INT_OFFSET)  # noqa: UP031 - measurably faster on the hot path
    return "s" + key_part(part)


def make_keys(parts: Sequence[object]) -> tuple[str, str]:
    """The key text and sort key of one row's key column values."""
    if len(parts) == 1:
        return key_part(parts[0]), sort_key_part(parts[0])
    key = KEY_SEPARATOR.join(key_part(p) for p in parts)
    return key, SORT_SEPARATOR.join(sort_key_part(p) for p in parts)


def sort_key_from_key(key: str) -> str:
    """A sort key for a key seen only as text (a portal's ``sourcedId``): parts of digits are
    taken for whole numbers, as the bridge's own keys of integer columns are."""
    return SORT_SEPARATOR.join(
        sort_key_part(int(p) if p.isdigit() else p) for p in key.split(KEY_SEPARATOR)
    )


def key_from_sort_key(sort_key: str) -> str:
    """The key text a sort key was made from (the inverse of ``make_keys``)."""
    parts = sort_key.split(SORT_SEPARATOR)
    return KEY_SEPARATOR.join(str(int(p[1:]) - INT_OFFSET) if p[0] == "i" else p[1:] for p in parts)


def fingerprint(version: int, values: Sequence[Value]) -> str:
    """A short stable hash of a payload's values (in mapping field order) and mapping version.
    Text is hashed as is, anything else by its repr, each tagged so "1" and 1 differ. XXH3
    (64 bits, the version as its seed) is stable across processes, platforms and releases,
    and cheaper per row than a cryptographic hash; nothing here needs one."""
    text = "\x01".join([v if isinstance(v, str) else f"\x02{v!r}" for v in values])
    return _xxh3(text.encode(), version)


def _text_fingerprint(version: int, values: Sequence[Value]) -> str:
    """``fingerprint``, faster for values that are all text (marks: two keys and a value),
    where nothing needs a tag: the same result for any values."""
    try:
        text = "\x01".join(values)  # TypeError unless all are text
    except TypeError:
        return fingerprint(version, values)
    return _xxh3(text.encode(), version)


# --- the compiled builder ---------------------------------------------------------------------


def compile_builder(  # noqa: PLR0917 - one call site, all arguments distinct
    entity: str,
    version: int,
    columns: tuple[str, ...],
    key_columns: tuple[str, ...],
    fields: tuple[FieldSpec, ...],
    watermark: str | None,
) -> RecordBuilder:
    """The row → record function of one mapping (see the module docstring)."""
    exported = [f for f in fields if f.export]
    hidden = [f for f in fields if not f.export]
    given: dict[str, Any] = {
        "Record": Record,
        "InvalidValue": InvalidValue,
        "NO_ATTRS": NO_ATTRS,
        "OFFSET": INT_OFFSET,
        "ENTITY": entity,
        "VERSION": version,
        "hashed": _text_fingerprint if all(map(_gives_text, exported)) else fingerprint,
        "row_keys": _keys_of(columns, key_columns),
        "first_problem": _problem_finder(columns, fields),  # the first in the mapping's order
    }
    lines = ["def build(row):", *_key_lines(columns, key_columns), "    try:"]
    for n, spec in enumerate(exported):
        given[f"name{n}"], given[f"convert{n}"] = spec.name, compile_field(spec)
        lines += _value_lines(f"v{n}", n, spec, columns, given)
    for n, spec in enumerate(hidden):
        given[f"hidden_name{n}"], given[f"hidden{n}"] = spec.name, _converted(spec, columns)
    attrs = ", ".join(f"hidden_name{n}: hidden{n}(row)" for n in range(len(hidden)))
    values = "".join(f"v{n}, " for n in range(len(exported)))
    payload = ", ".join(f"name{n}: v{n}" for n in range(len(exported)))
    mark = f"row[{columns.index(watermark)}]" if watermark else "None"
    lines += [
        f"        attrs = {{{attrs}}}" if hidden else "        attrs = NO_ATTRS",
        "    except InvalidValue:",
        "        raise first_problem(row, key, sort_key) from None",
        f"    return Record(ENTITY, key, sort_key, {{{payload}}}, "
        f"hashed(VERSION, [{values}]), attrs, {mark})",
    ]
    exec(compile("\n".join(lines), f"<builder of {entity}>", "exec"), given)  # noqa: S102 - see the module docstring
    build: RecordBuilder = given["build"]
    return build


def _key_lines(columns: tuple[str, ...], key_columns: tuple[str, ...]) -> list[str]:
    """The key and sort key: a one-column whole-number key inline, anything else by call."""
    if len(key_columns) > 1:
        return ["    key, sort_key = row_keys(row)"]
    return [
        f"    part = row[{columns.index(key_columns[0])}]",
        "    if part.__class__ is int:",
        "        key, sort_key = str(part), 'i%020d' % (part + OFFSET)",
        "    else:",
        "        key, sort_key = row_keys(row)",
    ]


def _value_lines(
    name: str, n: int, spec: FieldSpec, columns: tuple[str, ...], given: dict[str, Any]
) -> list[str]:
    """One exported field's value: a reference holding a whole number is its text inline (as
    its converter would give it); anything else goes through the converter."""
    if len(spec.columns) > 1:
        given[f"read{n}"] = _reader(spec, columns)
        return [f"        {name} = convert{n}(read{n}(row))"]
    at = columns.index(spec.columns[0])
    if spec.type == "ref" and spec.values is None:
        return [
            f"        {name} = row[{at}]",
            f"        {name} = str({name}) if {name}.__class__ is int else convert{n}({name})",
        ]
    return [f"        {name} = convert{n}(row[{at}])"]


def _gives_text(spec: FieldSpec) -> bool:
    """True when the field's values are text (or None): a text, date or reference field, or a
    value map whose canonical values are all text."""
    if spec.values is not None:
        return all(
            isinstance(v, str) for v in [*spec.values.values(), spec.fallback] if v is not None
        )
    return spec.type in ("text", "date", "ref")


def _reader(spec: FieldSpec, columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Any]:
    """How one field's raw value is taken from a row (one column, or several joined)."""
    positions = [columns.index(c) for c in spec.columns]
    if len(positions) == 1:
        (at,) = positions
        return lambda row: row[at]
    separator = spec.separator
    return lambda row: joined([row[i] for i in positions], separator)


def _converted(spec: FieldSpec, columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Value]:
    read, convert = _reader(spec, columns), compile_field(spec)
    return lambda row: convert(read(row))


def _problem_finder(
    columns: tuple[str, ...], fields: Sequence[FieldSpec]
) -> Callable[[Sequence[Any], str, str], RowRejected]:
    """The slow path: the rejection naming the first field of a row that fails to convert."""
    steps = [(f.name, _converted(f, columns)) for f in fields]

    def first_problem(row: Sequence[Any], key: str, sort_key: str) -> RowRejected:
        for name, convert in steps:
            try:
                convert(row)
            except InvalidValue as exc:
                return RowRejected(key, sort_key, name, exc.reason)
        return RowRejected(key, sort_key, "", "could not be converted")

    return first_problem


def _keys_of(
    columns: tuple[str, ...], key_columns: tuple[str, ...]
) -> Callable[[Sequence[Any]], tuple[str, str]]:
    """Key text and sort key of a row, any key; a NULL or unusable key part rejects the row."""
    key_at = [columns.index(c) for c in key_columns]

    def row_keys(row: Sequence[Any]) -> tuple[str, str]:
        parts = [row[i] for i in key_at]
        for name, part in zip(key_columns, parts, strict=True):
            if part is None:
                raise RowRejected("", "", name, "missing key (NULL in a key column)")
        try:
            return make_keys(parts)
        except InvalidValue as exc:
            # name the key column that holds the unusable part, not always the first one
            name = next(n for n, p in zip(key_columns, parts, strict=True) if _bad_key_part(p))
            raise RowRejected("", "", name, exc.reason) from None

    return row_keys


def _bad_key_part(part: object) -> bool:
    try:
        key_part(part)
    except InvalidValue:
        return True
    return False
