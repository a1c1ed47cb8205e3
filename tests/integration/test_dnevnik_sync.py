"""The bridge syncs a school to the dnevnik.ru emulator over HTTP: the contingent matched
(the mismatches reported, nothing of an unmatched pupil sent), the journal written once, with
the portal's ids, as an independent client (pydnevnikruapi) reads it back."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydnevnikruapi.dnevnik.dnevnik import DiaryAPI

from bridge.adapters.dnevnik import DnevnikPortal, DnevnikSettings
from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.mapping import load_mappings
from bridge.core.matching import MatchStatus
from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN
from bridge.service.engine import RunOptions, SyncResult, run_sync
from tests import dnevnik

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 9, 12)
DAYS = 10  # the first ten days of the year: every kind of record, in a third of the time


def write_school(path: Path) -> None:
    dnevnik.write_school(path, days=DAYS)


@dataclass
class Rig:
    school: Path
    engine: sa.Engine
    emulator: DnevnikEmulator
    state: SqlStateStore
    concurrency: int = 1

    def portal(self) -> DnevnikPortal:
        settings = DnevnikSettings(
            base_url=self.emulator.api_url,
            school=str(self.emulator.school_id),
            token=DEMO_TOKEN,
            batch_size=7,
            concurrency=self.concurrency,
            backoff_initial=0.01,
            backoff_max=0.05,
        )
        return DnevnikPortal(
            settings,
            self.state.portal_ids,
            self.state.holders,
            careful=lambda: self.state.batches_in_doubt() > 0,
        )

    def sync(self, run_id: str, **options: Any) -> SyncResult:
        portal = self.portal()
        try:
            return run_sync(
                MAPPINGS,
                SqlSource(self.engine),
                self.state,
                portal,
                RunOptions(as_of=AS_OF, **options),
                run_id=run_id,
            )
        finally:
            portal.close()

    def objects(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.emulator.state()["objects"][kind]
        return found


@pytest.fixture(params=[1, 4])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    school = tmp_path / "school.sqlite"
    write_school(school)
    engine = sa.create_engine(f"sqlite:///{school}")
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school) as emulator:
        yield Rig(school, engine, emulator, state, request.param)
    state.close()
    engine.dispose()


def test_a_full_sync_writes_the_journal_once_and_nothing_of_unmatched_pupils(rig: Rig) -> None:
    first = rig.sync("r1")
    delivered = first.delivery.delivered
    assert first.delivery.refused == Counter(), first.delivery.failure
    assert first.delivery.failure is None
    mismatched = {m.kind: m for m in rig.emulator.mismatches()}

    # The mismatches are reported, never guessed.
    matches = {m.key: m for m in rig.state.matches("pupil")}
    assert matches[str(mismatched["missing_person"].asiou_id)].status is MatchStatus.MISSING
    spelled = matches[str(mismatched["name_spelling"].asiou_id)]
    assert spelled.status is MatchStatus.MISSING
    assert spelled.candidates == tuple(str(p) for p in mismatched["name_spelling"].portal_ids)
    twins = matches[str(mismatched["same_name_twins"].asiou_id)]
    assert twins.status is MatchStatus.AMBIGUOUS
    renamed = {m.key: m for m in rig.state.matches("class")}[str(mismatched["class_name"].asiou_id)]
    assert renamed.portal_id == str(mismatched["class_name"].portal_ids[0])
    held = first.plan.plan.holds
    assert held["mark"]["not_matched"] > 0

    # Nothing of an unmatched pupil reached the portal.
    unmatched = {str(p) for kind in ("name_spelling", "same_name_twins")
                 for p in mismatched[kind].portal_ids}  # fmt: skip
    marks, entries = rig.objects("mark"), rig.objects("logentry")
    assert not {str(m["person"]) for m in marks} & unmatched
    assert not {str(e["person"]) for e in entries} & unmatched

    # Every record once, with the portal's id recorded.
    state = rig.emulator.state()
    assert all(not found for found in state["duplicates"].values()), state["duplicates"]
    assert len(marks) == delivered["mark"]["create"] > 0
    assert len(entries) == delivered["absence"]["create"] > 0
    assert len(rig.objects("lesson")) == delivered["lesson"]["create"] > 0
    mark_ids = rig.state.portal_ids("mark", [m.key for m in _live(rig.state, "mark")])
    assert sorted(mark_ids.values()) == sorted(str(m["id"]) for m in marks)
    assert {"teacher", "enrollment", "guardian", "guardian_link"} <= set(
        first.plan.plan.not_supported
    )

    # An independent client reads back what the bridge wrote.
    _read_back_with_pydnevnikruapi(rig)

    # Again: nothing new is written.
    again = rig.sync("r2")
    assert again.delivery.total == 0 or set(again.delivery.delivered) <= {
        "class", "group", "subject", "period", "pupil"
    }  # fmt: skip
    assert len(rig.objects("mark")) == len(marks)
    assert len(rig.objects("lesson")) == delivered["lesson"]["create"]


def _read_back_with_pydnevnikruapi(rig: Rig) -> None:
    diary = DiaryAPI(token=DEMO_TOKEN)
    diary.host = rig.emulator.api_url
    try:
        marks = rig.objects("mark")
        lesson_id = marks[0]["lesson"]
        read = diary.get_marks_by_lesson(lesson_id)
        assert sorted(m["id"] for m in read) == sorted(
            m["id"] for m in marks if m["lesson"] == lesson_id
        )
        lesson = diary.get_lesson_info(lesson_id)
        assert lesson["id"] == lesson_id
        assert lesson["title"]  # the topic
        entry = rig.objects("logentry")[0]
        log = diary.get_lesson_log(entry["lesson"])
        assert {(e["person"], e["status"]) for e in log} >= {(entry["person"], entry["status"])}
    finally:
        diary.session.close()


def _live(state: SqlStateStore, entity: str) -> list[Any]:
    return list(state.lookup(entity, [s for s, *_ in state.entries(entity)]).values())


FAULTS = {"rates": {"lost": 0.06, "500": 0.03, "429": 0.03, "reset": 0.03}, "retry_after": 0}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_lost_answers_and_failures_leave_the_portal_exact(tmp_path: Path, concurrency: int) -> None:
    """Writes committed whose answer is lost, resets, 500s and 429s: the runs that follow
    finish the sync with every record on the portal exactly once."""
    school = tmp_path / "school.sqlite"
    write_school(school)
    engine = sa.create_engine(f"sqlite:///{school}")
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    emulator = DnevnikEmulator(
        data_path=tmp_path / "emu.sqlite", seed_school=school, faults=FAULTS, seed=3
    )
    with emulator:
        rig = Rig(school, engine, emulator, state, concurrency)
        runs = [rig.sync(f"r{n}") for n in range(1, 7)]
        faults = emulator.service.stats.faults
        final = rig.emulator.state()
    state.close()
    engine.dispose()
    assert faults["lost"] > 0, faults
    assert runs[-1].delivery.complete, runs[-1].delivery.failure
    assert all(not found for found in final["duplicates"].values()), final["duplicates"]
    created = Counter[str]()
    for run in runs:
        for entity, ops in run.delivery.delivered.items():
            created[entity] += ops.get("create", 0)
    counts = final["counts"]
    assert counts["mark"] == created["mark"] > 0
    assert counts["lesson"] == created["lesson"] > 0
    assert counts["logentry"] == created["absence"] > 0


def test_edits_and_consent_withdrawn_go_where_the_api_allows_and_are_reported(
    tmp_path: Path,
) -> None:
    """An edited mark cannot be corrected on dnevnik.ru: counted, reported, not sent. A pupil
    whose consent is withdrawn: their log entries are deleted, their marks cannot be retracted
    (reported), and nothing new of theirs goes; consent given again sends what is theirs."""
    from datetime import datetime

    from bridge.demo import schema

    school = tmp_path / "school.sqlite"
    write_school(school)
    engine = sa.create_engine(f"sqlite:///{school}")
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school) as emulator:
        rig = Rig(school, engine, emulator, state)
        rig.sync("r1")
        person_of = {m.key: m.portal_id for m in state.matches("pupil") if m.portal_id}
        entries = rig.objects("logentry")
        marked = {str(m["person"]) for m in rig.objects("mark")}
        absent = {str(e["person"]) for e in entries}
        pupil = next(k for k, p in sorted(person_of.items()) if p in marked & absent)
        person = person_of[pupil]
        later = datetime(2025, 9, 12, 18, 0)
        with engine.begin() as conn:
            sent = [int(e.key) for e in _live(state, "mark")]
            edited = conn.execute(
                sa.select(schema.mark.c.id)
                .where(schema.mark.c.pupil_id != int(pupil), schema.mark.c.id.in_(sent))
                .limit(1)
            ).scalar_one()
            conn.execute(
                schema.mark.update()
                .where(schema.mark.c.id == edited)
                .values(
                    mark_value=sa.case((schema.mark.c.mark_value == "2", "3"), else_="2"),
                    modified_at=later,
                )
            )
        marks_before = len(rig.objects("mark"))
        edit = rig.sync("r2", incremental=True)
        assert edit.plan.plan.not_supported["mark"] == {
            "cannot update on this portal: the API has no mark correction or retraction": 1
        }
        assert len(rig.objects("mark")) == marks_before

        with engine.begin() as conn:
            conn.execute(
                schema.pupil.update()
                .where(schema.pupil.c.id == int(pupil))
                .values(pd_consent=0, modified_at=later)
            )
        withdrawn = rig.sync("r3")
        theirs = sum(str(m["person"]) == person for m in rig.objects("mark"))
        assert not [e for e in rig.objects("logentry") if str(e["person"]) == person]
        refused = withdrawn.plan.plan.not_supported["mark"]
        retract = "cannot retract on this portal: the API has no mark correction or retraction"
        assert refused[retract] == theirs > 0
        assert withdrawn.delivery.delivered["absence"]["delete"] > 0
        assert withdrawn.delivery.complete

        with engine.begin() as conn:
            conn.execute(
                schema.pupil.update()
                .where(schema.pupil.c.id == int(pupil))
                .values(pd_consent=1, modified_at=later)
            )
        back = rig.sync("r4")
        assert back.delivery.complete
        assert [e for e in rig.objects("logentry") if str(e["person"]) == person]
        duplicates = rig.emulator.state()["duplicates"]
        assert all(not found for found in duplicates.values()), duplicates
        assert sum(str(m["person"]) == person for m in rig.objects("mark")) == theirs
    state.close()
    engine.dispose()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_lesson_of_a_subject_without_a_match_is_held_with_all_that_refers_to_it(
    tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin rejects a subject's match: its lessons, their works, the marks on those works
    and the lessons' absences are all held (not_matched) in the plan, in a full run (planned in
    key ranges on two processes too), in a preview, and in an incremental run that reads only
    a changed mark (its work and lesson read by key): none of them is sent, so the portal
    refuses nothing for a lesson it lacks."""
    from datetime import datetime

    from bridge.core.matching import Settled
    from bridge.demo import schema
    from bridge.service.engine import keys, plan_run
    from bridge.service.engine.contingent import stored_matches

    monkeypatch.setattr(keys, "MIN_KEYS_PER_RANGE", 10)  # this small school in ranges too

    school = tmp_path / "school.sqlite"
    write_school(school)
    engine = sa.create_engine(f"sqlite:///{school}")
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    subject = dnevnik.asiou_rows(school, "SELECT subject_id FROM lesson LIMIT 1")[0]["subject_id"]
    theirs = _of_subject(school, subject)
    state.settle(Settled("subject", str(subject), MatchStatus.REJECTED), "admin")
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school) as emulator:
        rig = Rig(school, engine, emulator, state)
        full = rig.sync("r1", workers=workers)
        preview = plan_run(
            MAPPINGS,
            SqlSource(engine),
            state,
            RunOptions(as_of=AS_OF, support=DnevnikPortal.support, matches=stored_matches(state)),
        )
        portal_subject = str(emulator.portal_id("subject", subject))
        lessons = rig.objects("lesson")
        rig.sync("r2", incremental=True)  # reads lessons and works whole: their snapshot
        placed = {p.key for p in _live(state, "pupil")}
        mark = next(m for m in sorted(theirs["mark"]) if theirs["mark"][m] in placed)
        with engine.begin() as conn:
            conn.execute(
                schema.mark.update()
                .where(schema.mark.c.id == int(mark))
                .values(modified_at=datetime(2025, 9, 12, 18, 0))
            )
        changed = rig.sync("r3", incremental=True)
        sent = {e: {x.key for x in _live(state, e)} for e in theirs}
    state.close()
    engine.dispose()
    holds = full.plan.plan.holds
    assert holds["lesson"]["not_matched"] == len(theirs["lesson"]) > 0
    assert holds["work"]["not_matched"] == len(theirs["work"]) > 0
    assert holds["mark"]["not_matched"] >= 1
    assert holds["absence"]["not_matched"] >= 1
    assert full.delivery.refused == Counter(), full.delivery.failure
    assert preview.plan.holds == holds
    assert lessons
    assert not [x for x in lessons if str(x["subject"]) == portal_subject]
    assert all(not sent[e] & set(theirs[e]) for e in theirs), "nothing of the subject is sent"
    # The incremental run read the changed mark, its work and lesson by key, and held it.
    assert changed.plan.plan.records_read["lesson"] < len(lessons)
    assert changed.plan.plan.holds["mark"]["not_matched"] >= 1
    assert changed.delivery.refused == Counter(), changed.delivery.failure
    assert changed.delivery.delivered.get("mark", Counter())["create"] == 0


def _of_subject(school: Path, subject: int) -> dict[str, dict[str, str]]:
    """The keys of the subject's lessons, their works, the marks on those and the lessons'
    absences, each with its pupil (\"\" for a lesson or work)."""
    lessons = "SELECT id FROM lesson WHERE subject_id = ?"
    works = f"SELECT id FROM lesson_work WHERE lesson_id IN ({lessons})"
    rows = {
        "lesson": ("SELECT id AS k, '' AS p FROM lesson WHERE subject_id = ?"),
        "work": f"SELECT id AS k, '' AS p FROM lesson_work WHERE lesson_id IN ({lessons})",
        "mark": f"SELECT id AS k, pupil_id AS p FROM mark WHERE work_id IN ({works})",
        "absence": (
            "SELECT lesson_id || '-' || pupil_id AS k, pupil_id AS p FROM absence"
            f" WHERE lesson_id IN ({lessons})"
        ),
    }
    return {
        entity: {str(r["k"]): str(r["p"]) for r in dnevnik.asiou_rows(school, query, subject)}
        for entity, query in rows.items()
    }


def test_a_withdrawal_and_a_readmission_on_dnevnik(tmp_path: Path) -> None:
    """A pupil withdrawn on 5 September: their log entries after it are deleted, their marks
    after it cannot be retracted (reported), nothing new after it goes. Re-admitted on the
    9th: what is theirs from then on goes again, nothing twice."""
    from datetime import datetime

    from bridge.demo import schema

    school = tmp_path / "school.sqlite"
    write_school(school)
    engine = sa.create_engine(f"sqlite:///{school}")
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school) as emulator:
        rig = Rig(school, engine, emulator, state)
        rig.sync("r1")
        person_of = {m.key: m.portal_id for m in state.matches("pupil") if m.portal_id}
        lessons = {x["id"]: x["date"] for x in rig.objects("lesson")}

        def after(kind: str, person: str, day: str) -> list[dict[str, Any]]:
            return [
                x
                for x in rig.objects(kind)
                if str(x["person"]) == person and lessons[x["lesson"]] > day
            ]

        pupil = next(
            k
            for k, p in sorted(person_of.items())
            if after("mark", p, "2025-09-05") and after("logentry", p, "2025-09-08")
        )
        person = person_of[pupil]
        marks_after = len(after("mark", person, "2025-09-05"))
        later = datetime(2025, 9, 12, 18, 0)
        with engine.begin() as conn:
            stay = conn.execute(
                sa.select(schema.pupil_move).where(schema.pupil_move.c.pupil_id == int(pupil))
            ).one()
            conn.execute(
                schema.pupil_move.update()
                .where(schema.pupil_move.c.id == stay.id)
                .values(date_out=date(2025, 9, 5), modified_at=later)
            )
        gone = rig.sync("r2", incremental=True)
        assert gone.delivery.complete, gone.delivery.failure
        assert not after("logentry", person, "2025-09-05")
        retract = "cannot retract on this portal: the API has no mark correction or retraction"
        assert gone.plan.plan.not_supported["mark"][retract] == marks_after
        with engine.begin() as conn:
            conn.execute(
                schema.pupil_move.insert().values(
                    id=999_001,
                    pupil_id=int(pupil),
                    class_id=stay.class_id,
                    date_in=date(2025, 9, 9),
                    modified_at=later,
                )
            )
        back = rig.sync("r3", incremental=True)
        assert back.delivery.complete, back.delivery.failure
        duplicates = rig.emulator.state()["duplicates"]
        assert all(not found for found in duplicates.values()), duplicates
    state.close()
    engine.dispose()
    assert after("logentry", person, "2025-09-08")  # theirs again from the 9th
    assert not [
        x for x in after("logentry", person, "2025-09-05") if lessons[x["lesson"]] < "2025-09-09"
    ]


def test_creates_answered_without_their_id_leave_the_portal_exact(rig: Rig) -> None:
    """A hostile portal takes every fifth work and mark it is sent but answers it without the
    record's id (an empty object, a null id, a boolean): the adapter looks each up instead of
    trusting or repeating it, so a sync leaves the journal as a clean sync does, nothing twice,
    and every recorded portal id a real one."""
    service = rig.emulator.service
    handle = service.handle
    stripped = Counter[str]()
    answers: list[dict[str, Any]] = [{}, {"id": None}, {"id": True, "id_str": None}]

    def hostile(request: Any) -> Any:
        reply = handle(request)
        creates = request.method == "POST" and request.path.rstrip("/").endswith(("works", "mark"))
        if creates and reply.status == 200:
            count = sum(stripped.values())
            stripped[request.path.rsplit("/", 1)[-1]] += 1
            if count % 5 == 0:
                body = json.dumps(answers[count % 3]).encode()
                return dataclasses.replace(reply, body=body)
        return reply

    service.handle = hostile  # type: ignore[method-assign]
    rig.sync("r1")
    service.handle = handle  # type: ignore[method-assign]
    again = rig.sync("r2")
    assert stripped["works"] > 5
    assert stripped["mark"] > 5
    assert again.delivery.failure is None
    state = rig.emulator.state()
    assert all(not found for found in state["duplicates"].values()), state["duplicates"]
    marks = rig.objects("mark")
    mark_ids = rig.state.portal_ids("mark", [m.key for m in _live(rig.state, "mark")])
    assert sorted(mark_ids.values()) == sorted(str(m["id"]) for m in marks)
    works = rig.objects("work")
    held = list(rig.state.portal_ids("work", [w.key for w in _live(rig.state, "work")]).values())
    assert len(set(held)) == len(held)  # no portal work shared by two records
    assert set(held) <= {str(w["id"]) for w in works}
    # every other work on the portal is a lesson's homework text (no mark type), never a
    # work of the bridge's posted twice
    assert all(w.get("markType") is None for w in works if str(w["id"]) not in set(held))
