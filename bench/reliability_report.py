"""The bad-input corpus as a table: each kind written into a small generated school and planned.

    .venv/bin/python bench/reliability_report.py

Runs every kind of ``tests/reliability/test_bad_input_corpus.py`` (the same rows the end-to-end
test syncs over HTTP) through the planner against an empty state store and prints a Markdown table:
kind | table.column | example value | outcome | reason. Example values are synthetic. Exits 1 if a
kind is not stopped the way the corpus expects. docs/reliability.md holds its output.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e import make_school
from tests.reliability.test_bad_input_corpus import (
    KINDS,
    REJECTED,
    SCHOOL,
    Kind,
    describe_school,
    hold_counts,
    new_rejections,
    plan_of,
    write_rows,
)


def shown(value: object) -> str:
    """A value as a table cell: control characters escaped, long text abbreviated."""
    if isinstance(value, bytes):
        text = f"BLOB {value[:12]!r}"
    elif isinstance(value, str) and len(value) > 24:
        text = f"{value[:6]!r}… ({len(value)} chars)"
    else:
        text = repr(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def main() -> int:
    """Plan each kind on a fresh copy of one school; print the table; 1 if any kind slipped."""
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        school = make_school(Path(folder), **SCHOOL)
        base, baseline = describe_school(school), plan_of(school)
        print("| kind | table.column | example value | outcome | reason |")
        print("| --- | --- | --- | --- | --- |")
        for number, kind in enumerate(KINDS):
            copy = Path(folder) / f"kind-{number}.sqlite"
            shutil.copy(school, copy)
            built = kind.built(base)
            write_rows(copy, built.rows)
            outcome, reason, expected = _outcome(kind, copy, baseline)
            ok = ok and expected
            print(
                f"| {kind.name} | `{kind.table}.{kind.column}` | {shown(kind.value)} | "
                f"{outcome}{'' if expected else ' (UNEXPECTED)'} | {reason} |"
            )
            copy.unlink()
    print(f"\n{len(KINDS)} kinds.")
    return 0 if ok else 1


def _outcome(kind: Kind, school: Path, baseline: object) -> tuple[str, str, bool]:
    result = plan_of(school)
    fresh = new_rejections(result, baseline)  # type: ignore[arg-type]
    held = hold_counts(result) - hold_counts(baseline)  # type: ignore[arg-type]
    if fresh:
        (first, *_) = fresh
        reason = (
            f"{first.entity} {first.key or '(no key)'} field `{first.field}`: "
            f"{first.reason}".replace("|", "\\|")
        )
        return "rejected", reason, kind.outcome == REJECTED and len(fresh) == 1
    if held:
        ((entity, why), _count), *_ = held.items()
        return "held", f"{entity}: `{why}`", kind.outcome != REJECTED and why == kind.words
    return "DELIVERED", "nothing stopped it", False


if __name__ == "__main__":
    sys.exit(main())
