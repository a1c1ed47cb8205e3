"""ASIOU table and column names live only in mappings/, never in the bridge's Python code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

SEEDS = {Path("bridge/dnevnik/seed.py")}
"""Modules of the programs beside the bridge that read the demo school's reference schema by
name, as bridge/demo writes it: the dnevnik.ru emulator seeds its contingent from it."""
CODE = [p for p in Path("bridge").rglob("*.py") if "demo" not in p.parts and p not in SEEDS]


def _names() -> set[str]:
    """Every table and column the shipped mappings name that could be mistaken for code."""
    names: set[str] = set()
    for path in Path("mappings").glob("*.toml"):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        names.add(data["source"]["table"])
        names.update(data["source"]["key"])
        names.update(
            c for f in data["fields"].values() for c in f.get("columns", [f.get("column")]) if c
        )
    # Canonical words that happen to equal a source name are the bridge's own vocabulary.
    canonical = {
        "lesson",
        "mark",
        "absence",
        "period_mark",
        "subject",
        "teacher",
        "pupil",
        "guardian",
        "id",
        "name",
        "kind",
        "grade",
        "letter",
        "topic",
        "homework",
        "relation",
        "phone",
        "email",
        "weight",
        "code",
        "gender",
        "last_name",
        "first_name",
        "middle_name",
        "birth_date",
        "short_name",
        "modified_at",
    }
    return names - canonical


def test_no_source_table_or_column_name_appears_in_code() -> None:
    """No Python module outside bridge/demo (and the emulator's seeding) quotes a source table
    or column name."""
    names = _names()
    assert names, "the mappings should name some tables and columns"
    offenders = []
    for path in CODE:
        text = path.read_text(encoding="utf-8")
        quoted = [n for n in names if re.search(rf"[\"']{re.escape(n)}[\"']", text)]
        offenders += [f"{path}: {n}" for n in quoted]
    assert offenders == []
