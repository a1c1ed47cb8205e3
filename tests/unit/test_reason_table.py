"""The one table of counts by reason that plans, sync reports and ``status`` print (holds, what
the portal does not take): a heading, a line per entity, reasons in order; nothing when empty."""

from __future__ import annotations

from collections import Counter

from bridge.cli.render.plans import reason_table


def test_each_entity_is_a_line_with_its_reasons_in_order() -> None:
    """Entities keep their order; each one's reasons are sorted, each with its count."""
    table = {"mark": Counter({"no_consent": 2, "grade_1_mark": 5}), "absence": {"not_matched": 1}}
    assert reason_table("Held back:", table) == [
        "",
        "Held back:",
        "  mark          grade_1_mark 5, no_consent 2",
        "  absence       not_matched 1",
    ]


def test_nothing_to_count_prints_nothing() -> None:
    """No entity counted: no heading either."""
    assert reason_table("Held back:", {}) == []
