"""The builder earns its exec: the generated row → record function agrees, record by record, with
a plain interpreted one written from the documented semantics (``docs/mappings.md``).

Hypothesis draws whole mapping files (every field type and option, names that are keywords,
dunders, quotes, backslashes, Cyrillic, the builder's own local names...), loads them through
``load_mappings`` like the bridge does, then feeds the compiled ``build`` and ``interpret`` below
the same rows (values that make every kind of rejection) and compares every outcome: the same
key, sort key, payload (in order, with types), fingerprint, attrs and watermark, or the same
rejection with the same key, field and reason.

``interpret`` uses nothing from ``bridge.core.builder`` nor the converters of
``bridge.core.fields``: only the tables that *are* the definitions there (transforms, control
characters, yes/no words, the accepted date forms and range), and it reads each row as a dict
by column name.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import xxhash
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from bridge.core.fields import (
    CONTROL_CHARS,
    CONTROL_REASON,
    DATE_TEXT,
    EARLIEST_DATE,
    FALSE_WORDS,
    LATEST_DATE,
    TRANSFORMS,
    TRUE_WORDS,
    FieldSpec,
)
from bridge.core.mapping import FILTER_OPS, CompiledMapping, RowRejected, load_mappings

# --- the interpreted reference ----------------------------------------------------------------


class Bad(Exception):  # noqa: N818 - the reference's own "this value cannot be converted"
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def as_text(raw: object) -> str:
    """Text as is, bytes decoded as UTF-8 (or rejected), anything else its str()."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad("text is not valid UTF-8") from None
    return str(raw)


def whole(raw: object) -> int | None:
    """An int, a whole float or Decimal, or digits (signed, padded): the whole number; else None."""
    if type(raw) is int:
        return raw
    if isinstance(raw, float | Decimal):
        return int(raw) if math.isfinite(raw) and raw == int(raw) else None
    if isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9]+", raw.strip()):
        return int(raw.strip())
    return None


def shown(spec: FieldSpec, raw: object, width: int = 40) -> str:
    """A bad value as a reason may quote it: never for a personal field."""
    return "" if spec.personal else f" {str(raw)[:width]!r}"


def transformed(spec: FieldSpec, text: str) -> str:
    for name in spec.transforms:
        text = TRANSFORMS[name](text)
    return text


def clean_text(spec: FieldSpec, raw: object) -> str:
    """The raw value as text, control characters rejected first, then the transforms."""
    text = as_text(raw)
    if CONTROL_CHARS.search(text):
        raise Bad(CONTROL_REASON)
    return transformed(spec, text)


def mapped(spec: FieldSpec, raw: object) -> Any:
    assert spec.values is not None
    text = clean_text(spec, raw)
    if text in spec.values:
        return spec.values[text]
    if spec.fallback is not None:
        return spec.fallback
    quoted = shown(spec, text)
    raise Bad("value not in the value map of the mapping" + (f":{quoted}" if quoted else ""))


def text_value(spec: FieldSpec, raw: object) -> str:
    text = clean_text(spec, raw)
    if len(text) > spec.max_length:
        raise Bad(f"text is {len(text)} characters long, over the limit of {spec.max_length}")
    return text


def int_value(spec: FieldSpec, raw: object) -> int:
    number = whole(raw)
    if number is None:
        raise Bad(f"not a whole number:{shown(spec, raw)}")
    if (spec.min is not None and number < spec.min) or (spec.max is not None and number > spec.max):
        what = "the value" if spec.personal else str(number)
        raise Bad(f"{what} is outside {spec.min}..{spec.max}")
    return number


def bool_value(spec: FieldSpec, raw: object) -> Any:
    try:
        word = as_text(raw)
    except Bad:
        word = ""
    if not CONTROL_CHARS.search(word):
        if word.strip().lower() in TRUE_WORDS:
            return True
        if word.strip().lower() in FALSE_WORDS:
            return False
    if spec.fallback is not None:
        return spec.fallback
    raise Bad(f"not a yes/no value:{shown(spec, raw)}")


def date_value(spec: FieldSpec, raw: object) -> str:
    if isinstance(raw, dt.datetime):
        text = raw.date().isoformat()
    elif isinstance(raw, dt.date):
        text = raw.isoformat()
    else:
        text = as_text(raw).strip()
        found = DATE_TEXT.fullmatch(text)
        try:
            if found is None:
                raise ValueError(text)
            parts = [found[f"{p}1"] or found[f"{p}2"] or found[f"{p}3"] for p in "ymd"]
            text = dt.date(*map(int, parts)).isoformat()
        except ValueError:
            quoted = raw if iso_shaped(raw) else text
            raise Bad("not a valid date" + shown(spec, quoted, 30).replace(" ", ": ", 1)) from None
    if not EARLIEST_DATE <= text <= LATEST_DATE:
        what = "the date" if spec.personal else f"date {text}"
        raise Bad(f"{what} is outside {EARLIEST_DATE}..{LATEST_DATE}")
    return text


def iso_shaped(raw: object) -> bool:
    """A known quirk of ``fields.parse_date``, not the builder's, reported: bad text shaped like
    an ISO date (10 ASCII characters, dashes at 4 and 7, say '2025-02-3 ') is quoted in the
    reason as given, where any other bad date text is quoted stripped. Both reject; only the
    quote differs. Drop this (quote ``text`` always) once fields.py quotes the stripped text."""
    return isinstance(raw, str) and len(raw) == 10 and raw[4] == "-" == raw[7] and raw.isascii()


def key_text(part: object) -> str:
    """One key part as text: whole numbers as digits, text exactly as stored."""
    number = (
        part if type(part) is int else (whole(part) if isinstance(part, float | Decimal) else None)
    )
    if number is not None:
        return str(number)
    text = as_text(part)
    if not text.strip():
        raise Bad("empty key")
    if "\x00" in text or "\x01" in text:
        raise Bad("key contains control characters")
    return text


def sort_text(part: object) -> str:
    """One key part, order-preserving: whole numbers offset and zero-padded, text prefixed."""
    number = (
        part if type(part) is int else (whole(part) if isinstance(part, float | Decimal) else None)
    )
    if number is not None:
        return "i%020d" % (number + 2**63)  # noqa: UP031 - the documented form
    return "s" + key_text(part)


def ref_value(spec: FieldSpec, raw: object) -> str:
    return key_text(raw.strip() if isinstance(raw, str) else raw)


TYPED: dict[str, Callable[[FieldSpec, object], Any]] = {
    "text": text_value,
    "int": int_value,
    "bool": bool_value,
    "date": date_value,
    "ref": ref_value,
}


def raw_of(spec: FieldSpec, row: Mapping[str, object]) -> object:
    """A field's raw value: its column's, or its columns' non-empty values joined."""
    if len(spec.columns) == 1:
        return row[spec.columns[0]]
    texts = [as_text(row[c]) for c in spec.columns if row[c] is not None]
    # a part holding a control character stays unstripped, for the converter to reject
    kept = [t if CONTROL_CHARS.search(t) else t.strip() for t in texts]
    kept = [t for t in kept if t]
    return spec.separator.join(kept) if kept else None


def value_of(spec: FieldSpec, row: Mapping[str, object]) -> Any:
    """One field: NULL or blank is the default (or a rejection if required, or None); else the
    value map, whatever the type; else the type's conversion."""
    raw = raw_of(spec, row)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if spec.default is not None:
            return spec.default
        if spec.required:
            raise Bad("missing value")
        return None
    if spec.values is not None:
        return mapped(spec, raw)
    return TYPED[spec.type](spec, raw)


def hashed(version: int, values: Sequence[Any]) -> str:
    text = "\x01".join(v if isinstance(v, str) else f"\x02{v!r}" for v in values)
    return xxhash.xxh3_64_hexdigest(text.encode(), version)


Outcome = tuple[Any, ...]


def interpret(mapping: CompiledMapping, row: Mapping[str, object]) -> Outcome:
    """Row → ("record", ...) or ("rejected", key, sort key, field, reason), step by step."""
    parts = [row[c] for c in mapping.key_columns]
    for column, part in zip(mapping.key_columns, parts, strict=True):
        if part is None:
            return ("rejected", "", "", column, "missing key (NULL in a key column)")
    for column, part in zip(mapping.key_columns, parts, strict=True):
        try:
            key_text(part)
        except Bad as bad:
            return ("rejected", "", "", column, bad.reason)
    key = "-".join(key_text(p) for p in parts)
    sort_key = "\x01".join(sort_text(p) for p in parts)
    values: dict[str, Any] = {}
    for spec in mapping.fields:  # every field, in the mapping's order: the first bad one is named
        try:
            values[spec.name] = value_of(spec, row)
        except Bad as bad:
            return ("rejected", key, sort_key, spec.name, bad.reason)
    payload = {f.name: values[f.name] for f in mapping.fields if f.export}
    attrs = {f.name: values[f.name] for f in mapping.fields if not f.export}
    start, end = payload.get("date_from"), payload.get("date_to")
    if start is not None and end is not None and end < start:
        reason = "date_to is before date_from: the interval ends before it begins"
        return ("rejected", key, sort_key, "date_to", reason)
    mark = row[mapping.watermark] if mapping.watermark else None
    fingerprint = hashed(mapping.version, list(payload.values()))
    return (
        "record",
        mapping.entity,
        key,
        sort_key,
        typed(payload),
        fingerprint,
        typed(attrs),
        typed({"": mark}),
    )


def typed(values: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Names, types and reprs in order: 1 and True differ, NaN equals NaN."""
    return [(name, type(v).__name__, repr(v)) for name, v in values.items()]


def built(mapping: CompiledMapping, row: Mapping[str, object]) -> Outcome:
    """The same outcome from the compiled builder, given the row as the source reads it."""
    try:
        record = mapping.build(tuple(row[c] for c in mapping.columns))
    except RowRejected as rejected:
        return ("rejected", rejected.key, rejected.sort_key, rejected.field, rejected.reason)
    return (
        "record",
        record.entity,
        record.key,
        record.sort_key,
        typed(record.payload),
        record.fingerprint,
        typed(record.attrs),
        typed({"": record.watermark}),
    )


# --- mapping files ----------------------------------------------------------------------------


def toml(value: object) -> str:
    """A value as TOML: text with every quote, backslash and control character escaped."""
    if isinstance(value, str):
        escaped = (
            f"\\u{ord(c):04x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c
            for c in value
        )
        return '"' + "".join(escaped) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float | dt.date):
        return value.isoformat() if isinstance(value, dt.date) else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml(k)} = {toml(v)}" for k, v in value.items()) + "}"


@dataclass
class Drawn:
    """A mapping file as drawn: its top-level keys, source table and fields."""

    top: dict[str, Any]
    source: dict[str, Any]
    fields: dict[str, dict[str, Any]]

    def text(self) -> str:
        lines = [f"{k} = {toml(v)}" for k, v in self.top.items()]
        lines += ["[source]", *(f"{k} = {toml(v)}" for k, v in self.source.items())]
        lines += ["[fields]", *(f"{toml(k)} = {toml(v)}" for k, v in self.fields.items())]
        return "\n".join(lines) + "\n"


def compiled(drawn: Drawn) -> CompiledMapping:
    """The drawn file loaded and compiled the way the bridge does it."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "drawn.toml").write_text(drawn.text(), encoding="utf-8")
        (mapping,) = load_mappings(Path(directory)).mappings
    assert [f.name for f in mapping.fields] == list(drawn.fields)
    return mapping


HOSTILE = [
    *("class", "def", "lambda", "None", "True", "import", "return", "yield", "await"),
    *("__init__", "__class__", "__builtins__", "__import__", "__dict__", "_"),
    # the generated function's own names, locals and givens
    *("build", "row", "key", "sort_key", "part", "attrs", "v0", "v1", "name0", "name1"),
    *("convert0", "read0", "hidden0", "hidden_name0", "Record", "InvalidValue", "NO_ATTRS"),
    *("OFFSET", "ENTITY", "VERSION", "hashed", "row_keys", "first_problem", "str", "exc"),
    *("'", '"', "\\", "\\n", "a'b", 'a"b', "\"'\"'", "'''", '"""', "{", "}", "{0}", "%s", "%(x)s"),
    *("v0: 1}, {", "row[0]", "x)\nimport os\n(", "#", " ", "  with  spaces ", "\t", "\n"),
    *("имя", "Фамилия ученика", "ё", "Ё", "ǅ", "ß", "İ", "名前", "🙂", "\u200b", "\x85"),
    *("\x00", "a\x01b", "\x7f", "\x1f", "id", "ID", "Id"),
]
NAMES = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6))
COLUMNS = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=6))
SAMPLE_TEXTS = [
    *("", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0"),
    *("a\x00b", "\x01", "x\x7f", "\x9f", "\u2028", "a\tb", " a  b ", "A b  C", "a\x0bb"),
    *("да", " Да ", "ДА", "нет", "Н", "yes", "TRUE", "t", "Y", "no", "0", "1", "2", "-1"),
    *(" 42 ", "+7", "-0", "007", "1.5", "1e3", "٣", "1_000", "9" * 25, "-" + "9" * 20),
    *("2025-02-28", "2025-02-30", "28.02.2025", "31.04.2025", "20250228", "20251301"),
    *("2025-02-28 10:30", "2025-02-28T10:30:00.5", "28.02.2025 10:30:15", " 2024-02-29 "),
    *("1899-12-31", "2101-01-01", "0001-01-01", "2025-02-3 ", "2025-2-28", "2025/02/28"),
    *("ß", "ßß", "İ", "ǆ", "ﬃ", "иванов пётр", "ИВАНОВ", "x" * 12, "Ж" * 70),
    *("5", "5+", "4-", "м", "ж", "m", "F", "н", "б", "уп", "Иванов Пётр Сергеевич"),
]
TEXTS = st.one_of(st.sampled_from(SAMPLE_TEXTS), st.text(max_size=12))
# A value map's source texts. Blank ones ('', ' ') are left out only because of a known bug of
# bridge.core.fields, not the builder (see test_blank_text_in_a_value_map_is_null below).
MAP_KEYS = st.one_of(st.sampled_from(SAMPLE_TEXTS), st.text(max_size=12))
VALUES = st.one_of(  # canonical values a mapping file may give (value maps, defaults, fallbacks)
    TEXTS,
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.dates(),
)
RAW = st.one_of(  # what a driver may return for a column
    st.none(),
    TEXTS,
    st.integers(-5, 20),
    st.integers(-(2**64), 2**64),
    st.booleans(),
    st.floats(),
    st.sampled_from([3.0, -0.0, 1.5, 1e20, 2.0**63]),
    st.sampled_from(["2", "2.5", "-0", "1E+2", "NaN", "Infinity", "-Infinity", "12.000"]).map(
        Decimal
    ),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6
    ),
    st.sampled_from([b"", b" ", b"1", b"abc", "Иванов".encode(), b"\xff\xfe", b"a\x00", b"yes"]),
    st.dates(),
    st.datetimes(),
)
DATES = st.dates(dt.date(1900, 1, 1), dt.date(2100, 12, 31))
INTS = st.one_of(st.integers(-3, 20), st.integers(-(2**63), 2**63 - 1))
FIT = {  # values fit for a type (most of them)
    "text": st.one_of(
        st.sampled_from(["Иванов", " Пётр  Иванов ", "5А", "ß", "x" * 7]),
        st.text(st.characters(categories=["L", "N", "Zs"]), max_size=8),
    ),
    "int": st.one_of(INTS, st.sampled_from([" 7 ", "-2", "+3", 3.0, Decimal("12.000"), "0"])),
    "bool": st.sampled_from([*sorted(TRUE_WORDS | FALSE_WORDS), " Да ", "YES", 1, 0, True, b"1"]),
    "date": st.one_of(DATES, DATES.map(lambda d: d.strftime("%d.%m.%Y")), DATES.map(str)),
    "ref": st.one_of(INTS, st.sampled_from(["a", " Б ", "007", 3.0, Decimal(4), b"7"])),
}
KEYS = st.one_of(INTS, st.sampled_from(["a", "Б", "007", " x ", 3.0, Decimal(4), b"k"]))


@st.composite
def fields(draw: st.DrawFn, entity: str, columns: list[str], own: str) -> dict[str, Any]:
    """One field's table: any type and any options mapping.py accepts."""
    body: dict[str, Any] = {}
    joins = draw(st.integers(0, 3)) == 0  # a join of columns (a name, say) now and then
    column = st.one_of(st.just(own), st.sampled_from(columns))  # its own, or one it may share
    picked = draw(st.lists(column, min_size=1, max_size=3 if joins else 1))
    if len(picked) == 1 and draw(st.booleans()):
        body["column"] = picked[0]
    else:
        body["columns"] = picked
    kind = draw(st.sampled_from([None, "text", "int", "bool", "date", "ref"]))
    if kind is not None:
        body["type"] = kind
    if kind == "ref" or draw(st.integers(0, 5)) == 0:
        body["ref"] = entity  # a mapping may refer to its own entity (a tree)
    options: dict[str, st.SearchStrategy[Any]] = {
        "transforms": st.lists(st.sampled_from(sorted(TRANSFORMS)), max_size=4),
        "values": st.dictionaries(MAP_KEYS, VALUES, min_size=1, max_size=5),
        "required": st.booleans(),
        "default": VALUES,
        "max_length": st.one_of(st.integers(1, 6), st.integers(1, 2**63 - 1)),
        "min": st.integers(-5, 20),
        "max": st.integers(-5, 20),
        "separator": st.one_of(st.sampled_from([" ", "", "-", ", ", "\x00", "\\", '"']), st.text()),
        "personal": st.booleans(),
        "export": st.booleans(),
        "description": st.text(max_size=10),
    }
    for name, option in options.items():  # each option half the time, a value map a quarter
        if draw(st.integers(0, 3)) == 0 if name == "values" else draw(st.booleans()):
            body[name] = draw(option)
    if ("values" in body or kind == "bool") and draw(st.booleans()):
        body["fallback"] = draw(VALUES)
    return body


def dated(body: dict[str, Any], column: str) -> dict[str, Any]:
    """A date_from or date_to field: a date of one column, so its values compare as ISO text."""
    dropped = ("values", "fallback", "default", "ref", "export", "column", "columns")
    return {
        **{k: v for k, v in body.items() if k not in dropped},  # exported: the entity needs it
        "column": column,
        "type": "date",
    }


@st.composite
def mapping_files(draw: st.DrawFn) -> Drawn:
    """A whole mapping file that loads: an entity, its source and 1-5 fields (more for a
    period) reading 3-8 columns, so that some fields share a column and most do not."""
    entity = draw(st.sampled_from(["subject", "teacher", "guardian", "period"]))
    columns = draw(st.lists(COLUMNS, min_size=3, max_size=8, unique=True))
    top: dict[str, Any] = {"entity": entity, "version": draw(st.integers(1, 2**63 - 1))}
    if draw(st.booleans()):
        top["description"] = draw(st.text(max_size=10))
    source: dict[str, Any] = {
        "table": draw(COLUMNS.filter(lambda t: bool(t.strip()))),
        "key": draw(st.lists(st.sampled_from(columns), min_size=1, max_size=3)),
    }
    if draw(st.booleans()):
        source["watermark"] = draw(st.one_of(st.sampled_from(columns), COLUMNS))
    for name in ("schema", "key_collation"):
        if draw(st.booleans()):
            source[name] = draw(COLUMNS)
    filters = st.fixed_dictionaries(
        {"column": st.sampled_from(columns), "op": st.sampled_from(FILTER_OPS)}
    ).map(lambda f: {**f, "value": [0, "x"] if f["op"] in ("in", "not_in") else 0})
    if draw(st.booleans()):
        source["where"] = draw(st.lists(filters, max_size=2))  # the source's, not the builder's
    names = draw(
        st.lists(
            NAMES.filter(lambda n: n not in ("date_from", "date_to")),
            min_size=1,
            max_size=5,
            unique=True,
        )
    )
    drawn = {name: draw(fields(entity, columns, f"{name}¦")) for name in names}
    if entity == "period":
        for name in ("date_from", "date_to"):
            at = draw(st.integers(0, len(drawn)))
            items = list(drawn.items())
            column = draw(st.one_of(st.just(f"{name}'"), st.sampled_from(columns)))
            items.insert(at, (name, dated(draw(fields(entity, columns, column)), column)))
            drawn = dict(items)
    return Drawn(top, source, drawn)


@dataclass
class Case:
    """A drawn mapping file and rows for it, each a dict by column name."""

    drawn: Drawn
    rows: list[dict[str, object]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A mapping file and rows for it. Half the rows hold in each column a value fit for a field
    reading it (so that rows often become records): a key part in a key column, value-map
    texts in variants for a value-mapped field, and so on; in the other half, a column holds
    any raw value a fifth of the time."""
    drawn = draw(mapping_files())
    fit: dict[str, list[st.SearchStrategy[object]]] = {c: [KEYS] for c in drawn.source["key"]}
    for body in drawn.fields.values():
        kind = body.get("type", "ref" if "ref" in body else "text")
        texts = [v for k in body.get("values", {}) for v in (k, k, f" {k} ", k.upper(), k + "\x0b")]
        for column in columns_of(body):
            fit.setdefault(column, []).append(st.sampled_from(texts) if texts else FIT[kind])
    if drawn.source.get("watermark"):
        fit.setdefault(drawn.source["watermark"], [])
    fit_row = st.fixed_dictionaries({c: st.one_of(*fits or [RAW]) for c, fits in fit.items()})
    any_row = st.fixed_dictionaries({c: st.one_of(*fits * 4, RAW) for c, fits in fit.items()})
    row = st.one_of(fit_row, any_row)
    return Case(drawn, draw(st.lists(row, min_size=1, max_size=15)))


def columns_of(body: dict[str, Any]) -> list[str]:
    return [body["column"]] if "column" in body else body.get("columns", [])


def subject(key: list[str], **fields: dict[str, Any]) -> Drawn:
    return Drawn({"entity": "subject", "version": 1}, {"table": "t", "key": key}, fields)


# --- the property -----------------------------------------------------------------------------


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
# the builder named the first key column for an unusable part of any key column
@example(case=Case(subject(["class", "def"], f={"column": "class"}), [{"class": "x", "def": ""}]))
# the builder named exported fields before hidden ones, whatever the mapping's order
@example(
    case=Case(
        subject(
            ["id"],
            a={"column": "x", "type": "int", "export": False},
            b={"column": "x", "type": "date"},
        ),
        [{"id": 1, "x": "nope"}],
    )
)
# an interval that ends before it begins; names that are the builder's own and quote-breakers
@example(
    case=Case(
        Drawn(
            {"entity": "period", "version": 7},
            {"table": "t", "key": ["row", "key"], "watermark": "'"},
            {
                "date_from": {"column": "from", "type": "date"},
                "row": {"columns": ["row", '"'], "separator": "\\", "transforms": ["upper"]},
                "date_to": {"column": "to", "type": "date"},
                "build": {"column": "\\", "ref": "period", "export": False},
            },
        ),
        [
            {
                "row": 1,
                "key": "б",
                '"': "x",
                "\\": 2,
                "'": dt.datetime(2025, 9, 1),
                "from": "01.09.2025",
                "to": "2025-05-31",
            },
            {
                "row": 2,
                "key": 3.0,
                '"': None,
                "\\": 4,
                "'": None,
                "from": "2025-09-01",
                "to": "20260531",
            },
        ],
    )
)
def test_builder_agrees_with_the_interpreted_mapping(case: Case) -> None:
    """Every row of every drawn mapping becomes the same record, or the same rejection, through
    the generated builder as through the plain reading of the mapping (the rows go twice, so
    the converters' memories of texts seen before are exercised too)."""
    mapping = compiled(case.drawn)
    for row in [*case.rows, *reversed(case.rows)]:
        outcome = interpret(mapping, row)
        assert built(mapping, row) == outcome, row
        event(outcome[0] if outcome[0] == "record" else re.sub(r"['\d].*", "", outcome[-1]))


def test_blank_text_in_a_value_map_is_null() -> None:
    """NULL or blank is the default, or a rejection when required, even in a value-mapped field
    whose map holds a blank text (docs/mappings.md: required, default)."""
    field = {"column": "x", "values": {"": "none", " ": "space"}, "required": True}
    mapping = compiled(subject(["id"], f=field))
    for blank in ("", " "):
        row = {"id": 1, "x": blank}
        assert interpret(mapping, row)[-1] == "missing value"
        assert built(mapping, row) == interpret(mapping, row)
