"""What the dnevnik.ru adapter is told: where the partner API is, the school, the token, how
patient to be, and the school's tables that turn canonical values into the portal's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bridge import __version__
from bridge.adapters.portal_client.settings import MAX_CONCURRENCY

WORK_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "oral": "УО",
        "homework": "ДЗ",
        "independent": "СР",
        "practical": "ПР",
        "test": "КР",
        "dictation": "ДИК",
        "lab": "ЛР",
        "essay": "СОЧ",
    }
)
"""A canonical work kind → the abbreviation of the school's work type on the portal."""

LOG_STATUSES: Mapping[str, str] = MappingProxyType(
    {"absent": "Absent", "ill": "Ill", "excused": "Pass", "late": "Late"}
)
"""A canonical absence code («н», «б», «у», «о» after the absence mapping) → the portal's
lesson log-entry status (``lesson-log-entries/statuses``)."""


@dataclass(frozen=True)
class DnevnikSettings:
    """The adapter's settings. ``repr`` hides the token."""

    base_url: str
    """The partner API's root, ``https://api.dnevnik.ru/v2/`` (or the emulator's)."""
    school: str
    """The portal's id of the school."""
    token: str = field(repr=False)
    connect_timeout: float = 3.05
    read_timeout: float = 30.0
    request_deadline: float = 60.0
    batch_size: int = 20
    """Single writes per batch: a batch is what one recording of the state covers."""
    max_attempts: int = 8
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    max_batch_wait: float = 900.0
    rate_limit: float = 0.0
    concurrency: int = 1
    verify: bool | str = True
    user_agent: str = f"asiou-bridge/{__version__}"
    work_types: Mapping[str, str] = field(default_factory=lambda: WORK_TYPES)
    statuses: Mapping[str, str] = field(default_factory=lambda: LOG_STATUSES)
    mark_system: str = "mark5"
    names: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Entity → the school's name → the portal's (subjects, classes, periods called otherwise)."""

    def __post_init__(self) -> None:
        """Refuse settings no adapter could work with (never quoting the token)."""
        if not self.base_url.rstrip("/").endswith("/v2"):
            raise ValueError("base_url must be the partner API's /v2/ root")
        if self.batch_size < 1 or self.max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be from 1 to {MAX_CONCURRENCY}")
        if min(self.connect_timeout, self.read_timeout, self.request_deadline) <= 0:
            raise ValueError("timeouts must be positive")
        if not self.token or not self.school:
            raise ValueError("the school and a token are needed")
