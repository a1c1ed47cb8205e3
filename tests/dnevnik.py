"""Helpers for the dnevnik.ru emulator's tests: a small demo school in SQLite (with one pupil
withdrawn, so memberships have an archive), a minimal HTTP client with the Access-Token, and
the ASIOU rows the seeding read."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bridge.demo.generate import SchoolSpec, generate
from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN

WITHDRAWN_ON = "2025-09-15"
"""The first day out of the pupil this school withdraws (see :func:`write_school`)."""


def write_school(path: Path, days: int = 20) -> dict[str, Any]:
    """The demo school of 60 pupils and 20 days in SQLite at ``path``, then the last pupil of
    the last class withdrawn on :data:`WITHDRAWN_ON` (from the class and its subgroups); facts
    the tests need: the withdrawn pupil's id and class."""
    engine = sa.create_engine(f"sqlite:///{path}")
    generate(engine, SchoolSpec(pupils=60, seed=1, days=days))
    engine.dispose()
    db = sqlite3.connect(path)
    with db:
        class_id = db.execute("SELECT max(id) FROM class_unit").fetchone()[0]
        pupil_id = db.execute(
            "SELECT max(pupil_id) FROM pupil_move WHERE class_id = ?", (class_id,)
        ).fetchone()[0]
        db.execute(
            "UPDATE pupil_move SET date_out = ? WHERE pupil_id = ?", (WITHDRAWN_ON, pupil_id)
        )
        db.execute(
            "UPDATE group_pupil SET date_out = ? WHERE pupil_id = ?", (WITHDRAWN_ON, pupil_id)
        )
    db.close()
    return {"withdrawn_pupil": pupil_id, "withdrawn_class": class_id}


def asiou_rows(path: Path, query: str, *args: object) -> list[dict[str, Any]]:
    """Rows of the ASIOU file as dicts."""
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(query, args)]
    finally:
        db.close()


class Api:
    """A minimal client of the emulator's /v2 API with the demo token."""

    def __init__(self, emulator: DnevnikEmulator, token: str | None = DEMO_TOKEN) -> None:
        self.emulator = emulator
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Access-Token"] = token

    def call(self, method: str, path: str, **options: Any) -> requests.Response:
        """One request to ``/v2/{path}``."""
        options.setdefault("timeout", 10)
        return self.session.request(method, self.emulator.api_url + path, **options)

    def ok(self, method: str, path: str, **options: Any) -> Any:
        """The JSON of a request that must answer 200."""
        response = self.call(method, path, **options)
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def rejected(self, method: str, path: str, **options: Any) -> str:
        """The description of a request that must be refused with parameterInvalid."""
        response = self.call(method, path, **options)
        assert response.status_code == 400, (response.status_code, response.text)
        body = response.json()
        assert body["type"] == "parameterInvalid", body
        return str(body["description"])

    def inspect(self, name: str) -> Any:
        """``GET /_emulator/{name}``."""
        response = self.session.get(f"{self.emulator.url}/_emulator/{name}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    # --- the contingent, found through the seeding map ------------------------------------

    def klass(self, asiou_class: int) -> int:
        """The portal id of an ASIOU class."""
        found = self.emulator.portal_id("class_unit", asiou_class)
        assert found is not None
        return found

    def pupil(self, asiou_pupil: int) -> int:
        """The portal id of an ASIOU pupil."""
        found = self.emulator.portal_id("pupil", asiou_pupil)
        assert found is not None
        return found

    def subject_of(self, group: int) -> int:
        """The first subject of a group."""
        return int(self.ok("GET", f"edu-groups/{group}/subjects")[0]["id"])

    def lesson(self, group: int, day: str = "2025-09-10", number: int = 2, **extra: Any) -> Any:
        """A lesson created with JSON."""
        body = {"eduGroup": group, "subject": self.subject_of(group), "date": day,
                "number": number, "title": "Тема урока", **extra}  # fmt: skip
        return self.ok("POST", "lessons", json=body)

    def work(self, lesson: int, **extra: Any) -> Any:
        """A work on the lesson (mark5) created with JSON."""
        return self.ok("POST", "works", json={"lesson": lesson, "markType": "mark5", **extra})

    def mark(self, person: int, work: int, value: str = "5") -> Any:
        """A mark created with JSON."""
        return self.ok("POST", f"persons/{person}/works/{work}/mark", json={"value": value})
