"""The gate's index of lessons keeps one (day, class) pair per distinct pair: tens of thousands
of lessons a year share a few thousand pairs, in this process and when a worker teaches it."""

from __future__ import annotations

import pickle

from bridge.core import gate
from bridge.core.gate import Context
from bridge.core.model import Record


def lesson(key: str, day: str, class_key: str) -> Record:
    payload = {"class": class_key, "date": day, "subject": "1", "number": int(key)}
    return Record("lesson", key, key.zfill(6), payload, "fp")


def remembered(ctx: Context, *records: Record) -> None:
    remember = gate.compile_remember("lesson", True, ctx)
    assert remember is not None
    for record in records:
        remember(record)


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
