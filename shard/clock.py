"""The time a shard uses for lifecycle decisions: push and pull times, retention ages, event times.

``now()`` is the wall clock plus an offset that is 0 in production. Tests move it through the
real API (``PUT /v2/_shardreg/debug/clock``, only with ``extensions.debug``: the ``clock.set``
op) to build a history of pushes and pulls days apart and then run a retention pass "later",
without sleeping. The offset lives in memory: a restarted shard is back on the wall clock.
"""

from __future__ import annotations

import time

_offset = 0.0


def now() -> float:
    return time.time() + _offset


def set_offset(seconds: float) -> None:
    global _offset
    _offset = float(seconds)


def offset() -> float:
    return _offset
