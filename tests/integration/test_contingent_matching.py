"""The matching phase: the school's side read through the mappings and matched with a portal
contingent that has the mismatches real schools have."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.mapping import load_mappings
from bridge.core.matching import (
    Contingent,
    Matches,
    MatchStatus,
    PortalNamed,
    PortalPerson,
    Settled,
)
from bridge.demo import schema
from bridge.service.engine.contingent import match_run, match_school, read_school
from bridge.testing.fakes import MemoryStateStore
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31).isoformat()
C5, C1 = "900000000000000005", "900000000000000001"


@pytest.fixture
def source(tmp_path: Path) -> Iterator[SqlSource]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    yield SqlSource(engine)
    engine.dispose()


def person(pid: str, number: int, group: str, *, first: str | None = None) -> PortalPerson:
    return PortalPerson(
        pid,
        f"Фамилия{number}",
        first or f"Имя{number}",
        date(2014, 1, number).isoformat(),
        frozenset({group}),
    )


CONTINGENT = Contingent(
    persons=(
        person("p1", 1, C5),
        # pupil 2 is not on the portal
        person("p3", 3, C5, first="Имя 3а"),  # spelled otherwise
        person("p4a", 4, C1),
        person("p4b", 4, C1),  # two of one name and birth date in 1А
        person("p5", 5, C5),
    ),
    classes=(PortalNamed(C5, "5 «А»"), PortalNamed(C1, "1-А")),
    subjects=(PortalNamed("s1", "Математика"), PortalNamed("s2", "Русский язык и литература")),
    periods=(PortalNamed("q1", "1 четверть"), PortalNamed("q2", "II четверть")),
)


def test_the_mismatches_are_reported_never_guessed(source: SqlSource) -> None:
    side = read_school(MAPPINGS, source, AS_OF)
    assert {p.key: p.class_key for p in side.pupils} == {
        "1": "1",
        "2": "1",
        "3": "1",  # withdrawn on 2025-10-15: the class of the latest stay
        "4": "2",
        "5": "1",
    }
    found = match_school(side, CONTINGENT, lambda _: {}, {"subject": {}})
    pupils = {k: (m.status, m.portal_id) for k, m in found.by_entity["pupil"].items()}
    assert pupils == {
        "1": (MatchStatus.MATCHED, "p1"),
        "2": (MatchStatus.MISSING, None),
        "3": (MatchStatus.MISSING, None),
        "4": (MatchStatus.AMBIGUOUS, None),
        "5": (MatchStatus.MATCHED, "p5"),
    }
    assert found.get("pupil", "3").candidates == ("p3",)  # offered to the admin, not taken
    assert found.portal_id("class", "1") == C5
    assert found.portal_id("class", "2") == C1
    assert found.portal_id("subject", "1") == "s1"
    assert found.get("subject", "2").status is MatchStatus.MISSING
    assert found.portal_id("period", "1") == "q1"
    assert found.get("period", "2").status is MatchStatus.MISSING
    assert found.counts()["pupil"] == {"matched": 2, "missing": 2, "ambiguous": 1}


def test_the_schools_table_of_names_and_the_admins_decisions_settle_them(
    source: SqlSource,
) -> None:
    side = read_school(MAPPINGS, source, AS_OF)
    decisions = {
        "pupil": {
            "3": Settled("pupil", "3", MatchStatus.CONFIRMED, "p3"),
            "4": Settled("pupil", "4", MatchStatus.CONFIRMED, "p4b"),
            "2": Settled("pupil", "2", MatchStatus.REJECTED),
        }
    }
    names = {
        "subject": {"Русский язык": "Русский язык и литература"},
        "period": {"2 четверть": "II четверть"},
    }
    found = match_school(side, CONTINGENT, lambda e: decisions.get(e, {}), names)
    assert found.portal_id("pupil", "3") == "p3"
    assert found.portal_id("pupil", "4") == "p4b"
    assert found.get("pupil", "2").status is MatchStatus.REJECTED
    assert found.portal_id("subject", "2") == "s2"
    assert found.portal_id("period", "2") == "q2"
    assert found.unusable("pupil") == {"2": MatchStatus.REJECTED}


def test_a_pupil_row_that_cannot_be_read_has_no_match(source: SqlSource) -> None:
    with source.engine.begin() as conn:
        conn.execute(schema.pupil.update().where(schema.pupil.c.id == 1).values(birth_date=None))
        conn.execute(schema.pupil.update().where(schema.pupil.c.id == 5).values(last_name="  "))
    side = read_school(MAPPINGS, source, AS_OF)
    found = match_school(side, CONTINGENT, lambda _: {})
    assert found.portal_id("pupil", "1") is None
    assert "5" not in found.by_entity["pupil"]  # the row is rejected: no record, no match
    assert found.get("pupil", "1").status is MatchStatus.MISSING


class Portal:
    """A portal that owns its contingent (``ContingentPortal``), remembering the matches it
    was given."""

    def __init__(self) -> None:
        self.names: dict[str, dict[str, str]] = {}
        self.given: Matches | None = None

    def contingent(self) -> Contingent:
        return CONTINGENT

    def use_matches(self, matches: Matches) -> None:
        self.given = matches


def test_a_state_store_that_keeps_matchings_settles_and_keeps_the_runs(
    source: SqlSource, tmp_path: Path
) -> None:
    """The admin's decision in the state store is final for the run, the run's matching is
    kept there for ``match list``, and the portal is given it."""
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        state.settle(Settled("pupil", "1", MatchStatus.REJECTED), "admin")
        portal = Portal()
        found = match_run(MAPPINGS, source, state, portal, AS_OF)
        kept = {m.key: m.status for m in state.matches("pupil")}
    finally:
        state.close()
    assert portal.given is found
    assert found.get("pupil", "1").status is MatchStatus.REJECTED
    assert kept["1"] is MatchStatus.REJECTED
    assert kept["5"] is MatchStatus.MATCHED


def test_a_state_store_that_keeps_no_matchings_matches_by_the_rules_alone(
    source: SqlSource,
) -> None:
    """A state store without matchings (the in-memory one): nothing is settled, the rules
    decide, and the portal is still given the matches."""
    portal = Portal()
    found = match_run(MAPPINGS, source, MemoryStateStore(), portal, AS_OF)
    assert portal.given is found
    assert found.portal_id("pupil", "1") == "p1"
    assert found.get("pupil", "4").status is MatchStatus.AMBIGUOUS
