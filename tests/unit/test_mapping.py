"""Mappings: loading and validating ``mappings/*.toml``, keys, sort keys, fingerprints, records."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from textwrap import dedent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.errors import ConfigError
from bridge.core.mapping import (
    CANONICAL,
    SORT_SEPARATOR,
    MappingSet,
    RowRejected,
    fingerprint,
    load_mappings,
    make_keys,
    sort_key_part,
)

SHIPPED = Path(__file__).resolve().parents[2] / "mappings"
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # BIGINT and BIGINT UNSIGNED
# Key text as a key column may hold it: no control characters, no surrounding whitespace.
KEY_TEXT = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=8,
)


def write(directory: Path, files: dict[str, str]) -> Path:
    """Write mapping files into ``directory``."""
    for name, text in files.items():
        (directory / name).write_text(dedent(text), encoding="utf-8")
    return directory


# --- the shipped mappings ---------------------------------------------------------------------


def test_shipped_mappings_load(mappings: MappingSet) -> None:
    """The shipped mappings load with one mapping for each of the 15 canonical entities."""
    assert len(mappings.mappings) == 15
    assert set(mappings.entities) == set(CANONICAL)


def test_shipped_mappings_come_parents_first(mappings: MappingSet) -> None:
    """Every entity comes after every entity it refers to (guardian before guardian_link)."""
    position = {e: i for i, e in enumerate(mappings.entities)}
    for mapping in mappings.mappings:
        for target in mapping.refs.values():
            assert position[target] < position[mapping.entity], (mapping.entity, target)
    assert position["guardian"] < position["guardian_link"]


def test_shipped_mappings_map_every_required_field(mappings: MappingSet) -> None:
    """Each shipped mapping maps the fields the gate and planner rely on for its entity."""
    for mapping in mappings.mappings:
        names = {f.name for f in mapping.fields}
        assert CANONICAL[mapping.entity] <= names, mapping.entity


def test_select_columns_are_keys_fields_and_watermark(mappings: MappingSet) -> None:
    """A mapping reads its key columns, then field columns, then the watermark, each once."""
    klass = mappings["class"]
    assert klass.columns == ("id", "grade", "letter", "form_teacher_id", "modified_at")
    assert klass.key_columns == ("id",)
    assert mappings["absence"].key_columns == ("lesson_id", "pupil_id")


def test_personal_fields_and_refs(mappings: MappingSet) -> None:
    """Personal fields and references are read off the mapping."""
    pupil = mappings["pupil"]
    assert {"last_name", "first_name", "middle_name", "birth_date"} <= pupil.personal_fields
    assert "gender" not in pupil.personal_fields
    assert mappings["mark"].refs == {"work": "work", "pupil": "pupil"}


def test_mapping_set_lookup(mappings: MappingSet) -> None:
    """A mapping set finds mappings by entity and says which entities it holds."""
    assert mappings["pupil"].entity == "pupil"
    assert "pupil" in mappings
    assert "pupils" not in mappings
    with pytest.raises(KeyError):
        mappings["pupils"]


# --- building records -------------------------------------------------------------------------


def test_build_makes_a_record(mappings: MappingSet) -> None:
    """A row becomes a record: key, sort key, payload in field order, attrs and watermark."""
    klass = mappings["class"]
    stamp = datetime(2025, 9, 1, 8, 0)
    record = klass.build((1, "5", " а ", 3, stamp))
    assert (record.entity, record.key, record.sort_key) == ("class", "1", sort_key_part(1))
    assert dict(record.payload) == {"grade": 5, "letter": "А", "name": "5А", "form_teacher": "3"}
    assert record.watermark == stamp


def test_gate_only_fields_ride_in_attrs(mappings: MappingSet) -> None:
    """A field with export = false is kept in attrs, out of the payload and the fingerprint."""
    pupil = mappings["pupil"]
    row = [7, "Иванов", "Пётр", None, date(2014, 1, 2), "м", 1, datetime(2025, 9, 1)]
    with_consent, without = pupil.build(row), pupil.build([*row[:6], 0, row[7]])
    assert with_consent.attrs == {"consent": True}
    assert without.attrs == {"consent": False}
    assert "consent" not in with_consent.payload
    assert with_consent.fingerprint == without.fingerprint


def test_bad_value_rejects_the_row_with_field_and_key(mappings: MappingSet) -> None:
    """A value a converter rejects makes the row a rejection naming the key and field."""
    with pytest.raises(RowRejected) as caught:
        mappings["class"].build((4, "12", "А", None, datetime(2025, 9, 1)))
    assert (caught.value.key, caught.value.field) == ("4", "grade")
    assert caught.value.sort_key == sort_key_part(4)
    assert "1..11" in caught.value.reason


def test_null_key_rejects_the_row(mappings: MappingSet) -> None:
    """A NULL in a key column makes the row a rejection without a key."""
    with pytest.raises(RowRejected) as caught:
        mappings["absence"].build((100, None, "н", datetime(2025, 9, 1)))
    assert (caught.value.key, caught.value.field) == ("", "pupil_id")
    assert "NULL" in caught.value.reason


def test_composite_key_record(mappings: MappingSet) -> None:
    """A two-column key gives key text joined by '-' and a sort key of both parts."""
    record = mappings["absence"].build((100, 5, "Н", datetime(2025, 9, 1)))
    assert record.key == "100-5"
    assert record.sort_key == sort_key_part(100) + SORT_SEPARATOR + sort_key_part(5)
    assert record.payload["code"] == "absent"


# --- keys and sort keys -----------------------------------------------------------------------


def test_make_keys_single_and_composite() -> None:
    """Key text is the parts joined by '-'; the sort key joins the parts' sort forms."""
    assert make_keys([17]) == ("17", sort_key_part(17))
    assert make_keys([12, "345"]) == ("12-345", sort_key_part(12) + "\x01" + sort_key_part("345"))
    assert make_keys([" А "]) == (" А ", "s А ")


@given(INT64, INT64)
def test_int_sort_keys_order_numerically(a: int, b: int) -> None:
    """Sort keys of integer key parts compare as the integers do (negative ones too)."""
    assert (sort_key_part(a) < sort_key_part(b)) == (a < b)
    assert (sort_key_part(a) == sort_key_part(b)) == (a == b)


@given(KEY_TEXT, KEY_TEXT)
def test_text_sort_keys_order_by_code_point(a: str, b: str) -> None:
    """Sort keys of text key parts compare as the texts do, in code-point order."""
    assert (sort_key_part(a) < sort_key_part(b)) == (a < b)


def test_ints_sort_before_text() -> None:
    """Whatever their values, integer parts sort before text parts, so keys never tie."""
    assert sort_key_part(2**63) < sort_key_part("0")
    assert sort_key_part(10) > sort_key_part(9)
    assert sort_key_part("10") < sort_key_part("9")


@st.composite
def key_pairs(draw: st.DrawFn) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """Two composite keys of the same shape (each position an int or a text part)."""
    shape = draw(st.lists(st.sampled_from([INT64, KEY_TEXT]), min_size=2, max_size=3))
    first = tuple(draw(part) for part in shape)
    second = tuple(
        draw(st.one_of(part, st.just(value))) for part, value in zip(shape, first, strict=True)
    )
    return first, second


@given(key_pairs())
def test_composite_sort_keys_order_like_tuples(
    pair: tuple[tuple[object, ...], tuple[object, ...]],
) -> None:
    """Composite sort keys compare as the tuples of their parts do."""
    first, second = pair
    a, b = make_keys(first)[1], make_keys(second)[1]
    assert (a < b) == (first < second)
    assert (a == b) == (first == second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "z"), ("a\tb", "c")),
        ((" b",), ("a",)),
    ],
)
def test_sort_keys_follow_raw_order_of_untidy_text(
    first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    """Keys with tabs or stray spaces still get sort keys in the order SQL sorts them."""
    assert first < second
    assert make_keys(first)[1] < make_keys(second)[1]


def test_decimal_key_parts_order_numerically() -> None:
    """Whole-number Decimal keys sort numerically, like int keys."""
    assert sort_key_part(Decimal(9)) < sort_key_part(Decimal(10))


# --- fingerprints -----------------------------------------------------------------------------


def test_fingerprint_is_stable() -> None:
    """A fingerprint depends only on version and values: the same across runs and processes."""
    values = ["Иванов", 5, True, None, "2025-09-01"]
    assert fingerprint(1, values) == fingerprint(1, list(values))
    code = (
        "from bridge.core.mapping import fingerprint; "
        "print(fingerprint(1, ['Иванов', 5, True, None, '2025-09-01']))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert other.stdout.strip() == fingerprint(1, values)


@pytest.mark.parametrize(
    "other",
    [
        (2, ["Иванов", 5, True, None, "2025-09-01"]),
        (1, ["Иванов", "5", True, None, "2025-09-01"]),
        (1, ["Иванов", 5, 1, None, "2025-09-01"]),
        (1, ["Иванов", 5, True, "", "2025-09-01"]),
        (1, [5, "Иванов", True, None, "2025-09-01"]),
    ],
)
def test_fingerprint_changes_with_version_type_and_order(other: tuple[int, list[object]]) -> None:
    """A new mapping version, a value of another type or another field order changes it."""
    assert fingerprint(*other) != fingerprint(1, ["Иванов", 5, True, None, "2025-09-01"])


# --- loading errors ---------------------------------------------------------------------------


SUBJECT = """
    entity = "subject"
    [source]
    table = "subject"
    key = ["id"]
    [fields.name]
    column = "name"
"""

BROKEN = {
    "broken_syntax.toml": """
        entity = "mark"
        [source
        table = "mark"
    """,
    "pupils.toml": """
        entity = "pupils"
        [source]
        table = "pupil"
        key = ["id"]
        [fields.name]
        column = "name"
    """,
    "subject.toml": SUBJECT,
    "subject_again.toml": SUBJECT,
    "teacher.toml": """
        entity = "teacher"
        [source]
        key = ["id"]
        [fields.last_name]
        column = "last_name"
    """,
    "class.toml": """
        entity = "class"
        [source]
        table = "class_unit"
        key = []
        where = [{ column = "year_id", op = "like", value = 1 }]
        [fields.grade]
        column = "grade"
        type = "int"
    """,
    "pupil.toml": """
        entity = "pupil"
        [source]
        table = "pupil"
        key = ["id"]
        order_by = "id"
        [fields.last_name]
        column = "last_name"
        max_length = 0
        [fields.first_name]
        column = "first_name"
        transforms = ["trim", "strip"]
        [fields.birth_date]
        column = "birth_date"
        type = "datetime"
        [fields.gender]
        column = "gender"
        values = ["м", "ж"]
        [fields.consent]
        column = "pd_consent"
        type = "bool"
    """,
    "enrollment.toml": """
        entity = "enrollment"
        [source]
        table = "pupil_move"
        key = ["id"]
        [fields.pupil]
        column = "pupil_id"
        ref = "pupil"
        [fields.class]
        column = "class_id"
        ref = "class"
        [fields.date_from]
        column = "date_in"
        type = "date"
        [fields.school]
        column = "school_id"
        ref = "guardian"
    """,
}

EXPECTED_PROBLEMS = {
    ("broken_syntax.toml", ""): "cannot read",
    ("pupils.toml", "entity"): "must be one of",
    ("subject_again.toml", "entity"): "already mapped",
    ("teacher.toml", "source.table"): "must name the source table",
    ("class.toml", "source.key"): "non-empty list",
    ("class.toml", "source.where[0].op"): "must be one of",
    ("pupil.toml", "source.order_by"): "unknown key",
    ("pupil.toml", "fields.last_name.max_length"): "at least 1",
    ("pupil.toml", "fields.first_name.transforms[1]"): "unknown transform 'strip'",
    ("pupil.toml", "fields.birth_date.type"): "must be one of",
    ("pupil.toml", "fields.gender.values"): "non-empty table",
    ("enrollment.toml", "fields.date_to"): "required by the 'enrollment' entity",
    ("enrollment.toml", "fields.school.ref"): "refers to 'guardian', which has no mapping",
}


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """A directory with many broken files gives one ConfigError listing every problem with its
    file and path."""
    write(tmp_path, BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    found = {(Path(p.file).name, p.path): p.message for p in caught.value.problems}
    assert set(found) == set(EXPECTED_PROBLEMS)
    for where, fragment in EXPECTED_PROBLEMS.items():
        assert fragment in found[where], (where, found[where])
    assert all(Path(p.file).parent == tmp_path for p in caught.value.problems)
    assert str(tmp_path / "pupil.toml") in str(caught.value)


def test_empty_directory_is_a_config_error(tmp_path: Path) -> None:
    """A directory without mapping files is a ConfigError naming the directory."""
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert [(p.file, p.message) for p in caught.value.problems] == [
        (str(tmp_path), "no mapping files (*.toml) found")
    ]


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """A mappings path that does not exist is a ConfigError, not an OSError."""
    with pytest.raises(ConfigError, match="no mapping files"):
        load_mappings(tmp_path / "nowhere")


def test_reference_cycle_is_reported(tmp_path: Path) -> None:
    """Mappings that refer to each other in a cycle are refused, naming each file."""
    write(
        tmp_path,
        {
            "teacher.toml": """
            entity = "teacher"
            [source]
            table = "teacher"
            key = ["id"]
            [fields.home_class]
            column = "class_id"
            ref = "class"
        """,
            "class.toml": """
            entity = "class"
            [source]
            table = "class_unit"
            key = ["id"]
            [fields.grade]
            column = "grade"
            type = "int"
            [fields.form_teacher]
            column = "teacher_id"
            ref = "teacher"
        """,
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert {(Path(p.file).name, p.message) for p in caught.value.problems} == {
        ("teacher.toml", "references form a cycle"),
        ("class.toml", "references form a cycle"),
    }


def test_a_subset_of_entities_loads(tmp_path: Path) -> None:
    """A directory mapping only some entities loads them, in dependency order."""
    shipped = {
        n: (SHIPPED / n).read_text(encoding="utf-8")
        for n in ("teacher.toml", "class.toml", "subject.toml")
    }
    mappings = load_mappings(write(tmp_path, shipped))
    assert mappings.entities == ("subject", "teacher", "class")


@pytest.mark.parametrize("line", ['ref = ["teacher"]', 'transforms = [["trim"]]'])
def test_unhashable_option_values_are_problems(tmp_path: Path, line: str) -> None:
    """A list where a name is expected is reported as a problem, not a crash."""
    write(tmp_path, {"subject.toml": SUBJECT + f"    {line}\n"})
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    paths = [p.path for p in caught.value.problems]
    assert paths
    assert all(path.startswith("fields.name.") for path in paths), paths


def test_separator_must_be_text(tmp_path: Path) -> None:
    """A separator that is not text is a problem at load time."""
    write(
        tmp_path,
        {
            "subject.toml": SUBJECT.replace(
                'column = "name"', 'columns = ["name", "short_name"]\n    separator = 5'
            )
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert [p.path for p in caught.value.problems] == ["fields.name.separator"]


def test_problems_in_a_file_with_an_unknown_entity_are_reported(tmp_path: Path) -> None:
    """A file with a misspelt entity still has its other problems reported in the same run."""
    write(
        tmp_path,
        {
            "subject.toml": SUBJECT.replace('"subject"', '"subjects"', 1).replace(
                'column = "name"', 'column = "name"\n    transforms = ["strip"]'
            )
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    assert {p.path for p in caught.value.problems} == {"entity", "fields.name.transforms[0]"}


def test_an_interval_end_that_is_not_a_date_is_a_mapping_problem(tmp_path: Path) -> None:
    """date_from and date_to are compared with each other: each must be a date field (an int
    and a text end would fail at every row instead)."""
    (tmp_path / "period.toml").write_text(
        'entity = "period"\nversion = 1\n[source]\ntable = "p"\nkey = ["id"]\n'
        '[fields.date_from]\ncolumn = "a"\ntype = "int"\n'
        '[fields.date_to]\ncolumn = "b"\nvalues = { x = "2025-01-01" }\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path)
    paths = [p.path for p in caught.value.problems]
    assert "fields.date_from.type" in paths
    assert "fields.date_to.type" in paths
