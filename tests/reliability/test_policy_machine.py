"""Policy properties, stateful: random sequences of journal edits, withdrawals, re-admissions,
consent changes, portal faults and crashes (answers lost, runs cut off). Whatever happens, the
bridge never sends a record the regulation forbids at that moment, and a fault-free full sync
always brings the portal to exactly the allowed export.

The oracle reads the ASIOU tables with SQL of its own, independently of the gate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.errors import ExitCode, PortalUnavailable
from bridge.core.guard import Thresholds
from bridge.core.mapping import load_mappings
from bridge.core.support import full_support
from bridge.demo import schema
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.service.engine import RunOptions, run_sync
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)
PUPILS = (1, 2, 3, 4, 5)
PERSONAL = ("pupil", "enrollment", "guardian_link", "mark", "absence")
# The reference schema has pd_consent NOT NULL: blank stands for "nothing recorded".
CONSENT_VALUES = (0, 1, 1, "", 2, -1, "отозвано", "withdrawn", "нет.", 1.5, b"\x00\xff")
GATE_READ = ("pupil", "enrollment", "guardian_link")


def allowed(engine: sa.Engine) -> dict[str, set[str]]:
    """Keys that may be on the portal now, per personal entity, by the regulation."""
    with engine.connect() as conn:
        consent = {
            r.id
            for r in conn.execute(
                sa.text(
                    "SELECT id FROM pupil WHERE pd_consent = 1 AND typeof(pd_consent) = 'integer'"
                    " AND instr(first_name, char(7)) = 0"
                )
            )
        } - {
            r.pupil_id
            for r in conn.execute(
                sa.text(
                    "SELECT pupil_id FROM pupil_move WHERE date_out < date_in UNION "
                    "SELECT pupil_id FROM pupil_guardian "
                    "WHERE instr(relation, char(7)) > 0"
                )
            )
        }
        stays = conn.execute(
            sa.text("SELECT id, pupil_id, class_id, date_in, date_out FROM pupil_move")
        ).all()
        marks = conn.execute(
            sa.text(
                "SELECT m.id, m.pupil_id, l.class_id, l.lesson_date, c.grade FROM mark m "
                "JOIN lesson_work w ON w.id = m.work_id JOIN lesson l ON l.id = w.lesson_id "
                "JOIN class_unit c ON c.id = l.class_id"
            )
        ).all()
        absences = conn.execute(
            sa.text(
                "SELECT a.lesson_id, a.pupil_id, l.class_id, l.lesson_date FROM absence a "
                "JOIN lesson l ON l.id = a.lesson_id"
            )
        ).all()
        links = conn.execute(sa.text("SELECT id, pupil_id FROM pupil_guardian")).all()

    # A stay that ends before it begins is a rejected row: its pupil is held (fail closed).
    consent -= {p for _, p, _, a, b in stays if b is not None and str(b) < str(a)}

    def present(pupil: int, klass: int, day: str) -> bool:
        return any(
            p == pupil and c == klass and str(a) <= day and (b is None or day <= str(b))
            for _, p, c, a, b in stays
        )

    return {
        "pupil": {str(p) for p in consent},
        "enrollment": {str(s[0]) for s in stays if s[1] in consent},
        "guardian_link": {str(i) for i, p in links if p in consent},
        "mark": {
            str(i) for i, p, c, d, g in marks if p in consent and g != 1 and present(p, c, str(d))
        },
        "absence": {
            f"{lid}-{p}" for lid, p, c, d in absences if p in consent and present(p, c, str(d))
        },
    }


class FaultyPortal:
    """A keyed portal that checks every PUT against the oracle, and fails on command: the
    answer lost after applying, or the request refused before it."""

    batch_size = 4
    concurrency = 1
    support = full_support(ENTITIES)

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.records: dict[tuple[str, str], str] = {}
        self.forbidden: list[tuple[str, str]] = []
        self.fail_in: int | None = None
        self.lose_answer = False

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        if self.fail_in is not None:
            self.fail_in -= 1
            if self.fail_in < 0 and not self.lose_answer:
                raise PortalUnavailable(8, "HTTP 503")
        may = allowed(self.engine)
        for op in operations:
            if op.method == "PUT" and op.entity in may and op.sourced_id not in may[op.entity]:
                self.forbidden.append((op.entity, op.sourced_id))
            if op.method == "PUT":
                self.records[(op.entity, op.sourced_id)] = op.fingerprint or ""
            else:
                self.records.pop((op.entity, op.sourced_id), None)
        if self.fail_in is not None and self.fail_in < 0:
            raise PortalUnavailable(8, "connection reset after the portal committed")
        return [OperationResult(op.op_id, True, 200) for op in operations]

    def fingerprints(self, entity: str) -> dict[str, str]:
        return {k: f for (e, k), f in self.records.items() if e == entity}


class PolicyMachine(RuleBasedStateMachine):
    """The school, the bridge and a faulty portal, driven by random events."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.engine = sa.create_engine(f"sqlite:///{self.folder.name}/asiou.sqlite")
        school.write_school(self.engine)
        self.state_url = f"sqlite:///{self.folder.name}/state.sqlite"
        self.portal = FaultyPortal(self.engine)
        self.clock = school.T0 + timedelta(days=200)
        self.runs = 0
        self.next_move = 100

    def _tick(self) -> object:
        self.clock += timedelta(minutes=10)
        return self.clock

    def _sql(self, statement: sa.Executable) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    @rule(pupil=st.sampled_from(PUPILS), consent=st.sampled_from(CONSENT_VALUES))
    def set_consent(self, pupil: int, consent: object) -> None:
        """A pupil's written consent is given or withdrawn, or set to a value that is not a
        clear yes (which is no)."""
        self._sql(
            schema.pupil.update()
            .where(schema.pupil.c.id == pupil)
            .values(pd_consent=consent, modified_at=self._tick())
        )

    @rule(pupil=st.sampled_from(PUPILS), entity=st.sampled_from(GATE_READ), broken=st.booleans())
    def break_row(self, pupil: int, entity: str, broken: bool) -> None:
        """A row of the pupil that the gate reads becomes malformed (a control character in
        the name or the relation, an enrolment ending before it begins), or is mended."""
        when = self._tick()
        if entity == "pupil":
            self._sql(
                schema.pupil.update()
                .where(schema.pupil.c.id == pupil)
                .values(first_name=f"Имя{pupil}" + ("\x07" if broken else ""), modified_at=when)
            )
        elif entity == "guardian_link":
            link = schema.pupil_guardian
            self._sql(
                link.update()
                .where(link.c.pupil_id == pupil)
                .values(relation="мать\x07" if broken else "мать", modified_at=when)
            )
        elif broken:
            move = schema.pupil_move
            self._sql(
                move.update()
                .where(move.c.pupil_id == pupil, move.c.date_out.is_(None))
                .values(date_out=date(2025, 8, 1), modified_at=when)
            )
        else:
            move = schema.pupil_move
            self._sql(
                move.update()
                .where(move.c.pupil_id == pupil, move.c.date_out < move.c.date_in)
                .values(date_out=None, modified_at=when)
            )

    @rule(pupil=st.sampled_from(PUPILS), day=st.integers(0, 80))
    def withdraw(self, pupil: int, day: int) -> None:
        """Every open stay of a pupil is closed on some day of the autumn."""
        move = schema.pupil_move
        self._sql(
            move.update()
            .where(move.c.pupil_id == pupil, move.c.date_out.is_(None))
            .values(
                date_out=school.FIRST_DAY + timedelta(days=day),
                order_out="№1-у",
                modified_at=self._tick(),
            )
        )

    @rule(pupil=st.sampled_from(PUPILS), day=st.integers(0, 80))
    def readmit(self, pupil: int, day: int) -> None:
        """A pupil is admitted (again) to their class from some day on."""
        klass = 2 if pupil == 4 else 1
        self.next_move += 1
        self._sql(
            schema.pupil_move.insert().values(
                id=self.next_move,
                pupil_id=pupil,
                class_id=klass,
                date_in=school.FIRST_DAY + timedelta(days=day),
                order_in="№2",
                modified_at=self._tick(),
            )
        )

    @rule(
        lesson=st.integers(0, 11),
        pupil=st.sampled_from(PUPILS),
        value=st.sampled_from(["5", "4", "3"]),
    )
    def put_mark(self, lesson: int, pupil: int, value: str) -> None:
        """A teacher writes or corrects a mark."""
        klass = 2 if pupil == 4 else 1
        work, mark_id = 100 * klass + lesson, (100 * klass + lesson) * 10 + pupil
        with self.engine.begin() as conn:
            conn.execute(schema.mark.delete().where(schema.mark.c.id == mark_id))
            conn.execute(
                schema.mark.insert().values(
                    id=mark_id,
                    work_id=work,
                    pupil_id=pupil,
                    mark_value=value,
                    modified_at=self._tick(),
                )
            )

    @rule(incremental=st.booleans(), fail_in=st.none() | st.integers(0, 6), lose=st.booleans())
    def sync(self, incremental: bool, fail_in: int | None, lose: bool) -> None:
        """A sync runs; the portal may fail midway or lose an answer (a crash's effect)."""
        self.portal.fail_in, self.portal.lose_answer = fail_in, lose
        self._run(incremental)
        self.portal.fail_in = None

    @rule(kind=st.sampled_from(["delete", "change", "lose"]), every=st.integers(1, 4))
    def portal_drifts(self, kind: str, every: int) -> None:
        """The portal loses or changes records behind the bridge's back (every n-th), or loses
        everything."""
        keys = sorted(self.portal.records)[::every]
        if kind == "lose":
            self.portal.records.clear()
        for key in keys if kind != "lose" else ():
            if kind == "delete":
                del self.portal.records[key]
            else:
                self.portal.records[key] = "changed-on-the-portal"

    def _run(self, incremental: bool, reconcile: bool = False) -> int:
        state = open_state(self.state_url)
        self.runs += 1
        try:
            outcome = run_sync(
                MAPPINGS,
                SqlSource(self.engine),
                state,
                self.portal,
                RunOptions(as_of=AS_OF, incremental=incremental, thresholds=NO_GUARD),
                run_id=f"r{self.runs}",
                reconcile=reconcile,
            )
            if outcome.plan.portal_held:  # the portal looks lost: an admin approves
                state.approve(outcome.plan.held_id, "admin")
        finally:
            state.close()
        return outcome.exit_code

    @invariant()
    def nothing_forbidden_was_ever_sent(self) -> None:
        """No PUT ever carried a record the regulation forbade when it was sent."""
        assert self.portal.forbidden == []

    @precondition(lambda self: self.runs > 0)
    @invariant()
    def a_clean_reconciling_sync_converges(self) -> None:
        """A fault-free reconciling sync (approved when the portal looks lost) leaves exactly
        the allowed personal records on the portal, as the bridge sent them."""
        code = self._run(incremental=False, reconcile=True)
        if code == ExitCode.PLAN_HELD:
            code = self._run(incremental=False, reconcile=True)
        assert code == 0
        may = allowed(self.engine)
        for entity in PERSONAL:
            held = {k for e, k in self.portal.records if e == entity}
            assert held == may[entity], entity
        assert "changed-on-the-portal" not in self.portal.records.values()

    def teardown(self) -> None:
        self.engine.dispose()
        self.folder.cleanup()


PolicyMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPolicyMachine = PolicyMachine.TestCase
TestPolicyMachine.__doc__ = "Random event sequences never leak and always converge."
