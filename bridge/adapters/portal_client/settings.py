"""What the portal client is told: where the portal is, who we are, how patient to be.
The defaults here are the configuration's defaults too (``bridge.service.settings``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge import __version__

MAX_CONCURRENCY = 64
"""The most requests a client keeps in flight (and connections it keeps open)."""


@dataclass(frozen=True)
class PortalSettings:
    """Where the portal is, who we are, and how patient to be. ``repr`` hides the secret."""

    base_url: str
    school: str
    client_id: str
    client_secret: str = field(repr=False)
    connect_timeout: float = 3.05
    read_timeout: float = 30.0
    batch_size: int = 500
    max_attempts: int = 8
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 300.0
    request_deadline: float = 60.0
    """Seconds one request may take in all (the read timeout bounds each socket read only)."""
    max_batch_wait: float = 900.0
    """Seconds one request may spend in retries in all, waits included."""
    rate_limit: float = 0.0
    """Requests per second at most, all threads together (0: no limit)."""
    concurrency: int = 1
    """Batch requests in flight at once (each from a thread of its own)."""
    verify: bool | str = True
    user_agent: str = f"asiou-bridge/{__version__}"

    def __post_init__(self) -> None:
        """Refuse settings no client could work with (values only, never the secret)."""
        if self.batch_size < 1 or self.max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be from 1 to {MAX_CONCURRENCY}")
        if (
            min(self.connect_timeout, self.read_timeout, self.request_deadline, self.max_batch_wait)
            <= 0
            or self.rate_limit < 0
        ):
            raise ValueError("timeouts must be positive and rate_limit not negative")
