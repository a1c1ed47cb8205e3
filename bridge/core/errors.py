"""The exception tree. Exceptions carry facts; the CLI renders them for admins
(``bridge.cli.render``).

::

    BridgeError                    root; ``exit_code`` tells the CLI how to end
    ├── ConfigError                configuration or mappings are invalid (all problems at once)
    ├── UnknownPlan                ``approve`` named no held plan (a usage error)
    ├── UnknownKey                 a command named a record the source does not have (usage)
    ├── LockBusy                   another sync of this school holds the run lock
    ├── FatalError                 the run cannot go on (stop, report, exit non-zero)
    │   ├── SourceError            the ASIOU database failed (connect, query, lost mid-read)
    │   ├── SourceOrderError       the source returned rows out of key order
    │   ├── StateError             the state store or the run history failed (disk, connection)
    │   ├── PortalAuthError        the portal refused our credentials
    │   └── PortalFatalError       the portal answered in a way retrying cannot fix
    └── RetriableError             try again later (the portal is busy, a timeout)
        ├── PortalUnavailable      retries ran out; nothing unacknowledged was recorded
        ├── Interrupted            asked to stop; stopped after the current batch
        └── RunDeadline            the run took too long; stopped after the current batch

A row that cannot become a record is no exception but a ``Rejection`` (``bridge.core.model``):
the run goes on without it.

The engine branches on these dispositions, never on a driver's own exception: adapters translate
foreign exceptions at their seam with ``raise X(...) from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


class ExitCode:
    """Process exit codes, documented in docs/operations.md."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    SOURCE_UNAVAILABLE = 4
    PLAN_HELD = 5
    PARTIAL = 6
    PORTAL_AUTH = 7


Outcome = Literal[
    "ok", "partial", "held", "failed", "source_unavailable", "auth_failed", "interrupted"
]
"""One word for how a run ended, in the run history, the logs and the metrics."""

OUTCOMES: dict[int, Outcome] = {
    ExitCode.OK: "ok",
    ExitCode.PLAN_HELD: "held",
    ExitCode.PARTIAL: "partial",
    ExitCode.SOURCE_UNAVAILABLE: "source_unavailable",
    ExitCode.PORTAL_AUTH: "auth_failed",
}
"""The one table from exit codes to outcomes; a code not in it is "failed"."""


def outcome_of(exit_code: int, *, interrupted: bool = False) -> Outcome:
    """The outcome of a run that ended with ``exit_code``. A run stopped on request exits 0 so
    the service manager is content, yet did not finish: it is "interrupted", never "ok"."""
    return "interrupted" if interrupted else OUTCOMES.get(exit_code, "failed")


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""

    exit_code = ExitCode.FAILURE


@dataclass(frozen=True)
class Problem:
    """One configuration or mapping problem: where it is and what is wrong."""

    file: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.path}" if self.path else self.file
        return f"{where}: {self.message}"


class ConfigError(BridgeError):
    """Configuration or mappings are invalid; carries every problem found."""

    exit_code = ExitCode.CONFIG

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class UnknownPlan(BridgeError):  # noqa: N818 - reads as the condition it reports
    """An approval named ``plan_id``, which is not a plan a guard held: nothing is stored."""

    exit_code = ExitCode.USAGE

    def __init__(self, plan_id: str) -> None:
        super().__init__(f"no held plan with id {plan_id}")
        self.plan_id = plan_id


class UnknownKey(BridgeError):  # noqa: N818 - reads as the condition it reports
    """A command named ``entity`` ``key``, which the ASIOU database does not have."""

    exit_code = ExitCode.USAGE

    def __init__(self, entity: str, key: str) -> None:
        super().__init__(f"no {entity} with key {key} in the source")
        self.entity, self.key = entity, key


class FatalError(BridgeError):
    """The run cannot continue."""


class SourceError(FatalError):
    """The source database failed: ``operation`` says what the bridge was doing."""

    exit_code = ExitCode.SOURCE_UNAVAILABLE

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail


class SourceOrderError(FatalError):
    """Rows did not come in key order, so a one-pass merge would be wrong."""

    def __init__(self, entity: str, table: str, key: str, previous: str) -> None:
        super().__init__(f"{entity}: table {table} returned key {key} after {previous}")
        self.entity = entity
        self.table = table
        self.key = key
        self.previous = previous


class StateError(FatalError):
    """The state store or the run history failed (disk full, database gone, connection lost).
    What the portal acknowledged before is recorded; nothing after it is."""

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(f"{operation}: {detail}")
        self.operation = operation
        self.detail = detail


class LockBusy(BridgeError):  # noqa: N818 - reads as the condition it reports
    """Another sync holds the lock; ``holder`` says who."""

    exit_code = ExitCode.FAILURE

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"another sync is running ({holder}); lock {name}")
        self.name = name
        self.holder = holder


class RetriableError(BridgeError):
    """A temporary failure: the same call may succeed later."""


class PortalAuthError(FatalError):
    """The portal refused the client credentials (or a fresh token)."""

    exit_code = ExitCode.PORTAL_AUTH

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"portal authentication failed (HTTP {status}): {detail}")
        self.status = status
        self.detail = detail


class PortalFatalError(FatalError):
    """The portal answered a whole request with an error retrying cannot fix (400, 403...)."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(f"portal error HTTP {status} {kind}: {detail}")
        self.status = status
        self.kind = kind
        self.detail = detail


class PortalUnavailable(RetriableError):  # noqa: N818 - reads as the condition it reports
    """The portal kept failing (429, 5xx, timeouts, resets) until retries ran out."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, attempts: int, last: str) -> None:
        super().__init__(f"portal unavailable after {attempts} attempts; last: {last}")
        self.attempts = attempts
        self.last = last


class Interrupted(RetriableError):  # noqa: N818 - reads as the condition it reports
    """The run was asked to stop (SIGTERM, SIGINT) and stopped after the current batch."""

    exit_code = ExitCode.OK

    def __init__(self) -> None:
        super().__init__("stopped on request after the current batch; the next run goes on")


class RunDeadline(RetriableError):  # noqa: N818 - reads as the condition it reports
    """The run passed ``sync.run_deadline_minutes``: stopped after the batch in flight, what
    was acknowledged recorded; the rest is a partial delivery the next run sends."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, minutes: float) -> None:
        super().__init__(
            f"the run passed its deadline of {minutes:g} minutes "
            "(sync.run_deadline_minutes); stopped after the batch in flight"
        )
        self.minutes = minutes
