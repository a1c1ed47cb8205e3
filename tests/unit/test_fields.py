"""Field converters: raw driver values become canonical values or a reason fit for an admin."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from bridge.core.fields import FieldSpec, InvalidValue, compile_field, joined, key_part, parse_date
from bridge.core.model import Value


def spec(kind: str = "text", **options: Any) -> FieldSpec:
    """A field of one column with the given type and options."""
    return FieldSpec(name="f", columns=("c",), type=kind, **options)


def convert(field: FieldSpec, raw: object) -> Value:
    """Convert one raw value with the field's compiled converter."""
    return compile_field(field)(raw)


def reason(field: FieldSpec, raw: object) -> str:
    """The reason the field's converter rejects ``raw`` (fails the test if it accepts it)."""
    with pytest.raises(InvalidValue) as caught:
        compile_field(field)(raw)
    return caught.value.reason


# --- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transforms", "raw", "want"),
    [
        (("trim",), "  Иванов  ", "Иванов"),
        (("lower",), "ИваНов", "иванов"),
        (("upper",), "5а", "5А"),
        (("title",), "иванов пётр", "Иванов Пётр"),
        (("collapse_spaces",), "  Тема \t урока\n 5  ", "Тема урока 5"),
        (("trim", "lower"), " Н ", "н"),
        ((), "  kept as is ", "  kept as is "),
    ],
)
def test_text_transforms(transforms: tuple[str, ...], raw: str, want: str) -> None:
    """Transforms apply in the mapping's order to the raw text."""
    assert convert(spec(transforms=transforms), raw) == want


def test_text_from_non_text_values() -> None:
    """Numbers and UTF-8 bytes become their text."""
    assert convert(spec(), 17) == "17"
    assert convert(spec(), "Ёж".encode()) == "Ёж"


def test_invalid_utf8_bytes_are_rejected() -> None:
    """Bytes that are not UTF-8 are rejected, not decoded into replacement characters."""
    assert reason(spec(), b"\xff\xfe") == "text is not valid UTF-8"


def test_tabs_and_newlines_are_text() -> None:
    """Tabs and line breaks are ordinary text (homework has several lines)."""
    assert convert(spec(), "§1,\nупр. 2\tи 3") == "§1,\nупр. 2\tи 3"


@pytest.mark.parametrize("raw", ["a\x00b", "a\x07", "\x1bescape", "a\x7fb", "a\x85b", "x\x9f"])
def test_control_characters_are_rejected(raw: str) -> None:
    """Text with C0 or C1 control characters (other than tab and line breaks) is rejected."""
    assert reason(spec(), raw) == "text contains control characters"


def test_overlong_text_is_rejected_with_its_length() -> None:
    """Text over max_length is rejected with its length and the limit in the reason."""
    why = reason(spec(max_length=10), "х" * 11)
    assert "11" in why
    assert "10" in why


def test_length_is_checked_after_transforms() -> None:
    """The limit applies to the text after transforms (trimmed spaces do not count)."""
    assert convert(spec(transforms=("trim",), max_length=3), "   abc   ") == "abc"


def test_text_at_the_limit_is_kept() -> None:
    """Text exactly max_length characters long is kept (characters, not bytes)."""
    assert convert(spec(max_length=4), "ёжик") == "ёжик"


# --- nulls and defaults -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_empty_values_are_none(raw: object) -> None:
    """NULL and blank text become None when the field is optional."""
    assert convert(spec(), raw) is None


@pytest.mark.parametrize("raw", [None, "", " \t "])
def test_required_field_rejects_empty_values(raw: object) -> None:
    """A required field rejects NULL and blank text as a missing value."""
    assert reason(spec(required=True), raw) == "missing value"


def test_default_replaces_empty_values() -> None:
    """A default stands in for NULL or blank text, even on a required field."""
    assert convert(spec(required=True, default="other"), None) == "other"
    assert convert(spec("bool", default=False), "  ") is False


# --- int --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "want"), [(5, 5), (" 12 ", 12), ("-3", -3), (7.0, 7), ("0", 0)])
def test_int_accepts_whole_numbers(raw: object, want: int) -> None:
    """Ints, whole floats and numeric text become ints."""
    assert convert(spec("int"), raw) == want


@pytest.mark.parametrize("raw", ["abc", "12.5", 12.5, True, False, "1e3", date(2025, 1, 1)])
def test_int_rejects_other_values(raw: object) -> None:
    """Text that is not a whole number, fractional floats, booleans and dates are rejected."""
    assert reason(spec("int"), raw).startswith("not a whole number")


@pytest.mark.parametrize(
    ("raw", "valid"), [(0, False), (1, True), (11, True), (12, False), (-1, False)]
)
def test_int_range_is_inclusive(raw: int, valid: bool) -> None:
    """min and max are inclusive bounds; outside them the value is rejected with the range."""
    field = spec("int", min=1, max=11)
    if valid:
        assert convert(field, raw) == raw
    else:
        assert "1..11" in reason(field, raw)


def test_int_with_one_bound() -> None:
    """A field with only min accepts any larger number."""
    assert convert(spec("int", min=0), 10**12) == 10**12
    assert "0..None" in reason(spec("int", min=0), -1)


def test_int_rejects_infinity() -> None:
    """An infinite float is rejected as not a whole number rather than crashing."""
    assert reason(spec("int"), float("inf")).startswith("not a whole number")


def test_int_accepts_decimal_whole_numbers() -> None:
    """A whole Decimal (what drivers return for NUMERIC columns) becomes an int."""
    assert convert(spec("int", min=1, max=11), Decimal("5")) == 5


# --- bool -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [1, "1", "true", "T", " yes ", "Y", "да", "Д", True])
def test_true_words(raw: object) -> None:
    """Yes-words in English and Russian, 1 and True become True."""
    assert convert(spec("bool"), raw) is True


@pytest.mark.parametrize("raw", [0, "0", "false", "F", "No", "n", "нет", "Н", False])
def test_false_words(raw: object) -> None:
    """No-words in English and Russian, 0 and False become False."""
    assert convert(spec("bool"), raw) is False


@pytest.mark.parametrize("raw", ["maybe", 2, "да!", "-1"])
def test_other_bool_words_are_rejected(raw: object) -> None:
    """Anything else is not a yes/no value, and the reason quotes it (the field is not
    personal)."""
    assert reason(spec("bool"), raw) == f"not a yes/no value: {str(raw)!r}"


# --- dates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("2025-09-01", "2025-09-01"),
        ("01.09.2025", "2025-09-01"),
        ("20250901", "2025-09-01"),
        (" 2025-09-01 ", "2025-09-01"),
        ("2025-09-01 08:00:00.000000", "2025-09-01"),
        ("2024-02-29", "2024-02-29"),
        (date(2025, 9, 1), "2025-09-01"),
        (datetime(2025, 9, 1, 23, 59), "2025-09-01"),
    ],
)
def test_dates_become_iso_text(raw: object, want: str) -> None:
    """ISO, dd.mm.yyyy, compact and SQLite datetime text, date and datetime become ISO dates."""
    assert convert(spec("date"), raw) == want
    assert parse_date(raw) == want


@pytest.mark.parametrize(
    "raw", ["2025-02-30", "30.02.2025", "2025-02-29", "2025-13-01", "yesterday", "31/12/2025"]
)
def test_impossible_dates_are_rejected(raw: str) -> None:
    """Dates that do not exist or are not dates at all are rejected."""
    assert reason(spec("date"), raw).startswith("not a valid date")


@pytest.mark.parametrize("raw", ["1899-12-31", date(1812, 9, 7), "2101-01-01"])
def test_dates_outside_the_plausible_range_are_rejected(raw: object) -> None:
    """Dates before 1900 or after 2100 are rejected as typing mistakes."""
    assert "outside 1900-01-01..2100-12-31" in reason(spec("date"), raw)


@pytest.mark.parametrize("raw", ["2025-09-011", "01.09.2025xyz", "2025091"])
def test_dates_with_extra_or_missing_characters_are_rejected(raw: str) -> None:
    """Date text that is not exactly a date (or a date and a time) is rejected, not guessed."""
    assert reason(spec("date"), raw).startswith("not a valid date")


# --- value maps -------------------------------------------------------------------------------


def test_value_map_translates_after_transforms() -> None:
    """A value map looks up the value after transforms."""
    field = spec(transforms=("trim", "lower"), values={"н": "absent", "б": "ill"})
    assert convert(field, " Н ") == "absent"
    assert convert(field, "б") == "ill"


def test_value_outside_the_map_is_rejected() -> None:
    """A value missing from the map is rejected, quoting it when the field is not personal."""
    field = spec(values={"н": "absent"})
    assert reason(field, "x") == "value not in the value map of the mapping: 'x'"


def test_value_map_does_not_apply_to_nulls() -> None:
    """NULL stays None (or the default) without a value-map lookup."""
    field = spec(values={"мать": "mother"}, default="other")
    assert convert(field, None) == "other"
    assert convert(spec(values={"мать": "mother"}), None) is None


def test_value_map_on_an_int_field() -> None:
    """A value map on an int field translates the number it read."""
    assert convert(spec("int", values={"1": "first", "2": "second"}), "1") == "first"


# --- personal fields --------------------------------------------------------------------------


SECRET = "Тайнова-Секретная"


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        (spec("int", personal=True), SECRET),
        (spec("bool", personal=True), SECRET),
        (spec(personal=True, values={"5": "5"}), SECRET),
        (spec(personal=True, max_length=3), SECRET),
        (spec(personal=True), SECRET + "\x00"),
    ],
)
def test_personal_fields_never_quote_the_value(field: FieldSpec, raw: str) -> None:
    """Reasons for personal fields name the problem without the value."""
    why = reason(field, raw)
    assert SECRET not in why
    assert SECRET[:5] not in why


def test_personal_int_range_reason_hides_the_value() -> None:
    """A personal int outside its range is rejected without quoting the number."""
    why = reason(spec("int", personal=True, min=1, max=5), 73)
    assert "73" not in why


@pytest.mark.parametrize("raw", ["31.02.2014", "1850-07-14"])
def test_personal_date_reason_hides_the_value(raw: str) -> None:
    """A bad personal date (a birth date) is rejected without quoting it."""
    why = reason(spec("date", personal=True), raw)
    assert raw not in why
    assert "1850" not in why
    assert "2014" not in why


# --- refs, keys and joined columns ------------------------------------------------------------


def test_ref_values_become_key_text() -> None:
    """A reference becomes the key text of the record it names."""
    assert convert(spec("ref"), 17) == "17"
    assert convert(spec("ref"), " 12-345 ") == "12-345"


def test_required_ref_rejects_null() -> None:
    """A required reference that is NULL is a missing value."""
    assert reason(spec("ref", required=True), None) == "missing value"


@pytest.mark.parametrize(
    ("raw", "want"), [(17, "17"), (-2, "-2"), (" А-1 ", " А-1 "), (Decimal(12), "12")]
)
def test_key_part(raw: object, want: str) -> None:
    """Key parts are whole numbers as digits, or text exactly as stored (so key order and sort
    key order agree)."""
    assert key_part(raw) == want


@pytest.mark.parametrize(
    ("raw", "why"), [("   ", "empty key"), ("a\x01b", "control"), ("a\x00", "control")]
)
def test_bad_key_parts_are_rejected(raw: str, why: str) -> None:
    """Blank keys and keys with control characters (the sort-key separator among them) are
    rejected."""
    with pytest.raises(InvalidValue, match=why):
        key_part(raw)


def test_joined_skips_empty_parts() -> None:
    """Joined columns skip NULL and blank parts and trim the others."""
    assert joined([" Иванов ", None, "  ", "Пётр"], " ") == "Иванов Пётр"
    assert joined([5, "А"], "") == "5А"


def test_joined_of_nothing_is_none() -> None:
    """Joining only NULL or blank parts gives None, so required and default apply."""
    assert joined([None, " ", ""], " ") is None
    assert reason(spec(required=True), joined([None, None], " ")) == "missing value"


def test_a_value_map_fallback_takes_what_the_map_lacks() -> None:
    """With a fallback, a value the map lacks becomes the fallback instead of a rejection."""
    field = spec(transforms=("trim", "lower"), values={"мать": "mother"}, fallback="other")
    assert convert(field, " Мать ") == "mother"
    assert convert(field, "сосед") == "other"


def test_a_personal_value_outside_the_map_has_no_dangling_colon() -> None:
    """A personal field's reason ends with the problem, not with a colon before a hidden value."""
    assert (
        reason(spec(personal=True, values={"5": "5"}), "7")
        == "value not in the value map of the mapping"
    )


CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) not in "\t\n\r"]
TEXT_TRANSFORMS = [
    (),
    ("trim",),
    ("collapse_spaces",),
    ("trim", "lower"),
    ("collapse_spaces", "title"),
]


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"{ord(c):#04x}")
@pytest.mark.parametrize("transforms", TEXT_TRANSFORMS, ids=lambda t: "+".join(t) or "none")
def test_every_control_character_is_rejected_whatever_the_transforms(
    control: str, transforms: tuple[str, ...]
) -> None:
    """Every C0/C1 control character but tab, LF and CR rejects a text, inside or at the edges,
    before transforms could turn it into a space."""
    for raw in (f"тема{control}урока", f"{control}тема", f"тема {control}"):
        assert reason(spec(transforms=transforms), raw) == "text contains control characters"


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: f"{ord(c):#04x}")
def test_control_characters_reject_value_mapped_and_joined_fields(control: str) -> None:
    """A value map with a fallback, and columns joined into one text, reject control
    characters too (they are not stripped away first)."""
    mapped = spec(transforms=("trim", "lower"), values={"мать": "mother"}, fallback="other")
    assert reason(mapped, f"{control}мать") == "text contains control characters"
    joined_text = joined([f"Иванов{control}", "Пётр"], " ")
    assert (
        reason(spec(transforms=("collapse_spaces",)), joined_text)
        == "text contains control characters"
    )


@pytest.mark.parametrize(
    "raw", [2, -1, "отозвано", "withdrawn", "нет.", 1.5, b"\x00\xff", b"yes", "yes\x0b", "\x0bда"]
)
def test_a_bool_fallback_takes_anything_not_a_yes_no_word(raw: object) -> None:
    """A yes/no field with a fallback gives it for anything that is not a clear yes or no
    (numbers other than 0/1, words, bytes, control characters) instead of rejecting."""
    got = convert(spec("bool", fallback="unclear"), raw)
    assert got == ("unclear" if raw != b"yes" else True)
