"""The erasure act: stored once as JSON, old rows read as meant, finished across reruns, and
printed in Russian with ids only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bridge.adapters.state import erasure, open_state
from bridge.cli.render import erasure_act_text
from bridge.service.admin import erasures_due
from bridge.service.runs import DEFAULT_GROUND, Erasures, decode_act

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
ENTITIES = ("pupil", "enrollment", "guardian", "guardian_link", "mark")


def test_old_acts_are_read_whether_encoded_once_or_twice() -> None:
    """A flat ``{entity: n}`` of an earlier version, encoded once or twice, reads as planned
    and acknowledged counts with no ground."""
    flat = json.dumps({"mark": 3, "pupil": 1})
    for text in (flat, json.dumps(flat)):
        facts = decode_act(text)
        assert facts["planned"] == facts["acknowledged"] == {"mark": 3, "pupil": 1}
        assert (facts["ground"], facts["run_id"], facts["refused"]) == (None, None, {})


def test_the_act_is_one_row_encoded_once_and_a_rerun_completes_it(tmp_path: Path) -> None:
    """begin and complete write one row whose counts column is one JSON object; a rerun after
    refusals adds its acknowledged deletes, keeps what was gone before the first run, and
    completes the act."""
    state = open_state(f"sqlite:///{tmp_path / 's.sqlite'}", clock=lambda: T0)
    register = Erasures(state.engine, clock=lambda: T0)
    register.begin("40", "admin", DEFAULT_GROUND, "run1", {"mark": 2})
    register.complete("40", {"mark": 5, "pupil": 1}, {"mark": 5}, {"pupil": 1})
    assert register.get("40")["completed_at"] is None  # type: ignore[index]
    assert "40" not in register.completed()
    register.begin("40", "admin", DEFAULT_GROUND, "run2", {"mark": 7})
    register.complete("40", {"pupil": 1}, {"pupil": 1}, {})
    with state.engine.connect() as conn:
        rows = conn.execute(erasure.select()).all()
    assert len(rows) == 1
    stored = json.loads(rows[0].counts)
    assert isinstance(stored, dict)
    assert (stored["planned"], stored["acknowledged"]) == ({"mark": 5, "pupil": 1},) * 2
    assert (stored["run_id"], stored["refused"], stored["earlier"]) == ("run2", {}, {"mark": 2})
    assert "40" in register.completed()
    state.close()


def test_the_printed_act_is_russian_and_names_ids_and_counts_only() -> None:
    """The act names the key, ground, user, run and counts per entity in Russian."""
    act = {
        "pupil_key": "40",
        "erased_at": T0,
        "erased_by": "admin",
        "ground": DEFAULT_GROUND,
        "run_id": "abc123",
        "planned": {"mark": 12, "guardian": 1, "pupil": 1},
        "acknowledged": {"mark": 12, "guardian": 1, "pupil": 1},
        "refused": {},
        "earlier": {"enrollment": 2},
        "completed_at": T0.isoformat(),
    }
    text = erasure_act_text(act, ENTITIES)
    assert text.startswith("АКТ")
    assert "идентификатор 40" in text
    assert f"Основание: {DEFAULT_GROUND}" in text
    assert "Запуск: abc123" in text
    assert "01.06.2026 10:00 UTC" in text
    mark_row = next(line for line in text.splitlines() if "(mark)" in line)
    assert mark_row.split()[-4:] == ["12", "12", "0", "0"]
    assert "подтверждено порталом: 14 из 14" in text


def test_pupils_due_for_erasure_have_a_30_day_deadline() -> None:
    """Withdrawn, not erased pupils are listed with deadline and days left, overdue flagged;
    erased ones are not."""
    due = erasures_due({"7": T0, "8": T0}, frozenset({"8"}), datetime(2026, 7, 3).date())
    assert [(d.pupil, str(d.deadline), d.days_left, d.is_overdue) for d in due] == [
        ("7", "2026-07-01", -2, True)
    ]
