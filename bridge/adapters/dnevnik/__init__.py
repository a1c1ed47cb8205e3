"""The dnevnik.ru partner API v2 adapter (``DnevnikPortal``): matched contingent, single
writes with the portal's ids, lookup before create after an unknown outcome."""

from bridge.adapters.dnevnik.portal import DNEVNIK_SUPPORT, DnevnikPortal
from bridge.adapters.dnevnik.settings import DnevnikSettings

__all__ = ["DNEVNIK_SUPPORT", "DnevnikPortal", "DnevnikSettings"]
