"""The duplicates check of the reference portal: live records of one school that share a natural
identity (same pupil and work for a mark, say) under different keys. The portal accepts them;
``GET /_portal/duplicates`` reports them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping

from bridge.refportal.records import Data, SchoolData, StoredRecord

NATURAL_IDENTITY: dict[str, tuple[str, ...]] = {
    "mark": ("work", "pupil"),
    "absence": ("lesson", "pupil"),
    "enrollment": ("pupil", "class", "date_from"),
    "period_mark": ("pupil", "subject", "period"),
}
"""Fields that identify a fact regardless of its key: two live records sharing them are
duplicates (the portal accepts them; ``duplicates()`` reports them)."""


def find_duplicates(schools: Mapping[str, SchoolData]) -> list[Data]:
    """Groups of live records sharing a natural identity, school by school."""
    found: list[Data] = []
    for name, data in sorted(schools.items()):
        for entity, fields in NATURAL_IDENTITY.items():
            found += _duplicates_of(name, entity, fields, data.records[entity].values())
    return found


def _duplicates_of(
    school: str, entity: str, fields: tuple[str, ...], records: Iterable[StoredRecord]
) -> list[Data]:
    groups: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if record.live:
            identity = json.dumps([record.data.get(f) for f in fields])
            groups[identity].append(record.sourced_id)
    return [
        {
            "school": school,
            "entity": entity,
            "identity": dict(zip(fields, json.loads(identity), strict=True)),
            "sourcedIds": sorted(keys),
        }
        for identity, keys in sorted(groups.items())
        if len(keys) > 1
    ]
