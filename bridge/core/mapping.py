"""Declarative mappings: ``mappings/*.toml`` loaded, validated and compiled once at start-up.

One file per canonical entity says which source table (or view) holds it, which columns form
its key, how columns become canonical fields (transforms, value maps, types), which fields are
personal data, which refer to other entities, and which column, if any, is a watermark for
incremental reads. ASIOU table and column names live only there, never in Python code.

Every problem in every file is reported at once (:class:`~bridge.core.errors.ConfigError`), each
with its file and the path inside it; the format is documented in ``docs/mappings.md``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.core.builder import (
    KEY_SEPARATOR,
    NO_ATTRS,
    SORT_SEPARATOR,
    RecordBuilder,
    RowRejected,
    compile_builder,
    fingerprint,
    key_from_sort_key,
    make_keys,
    sort_key_part,
)
from bridge.core.errors import ConfigError, Problem
from bridge.core.fields import TRANSFORMS, TYPES, FieldSpec
from bridge.core.model import Value

__all__ = [  # keys, fingerprints and rejections are built in bridge.core.builder, used from here
    "CANONICAL",
    "KEY_SEPARATOR",
    "NO_ATTRS",
    "SORT_SEPARATOR",
    "CompiledMapping",
    "Filter",
    "MappingSet",
    "RecordBuilder",
    "RowRejected",
    "fingerprint",
    "key_from_sort_key",
    "load_mappings",
    "make_keys",
    "sort_key_part",
]

# The canonical entities, in dependency order, with the fields the gate and planner rely on.
CANONICAL: dict[str, frozenset[str]] = {
    "period": frozenset({"date_from", "date_to"}),
    "subject": frozenset(),
    "teacher": frozenset(),
    "class": frozenset({"grade"}),
    "group": frozenset({"class"}),
    "pupil": frozenset({"consent"}),
    "enrollment": frozenset({"pupil", "class", "date_from", "date_to"}),
    "group_member": frozenset({"pupil", "group"}),
    "guardian_link": frozenset({"pupil", "guardian"}),
    "guardian": frozenset(),
    "lesson": frozenset({"class", "date"}),
    "work": frozenset({"lesson"}),
    "mark": frozenset({"work", "pupil", "value"}),
    "absence": frozenset({"lesson", "pupil", "code"}),
    "period_mark": frozenset({"pupil", "period", "value"}),
}
GATE_ONLY = frozenset({"consent"})  # read for the gate, never sent
FILTER_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null", "not_null")
TOP_KEYS = frozenset({"entity", "version", "description", "source", "fields"})
SOURCE_KEYS = frozenset({"table", "schema", "key", "watermark", "where", "key_collation"})
FIELD_KEYS = frozenset(
    {
        "column",
        "columns",
        "type",
        "transforms",
        "values",
        "required",
        "default",
        "max_length",
        "min",
        "max",
        "separator",
        "personal",
        "export",
        "ref",
        "description",
        "fallback",
    }
)


@dataclass(frozen=True)
class Filter:
    """A row filter from ``source.where``."""

    column: str
    op: str
    value: Value | list[Value] = None


@dataclass(frozen=True)
class CompiledMapping:
    """A validated mapping with its row→record builder compiled."""

    entity: str
    version: int
    file: str
    table: str
    schema: str | None
    key_columns: tuple[str, ...]
    columns: tuple[str, ...]
    filters: tuple[Filter, ...]
    watermark: str | None
    key_collation: str | None
    fields: tuple[FieldSpec, ...]
    build: RecordBuilder

    @property
    def refs(self) -> dict[str, str]:
        """Field name → the entity it refers to."""
        return {f.name: f.ref for f in self.fields if f.ref is not None}

    @property
    def personal_fields(self) -> frozenset[str]:
        """Fields holding personal data (never logged, never quoted in reasons)."""
        return frozenset(f.name for f in self.fields if f.personal)

    @property
    def location(self) -> str:
        """Where the rows come from, for messages (``schema.table``)."""
        return f"{self.schema}.{self.table}" if self.schema else self.table


@dataclass(frozen=True)
class MappingSet:
    """All compiled mappings, in dependency order (parents before children)."""

    mappings: tuple[CompiledMapping, ...]

    def __getitem__(self, entity: str) -> CompiledMapping:
        for mapping in self.mappings:
            if mapping.entity == entity:
                return mapping
        raise KeyError(entity)

    def __contains__(self, entity: object) -> bool:
        return any(m.entity == entity for m in self.mappings)

    @property
    def entities(self) -> tuple[str, ...]:
        """Entity names in dependency order."""
        return tuple(m.entity for m in self.mappings)


# --- loading and validation -------------------------------------------------------------------


class _Problems:
    """Collects problems of one file with their paths."""

    def __init__(self, file: str, sink: list[Problem]) -> None:
        self.file, self.sink = file, sink

    def add(self, path: str, message: str) -> None:
        self.sink.append(Problem(self.file, path, message))

    def unknown_keys(self, path: str, table: Mapping[str, Any], allowed: frozenset[str]) -> None:
        for name in sorted(set(table) - allowed):
            self.add(f"{path}.{name}" if path else name, "unknown key")


def load_mappings(directory: Path) -> MappingSet:
    """Load, validate and compile every ``*.toml`` in ``directory``; raise ConfigError listing
    every problem in every file."""
    problems: list[Problem] = []
    files = sorted(directory.glob("*.toml")) if directory.is_dir() else []
    if not files:
        raise ConfigError([Problem(str(directory), "", "no mapping files (*.toml) found")])
    raw = {f: _read_toml(f, problems) for f in files}
    by_entity, misfiled = _index_entities(raw, problems)
    specs = {
        e: _check_mapping(f, data, set(by_entity), problems) for e, (f, data) in by_entity.items()
    }
    for path, data in misfiled:  # still report the rest of what is wrong in them
        _check_mapping(path, data, set(by_entity), problems)
    if problems:
        raise ConfigError(problems)
    order = _dependency_order({e: s for e, s in specs.items() if s is not None}, problems)
    if problems:
        raise ConfigError(problems)
    return MappingSet(tuple(_compile(*specs[e]) for e in order if specs[e] is not None))  # type: ignore[misc]


def _read_toml(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        problems.append(Problem(str(path), "", f"cannot read: {exc}"))
        return None


def _index_entities(
    raw: dict[Path, dict[str, Any] | None], problems: list[Problem]
) -> tuple[dict[str, tuple[Path, dict[str, Any]]], list[tuple[Path, dict[str, Any]]]]:
    """Files by the entity they map, and the files whose entity is unknown or taken."""
    found: dict[str, tuple[Path, dict[str, Any]]] = {}
    misfiled: list[tuple[Path, dict[str, Any]]] = []
    for path, data in raw.items():
        if data is None:
            continue
        entity = data.get("entity")
        if not isinstance(entity, str) or entity not in CANONICAL:
            known = ", ".join(CANONICAL)
            problems.append(Problem(str(path), "entity", f"must be one of: {known}"))
            misfiled.append((path, data))
        elif entity in found:
            problems.append(
                Problem(str(path), "entity", f"{entity!r} is already mapped in {found[entity][0]}")
            )
            misfiled.append((path, data))
        else:
            found[entity] = (path, data)
    return found, misfiled


_Spec = tuple[str, dict[str, Any], tuple[FieldSpec, ...]]


def _check_mapping(
    path: Path, data: dict[str, Any], mapped: set[str], sink: list[Problem]
) -> _Spec | None:
    """Validate one file; return (file, source table, fields) or None when it has problems."""
    before = len(sink)
    p = _Problems(str(path), sink)
    p.unknown_keys("", data, TOP_KEYS)
    version = data.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        p.add("version", "must be a positive whole number")
    source = _check_source(p, data.get("source"))
    fields = _check_fields(p, data.get("fields"), mapped)
    entity = data.get("entity")
    names = {f.name for f in fields}
    required = CANONICAL.get(entity, frozenset()) if isinstance(entity, str) else frozenset()
    for name in sorted(required - names):
        p.add(f"fields.{name}", f"required by the {entity!r} entity but not mapped")
    for spec in fields:
        if spec.name in required and spec.name not in GATE_ONLY and not spec.export:
            p.add(
                f"fields.{spec.name}.export",
                f"the {entity!r} entity needs this field "
                "exported (the portal and the gate both use it)",
            )
    if len(sink) > before:
        return None
    return str(path), {"version": version, "entity": entity, **source}, fields


def _check_source(p: _Problems, source: object) -> dict[str, Any]:
    if not isinstance(source, dict):
        p.add("source", "missing table [source] (with table and key)")
        return {}
    p.unknown_keys("source", source, SOURCE_KEYS)
    table, key = source.get("table"), source.get("key")
    if not isinstance(table, str) or not table.strip():
        p.add("source.table", "must name the source table or view")
    if not isinstance(key, list) or not key or not all(isinstance(k, str) and k for k in key):
        p.add("source.key", "must be a non-empty list of column names")
        key = []
    for name in ("schema", "watermark", "key_collation"):
        if name in source and not isinstance(source[name], str):
            p.add(f"source.{name}", "must be text")
    filters = _check_filters(p, source.get("where", []))
    return {
        "table": table,
        "schema": source.get("schema"),
        "key": tuple(key),
        "watermark": source.get("watermark"),
        "where": filters,
        "key_collation": source.get("key_collation"),
    }


def _check_filters(p: _Problems, where: object) -> tuple[Filter, ...]:
    if not isinstance(where, list):
        p.add("source.where", "must be a list of {column, op, value} tables")
        return ()
    filters = []
    for i, item in enumerate(where):
        path = f"source.where[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            p.add(path, "must be a table with column, op and value")
            continue
        p.unknown_keys(path, item, frozenset({"column", "op", "value"}))
        op = item.get("op", "eq")
        if op not in FILTER_OPS:
            p.add(f"{path}.op", f"must be one of: {', '.join(FILTER_OPS)}")
        elif op in ("in", "not_in") and not isinstance(item.get("value"), list):
            p.add(f"{path}.value", f"must be a list for op {op!r}")
        filters.append(Filter(item["column"], op, item.get("value")))
    return tuple(filters)


def _check_fields(p: _Problems, fields: object, mapped: set[str]) -> tuple[FieldSpec, ...]:
    if not isinstance(fields, dict) or not fields:
        p.add("fields", "missing: map at least one field ([fields.NAME] with a column)")
        return ()
    specs = []
    for name, body in fields.items():
        spec = _check_field(p, f"fields.{name}", name, body, mapped)
        if spec is not None:
            specs.append(spec)
    return tuple(specs)


def _check_field(
    p: _Problems, path: str, name: str, body: object, mapped: set[str]
) -> FieldSpec | None:
    if not isinstance(body, dict):
        p.add(path, "must be a table")
        return None
    before = len(p.sink)
    p.unknown_keys(path, body, FIELD_KEYS)
    columns = _field_columns(p, path, body)
    kind = body.get("type", "ref" if "ref" in body else "text")
    if not isinstance(kind, str) or kind not in TYPES:
        p.add(f"{path}.type", f"must be one of: {', '.join(TYPES)}")
    _check_ref(p, path, body, kind, mapped)
    _check_options(p, path, body)
    if len(p.sink) > before:
        return None
    return _field_spec(name, columns, kind, body)


def _field_columns(p: _Problems, path: str, body: dict[str, Any]) -> tuple[str, ...]:
    if isinstance(body.get("column"), str) and body["column"]:
        if "columns" in body:
            p.add(path, "give either column or columns, not both")
        return (body["column"],)
    columns = body.get("columns")
    if isinstance(columns, list) and columns and all(isinstance(c, str) and c for c in columns):
        return tuple(columns)
    p.add(f"{path}.column", "missing: name the source column (or columns = [...] to join)")
    return ()


def _check_ref(p: _Problems, path: str, body: dict[str, Any], kind: str, mapped: set[str]) -> None:
    ref = body.get("ref")
    if ref is not None and not isinstance(ref, str):
        p.add(f"{path}.ref", "must be the name of an entity")
    elif kind == "ref" and ref is None:
        p.add(f"{path}.ref", "a field of type 'ref' must name the entity it refers to")
    elif ref is not None and ref not in mapped:
        p.add(f"{path}.ref", f"refers to {ref!r}, which has no mapping")


def _check_options(p: _Problems, path: str, body: dict[str, Any]) -> None:
    for name in ("required", "personal", "export"):
        if name in body and not isinstance(body[name], bool):
            p.add(f"{path}.{name}", "must be true or false")
    for name in ("max_length", "min", "max"):
        if name in body and (not isinstance(body[name], int) or isinstance(body[name], bool)):
            p.add(f"{path}.{name}", "must be a whole number")
    if isinstance(body.get("max_length"), int) and body["max_length"] < 1:
        p.add(f"{path}.max_length", "must be at least 1")
    transforms = body.get("transforms", [])
    if not isinstance(transforms, list):
        p.add(f"{path}.transforms", "must be a list")
        transforms = []
    for i, name in enumerate(transforms):
        if not isinstance(name, str) or name not in TRANSFORMS:
            p.add(
                f"{path}.transforms[{i}]",
                f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}",
            )
    if "fallback" in body and "values" not in body and body.get("type") != "bool":
        p.add(
            f"{path}.fallback",
            "only a field with a value map or a yes/no field can have a fallback",
        )
    if "separator" in body and not isinstance(body["separator"], str):
        p.add(f"{path}.separator", "must be text")
    values = body.get("values")
    if values is not None and (not isinstance(values, dict) or not values):
        p.add(f"{path}.values", "must be a non-empty table of source value = canonical value")
    if path.rpartition(".")[2] in DATED and (body.get("type") != "date" or values is not None):
        p.add(
            f"{path}.type",
            'an interval\'s end must be type = "date" without a value map (the two ends '
            "are compared)",
        )


def _field_spec(name: str, columns: tuple[str, ...], kind: str, body: dict[str, Any]) -> FieldSpec:
    return FieldSpec(
        name=name,
        columns=columns,
        type=kind,
        transforms=tuple(body.get("transforms", ())),
        values=body.get("values"),
        required=body.get("required", kind == "ref"),
        default=body.get("default"),
        max_length=body.get("max_length", 2000),
        min=body.get("min"),
        max=body.get("max"),
        separator=body.get("separator", " "),
        personal=body.get("personal", False),
        export=body.get("export", True),
        ref=body.get("ref"),
        fallback=body.get("fallback"),
    )


def _dependency_order(specs: dict[str, _Spec], problems: list[Problem]) -> list[str]:
    """Entities with every referenced entity before them; ties keep the canonical order."""
    order: list[str] = []
    pending = [e for e in CANONICAL if e in specs]
    while pending:
        ready = [
            e
            for e in pending
            if all(f.ref in order or f.ref == e for f in specs[e][2] if f.ref is not None)
        ]
        if not ready:
            problems.extend(
                Problem(specs[e][0], "fields", "references form a cycle") for e in pending
            )
            return order
        order.append(ready[0])
        pending.remove(ready[0])
    return order


# --- compilation ------------------------------------------------------------------------------


def _compile(file: str, source: dict[str, Any], fields: tuple[FieldSpec, ...]) -> CompiledMapping:
    columns = _select_columns(source, fields)
    entity, version = source["entity"], source["version"]
    return CompiledMapping(
        entity=entity,
        version=version,
        file=file,
        table=source["table"],
        schema=source["schema"],
        key_columns=source["key"],
        columns=columns,
        filters=source["where"],
        watermark=source["watermark"],
        key_collation=source["key_collation"],
        fields=fields,
        build=_dated(
            compile_builder(entity, version, columns, source["key"], fields, source["watermark"]),
            fields,
        ),
    )


DATED = ("date_from", "date_to")
"""An interval (an enrolment's stay, a period) cannot end before it begins."""


def _dated(build: RecordBuilder, fields: tuple[FieldSpec, ...]) -> RecordBuilder:
    """``build``, rejecting a record whose ``date_to`` is before its ``date_from`` (both ISO
    text, so they compare as text); unchanged for a mapping without both fields."""
    names = {f.name for f in fields if f.export}
    if not all(n in names for n in DATED):
        return build
    start, end = DATED

    def checked(row: Any) -> Any:
        record = build(row)
        payload = record.payload
        last, first = payload[end], payload[start]
        if last is not None and first is not None and last < first:
            raise RowRejected(
                record.key,
                record.sort_key,
                end,
                f"{end} is before {start}: the interval ends before it begins",
            )
        return record

    return checked


def _select_columns(source: dict[str, Any], fields: tuple[FieldSpec, ...]) -> tuple[str, ...]:
    wanted = [*source["key"], *(c for f in fields for c in f.columns)]
    if source["watermark"]:
        wanted.append(source["watermark"])
    return tuple(dict.fromkeys(wanted))
