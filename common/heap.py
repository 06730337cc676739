"""Keep the garbage collector's full passes short in the long-running processes.

CPython's full (oldest-generation) collection walks every tracked object. A gateway worker holds
about 75,000 of them once its modules are imported and its app is built, and a full pass over
those took 40-65 ms of a worker's time on the bench machine (at least one per worker in a 10 s run under load), stopping
every request in flight on that worker for as long (docs/performance.md, "Where a mixed-ci p99 goes,
and collector pauses"). What exists at start-up lives
as long as the process, so it is moved out of the collector's sight once (``gc.freeze``); later
passes walk only what was made since. Objects frozen this way are still freed by reference
counting; only a reference cycle among them would stay, and start-up makes none that it drops.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what start-up left behind, then freeze the rest (call once, when ready to serve)."""
    gc.collect()
    gc.freeze()
