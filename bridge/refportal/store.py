"""The reference portal's store: its records and rules, without HTTP. This module gathers the
store's public names; each lives in a module of its own:

- :mod:`bridge.refportal.rules`: the rules as data (references, allowed values, text limits,
  dates, the batch limit);
- :mod:`bridge.refportal.records`: :class:`StoredRecord` (live or tombstone) and
  :class:`SchoolData`, one school's records with the indexes the validation needs;
- :mod:`bridge.refportal.checks`: the checks compiled per entity and the :class:`Verdict`;
- :mod:`bridge.refportal.model`: :class:`PortalModel`, every school's records in memory,
  applying operations one by one with every check a real diary makes
  (``docs/portal-api.md``, "Validation");
- :mod:`bridge.refportal.duplicates`: live records sharing a natural identity;
- :mod:`bridge.refportal.datafile`: :class:`PortalFile`, the SQLite file the HTTP server
  writes through to.

The in-memory adapter of the :class:`bridge.ports.Portal` port on top of the model,
``MemoryPortal``, is in ``bridge.testing.portal``.
"""

from __future__ import annotations

from bridge.refportal.checks import CHECKS, Verdict, check_shape, compile_checks, is_iso_date
from bridge.refportal.datafile import SCHEMA_VERSION, PortalFile
from bridge.refportal.duplicates import NATURAL_IDENTITY
from bridge.refportal.model import Applied, PortalModel
from bridge.refportal.records import Data, SchoolData, StoredRecord, tombstone, utc_stamp
from bridge.refportal.rules import MAX_BATCH, REFERRERS, REFS, Ref

__all__ = [
    "CHECKS",
    "MAX_BATCH",
    "NATURAL_IDENTITY",
    "REFERRERS",
    "REFS",
    "SCHEMA_VERSION",
    "Applied",
    "Data",
    "PortalFile",
    "PortalModel",
    "Ref",
    "SchoolData",
    "StoredRecord",
    "Verdict",
    "check_shape",
    "compile_checks",
    "is_iso_date",
    "tombstone",
    "utc_stamp",
]
