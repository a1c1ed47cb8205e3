"""The canonical model and the project's one glossary.

Records, state entries and changes are plain slotted dataclasses, not frozen ones: a million of
them are made per run and frozen construction costs four times as much. Treat them as values.

Glossary (every module uses these words and no synonyms):

row
    One row as the source database returned it: a tuple of raw column values.
record
    A canonical, portal-agnostic fact built from one row by a mapping: an ``entity`` name, a
    stable ``key`` (the portal's ``sourcedId``), a ``payload`` of exported fields, and the
    ``fingerprint`` of that payload. Gate-only fields (consent, say) ride along in ``attrs``.
key
    The stable source key of a record, rendered as text (``"17"``, ``"12-345"``). Its
    ``sort_key`` is an order-preserving encoding used to merge source and state in one pass.
fingerprint
    A short hash of a record's canonical payload and mapping version; equal fingerprints mean
    "nothing to send".
rejection
    A row that could not become a record (bad value, missing key, dangling reference...), with
    table, key, field and reason. Rejections never stop the line.
hold
    A record that is valid but must not leave the school (no consent, dated after withdrawal,
    a mark in grade 1), with its reason.
change
    One operation the portal must receive: create, update, delete or archive of one record.
plan
    All changes of one run, in delivery order, with the counts of holds and rejections.
run
    One execution of read → map → gate → plan (→ guard → deliver → record).
delivery
    Sending changes to the portal and recording each acknowledged one in the state store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Value = Any
"""A canonical field value: str, int, bool, datetime.date or None."""


class Op(StrEnum):
    """The operations a change can carry."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    ARCHIVE = "archive"


class HoldReason(StrEnum):
    """Why a valid record is held back from the portal."""

    NO_CONSENT = "no_consent"
    CONSENT_UNCLEAR = "consent_unclear"
    """The consent value is not a documented yes (2, -1, 'отозвано', a BLOB...): no consent."""
    PUPIL_ROW_REJECTED = "pupil_row_rejected"
    """The pupil's own row was rejected: nothing of the pupil can be checked, so nothing leaves."""
    ENROLLMENT_ROW_REJECTED = "enrollment_row_rejected"
    """A rejected enrolment row names the pupil: their stays are unknown, so nothing leaves."""
    GUARDIAN_LINK_ROW_REJECTED = "guardian_link_row_rejected"
    """A rejected guardian-link row names the pupil: who represents them is unknown."""
    AFTER_WITHDRAWAL = "after_withdrawal"
    NOT_ENROLLED = "not_enrolled"
    GRADE_1_MARK = "grade_1_mark"
    NOT_MATCHED = "not_matched"
    """The portal owns the contingent and has no record this pupil is matched with (missing,
    ambiguous, or rejected by the admin): nothing of theirs can go, and nothing is guessed."""


@dataclass(slots=True)
class Record:
    """A canonical record built from one source row."""

    entity: str
    key: str
    sort_key: str
    payload: Mapping[str, Value]
    fingerprint: str
    attrs: Mapping[str, Value] = field(default_factory=dict)
    watermark: Value = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A source row that could not become a record, with everything needed to find it."""

    entity: str
    table: str
    key: str
    field: str
    reason: str
    sort_key: str = ""
    dangling: bool = False
    """True when the row refers to a record that is gone from the source (not merely rejected):
    if the portal holds this record, it must go too."""
    closes: HoldReason | None = None
    """Set when the row is one the gate reads (pupil, enrolment, guardian link): the gate
    fails closed, so if the portal holds this record it must go, in full and incremental runs."""


@dataclass(frozen=True, slots=True)
class Hold:
    """A valid record the gate keeps back, and why."""

    record: Record
    reason: HoldReason


@dataclass(slots=True)
class StateEntry:
    """What the state store remembers of one delivered record."""

    entity: str
    key: str
    sort_key: str
    fingerprint: str
    status: str
    payload: Mapping[str, Value] | None = None
    pupil_key: str | None = None
    class_key: str | None = None


EntryView = Sequence[str]
"""What a full merge reads of each state entry: (sort key, fingerprint, status). A database
row will do, and indexing it is several times cheaper than an attribute."""


@dataclass(slots=True)
class Change:
    """One operation for the portal. ``before`` is the state's payload for updates and deletes."""

    op: Op
    entity: str
    key: str
    sort_key: str
    record: Record | None
    before: Mapping[str, Value] | None = None
    reason: str | None = None
    class_key: str | None = None

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint the state will hold once this change is delivered."""
        return self.record.fingerprint if self.record is not None else None


def changed_fields(change: Change) -> dict[str, tuple[Value, Value]]:
    """Field-level before/after of an update (every field whose value differs)."""
    before = change.before or {}
    after = change.record.payload if change.record is not None else {}
    names = sorted(set(before) | set(after))
    return {n: (before.get(n), after.get(n)) for n in names if before.get(n) != after.get(n)}
