"""The engine: one run from the source to the portal, and the only place that sequences I/O.

The path of one sync (``run.run_sync``):

1. ``planning.plan_run`` reads every entity in dependency order, streams its rows through the
   compiled mapping (``reading.to_items``) and the gate into the planner, merged with the state
   store's entries (``working``); large full reads are planned in key ranges on every core
   (``ranges``, ``workers``);
2. as the plan streams, ``deliver.Deliverer`` sends creates and harmless updates in batches and
   records what the portal acknowledged;
3. the guard judges the destructive changes (deletes, archives, closures): if it lets them, they
   are delivered last (parents first for archives, children first for deletes);
4. the watermarks advance only when everything was acknowledged.

Deciding happens in the pure core (``bridge.core``); the engine only wires it to the ports. It
knows no adapter: the service (``bridge.service.runner``) builds them from the configuration
and is the engine's only caller.
"""

from bridge.service.engine.deliver import Deadline, Deliverer, DeliveryReport, Progress, delivered
from bridge.service.engine.keys import key_ranges, resolve_workers, sort_bounds
from bridge.service.engine.options import PlanResult, RunOptions
from bridge.service.engine.planning import plan_run, read_back
from bridge.service.engine.reading import due_stays, rejected_rows, to_items
from bridge.service.engine.run import SyncResult, run_sync

__all__ = [
    "Deadline",
    "Deliverer",
    "DeliveryReport",
    "PlanResult",
    "Progress",
    "RunOptions",
    "SyncResult",
    "delivered",
    "due_stays",
    "key_ranges",
    "plan_run",
    "read_back",
    "rejected_rows",
    "resolve_workers",
    "run_sync",
    "sort_bounds",
    "to_items",
]
