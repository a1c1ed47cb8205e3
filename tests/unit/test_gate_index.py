"""The gate's index of lessons and works keeps one (day, class) pair per distinct pair: tens of
thousands of lessons a year share a few thousand pairs, in this process and when a worker teaches
it; a work maps to its lesson's pair; and the index gates marks and absences exactly as a dict
would, whatever the keys (its lookups are written out inline in the hot path)."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from bridge.core import gate
from bridge.core.dense import DenseIndex
from bridge.core.gate import Context, MissingReference
from bridge.core.model import HoldReason, Record

MARK_REFS = {"work": "work", "pupil": "pupil"}
ABSENCE_REFS = {"lesson": "lesson", "pupil": "pupil"}


def lesson(key: str, day: str, class_key: str) -> Record:
    payload = {"class": class_key, "date": day, "subject": "1", "number": 1}
    return Record("lesson", key, key.zfill(6), payload, "fp")


def work(key: str, lesson_key: str) -> Record:
    return Record("work", key, key, {"lesson": lesson_key, "kind": "oral", "weight": 1}, "fp")


def mark(key: str, work_key: str, pupil: str = "7") -> Record:
    return Record("mark", key, key, {"work": work_key, "pupil": pupil, "value": "5"}, "fp")


def absence(key: str, lesson_key: str, pupil: str = "7") -> Record:
    return Record("absence", key, key, {"lesson": lesson_key, "pupil": pupil, "code": "н"}, "fp")


def remembered(ctx: Context, *records: Record) -> None:
    for record in records:
        remember = gate.compile_remember(record.entity, True, ctx)
        assert remember is not None
        remember(record)


def school(*classes: str) -> Context:
    """A context with pupil 7 consenting, in each class (grade 5) since 1 September."""
    ctx = Context()
    ctx.consent["7"], ctx.keys["pupil"] = True, {"7"}
    for class_key in classes:
        ctx.grade[class_key] = 5
        ctx.stays.setdefault("7", []).append((class_key, "2025-09-01", None))
    return ctx


def test_lessons_of_one_class_on_one_day_share_one_pair() -> None:
    ctx = Context()
    # each record builds its own strings, as rows from the database do
    remembered(ctx, *(lesson(str(n), "2025-09-0" + "1", "1" + "0") for n in range(1, 4)))
    remembered(ctx, lesson("4", "2025-09-02", "10"))
    assert ctx.lesson["1"] == ("2025-09-01", "10")
    assert ctx.lesson["1"] is ctx.lesson["2"] is ctx.lesson["3"]
    assert ctx.lesson["4"] == ("2025-09-02", "10")
    assert ctx.lesson["4"] is not ctx.lesson["1"]
    assert len(ctx.pairs) == 2


def test_what_a_worker_learnt_shares_the_pairs_already_known() -> None:
    parent, worker = Context(), Context()
    remembered(parent, lesson("1", "2025-09-01", "10"))
    remembered(worker, lesson("2", "2025-09-01", "10"), lesson("3", "2025-09-03", "11"))
    sent = pickle.loads(pickle.dumps(gate.learnt(worker, "lesson")))  # across the process
    gate.teach(parent, sent)
    assert parent.lesson["2"] is parent.lesson["1"]
    assert parent.lesson["3"] == ("2025-09-03", "11")
    assert parent.knows("lesson", "2")
    assert parent.knows("lesson", "3")


def test_a_work_maps_to_its_lessons_pair_and_its_key_is_known_by_the_index() -> None:
    """A work is indexed to its lesson's (day, class) tuple itself; neither lessons nor works
    keep a key set beside their index, and the context knows them by it."""
    ctx = Context()
    remembered(ctx, lesson("5", "2025-09-01", "10"), work("9", "5"))
    assert ctx.work_lesson["9"] is ctx.lesson["5"]
    assert "lesson" not in ctx.keys
    assert "work" not in ctx.keys
    assert ctx.knows("work", "9")
    assert not ctx.knows("work", "5")
    assert isinstance(ctx.known("lesson"), DenseIndex)


def test_text_and_leading_zero_keys_are_their_own_records() -> None:
    """A work keyed "07" is not work 7: each is gated by its own lesson, and "007", which is
    neither, is missing."""
    ctx = school("10", "11")
    remembered(
        ctx,
        lesson("1", "2025-09-02", "10"),
        lesson("2", "2025-09-03", "11"),
        work("7", "1"),
        work("07", "2"),
        work("w7", "2"),
    )
    ctx.grade["11"] = 1  # marks in grade 1 are held: tells the two lessons apart
    check = gate.compile_check("mark", MARK_REFS, ctx)
    assert check(mark("1", "7")) is None
    assert check(mark("2", "07")) is HoldReason.GRADE_1_MARK
    assert check(mark("3", "w7")) is HoldReason.GRADE_1_MARK
    missing = check(mark("4", "007"))
    assert isinstance(missing, MissingReference)
    assert (missing.entity, missing.key) == ("work", "007")


def test_keys_learnt_after_the_rules_were_compiled_are_seen() -> None:
    """Works and lessons read by key after the check was compiled (an incremental run reads
    them as the marks name them, in any order: the array grows down and up) are seen."""
    ctx = school("10")
    check_mark = gate.compile_check("mark", MARK_REFS, ctx)
    check_absence = gate.compile_check("absence", ABSENCE_REFS, ctx)
    assert isinstance(check_mark(mark("1", "500")), MissingReference)
    for n in (500, 20, 90_000, 3):
        remembered(ctx, lesson(str(n), "2025-09-02", "10"), work(str(n), str(n)))
        assert check_mark(mark("1", str(n))) is None
        assert check_absence(absence("1", str(n))) is None
    assert all(check_mark(mark("1", k)) is None for k in ("500", "20", "90000", "3"))
    assert isinstance(check_mark(mark("1", "21")), MissingReference)
    assert isinstance(check_absence(absence("1", "0500")), MissingReference)


def test_works_a_worker_learnt_gate_the_parents_marks() -> None:
    """Works (and lessons) a planning worker learnt, pickled back to the parent, gate the
    parent's marks; the worker forgets them and keeps its compiled rules working."""
    parent = school("10")
    remembered(parent, lesson("1", "2025-09-02", "10"))
    worker = pickle.loads(pickle.dumps(parent))  # a forked worker starts with what it knew
    worker_check = gate.compile_check("mark", MARK_REFS, worker)
    remembered(worker, work("40", "1"), work("x", "1"))
    assert worker_check(mark("1", "40")) is None
    sent = pickle.loads(pickle.dumps(gate.learnt(worker, "work")))
    assert isinstance(sent.index, DenseIndex)
    assert sent.keys == set()
    assert len(worker.work_lesson) == 0
    assert isinstance(worker_check(mark("1", "40")), MissingReference)
    remembered(worker, work("41", "1"))
    assert worker_check(mark("1", "41")) is None
    gate.teach(parent, sent)
    check = gate.compile_check("mark", MARK_REFS, parent)
    assert check(mark("1", "40")) is None
    assert check(mark("2", "x")) is None
    assert parent.work_lesson["40"] is parent.lesson["1"]
    assert "work" not in parent.keys


def test_a_work_whose_lesson_was_unknown_fails_its_marks_as_before() -> None:
    """A work learnt before its lesson (a mapping without the reference) has no pair: a mark
    on it raises KeyError as the lookup of the missing lesson did; its class and day are
    unknown."""
    ctx = school("10")
    remembered(ctx, work("9", "5"))
    assert ctx.work_lesson["9"] is None
    assert ctx.lesson_class(mark("1", "9")) is None
    assert ctx.record_day(mark("1", "9")) is None
    check = gate.compile_check("mark", MARK_REFS, ctx)
    try:
        check(mark("1", "9"))
    except KeyError:
        pass
    else:
        raise AssertionError("a mark on a work without its lesson's pair was gated")


KEYS = st.one_of(  # few enough that "07" and "7" come together
    st.integers(1, 30).map(str),
    st.integers(1, 10**12).map(str),
    st.integers(0, 30).map(lambda n: "0" + str(n)),
    st.sampled_from(["0", "-3", "+3", " 3", "١", "a1"]),
)
PAIRS = st.tuples(st.sampled_from(["2025-08-31", "2025-09-02"]), st.sampled_from(["10", "11"]))


@given(
    st.dictionaries(KEYS, PAIRS, max_size=30),
    st.dictionaries(KEYS, st.integers(0, 40), max_size=30),
    st.lists(KEYS, max_size=30),
)
def test_marks_and_absences_are_gated_as_with_dicts(
    lessons: dict[str, tuple[str, str]], works: dict[str, int], named: list[str]
) -> None:
    """For any lessons, works and keys named, the checks give the verdicts that dicts of the
    same keys give (a mark in grade 1 is held first; before the pupil's stay, not enrolled)."""
    ctx = school("10", "11")
    ctx.grade["11"] = 1
    remembered(ctx, *(lesson(k, day, c) for k, (day, c) in lessons.items()))
    keys = list(lessons)
    linked = {k: keys[n] for k, n in works.items() if n < len(keys)}  # the others: rejected
    remembered(ctx, *(work(k, v) for k, v in linked.items()))
    check_mark = gate.compile_check("mark", MARK_REFS, ctx)
    check_absence = gate.compile_check("absence", ABSENCE_REFS, ctx)

    def expected(pair: tuple[str, str] | None, grade_1_held: bool) -> object:
        if pair is None:
            return MissingReference
        day, class_key = pair
        if grade_1_held and class_key == "11":
            return HoldReason.GRADE_1_MARK
        return HoldReason.NOT_ENROLLED if day < "2025-09-01" else None

    def kind(verdict: object) -> object:
        return MissingReference if isinstance(verdict, MissingReference) else verdict

    for key in [*named, *linked, *lessons]:
        work_pair = lessons[linked[key]] if key in linked else None
        assert kind(check_mark(mark("1", key))) == expected(work_pair, grade_1_held=True)
        want = expected(lessons.get(key), grade_1_held=False)
        assert kind(check_absence(absence("1", key))) == want
