"""The facts of stored manifests kept in memory, bounded by their size, not their number.

A manifest's facts (:func:`shard.imageinfo.manifest_facts`: sizes, layers, platform, history)
never change once it is stored, and the listing index and the search summaries read them often,
so they are kept. Their size varies a hundredfold: about 1 KiB for a manifest without layers,
about 56 KiB for one of 100 layers. A cap on the number of entries (50,000 before) let a shard's
memory grow to gigabytes on a registry of many-layer images (measured in ``bench scale``); the
cache is now bounded by an estimate of the bytes it holds (:data:`BUDGET`), oldest entry out first.
Used from the event loop and the LMDB writer thread, hence the lock.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Hashable
from typing import Any

#: Bytes the cached facts may hold, as :func:`approx_size` counts them.
BUDGET = 64 * 1024 * 1024


def approx_size(obj: Any) -> int:
    """Bytes held by ``obj`` and what it contains (dicts, lists, tuples, scalars); shared objects
    are counted each time they appear, so this errs on the high side."""
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(approx_size(k) + approx_size(v) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sys.getsizeof(obj) + sum(approx_size(v) for v in obj)
    return sys.getsizeof(obj)


class FactsCache:
    """Key → facts (None: known not to be there), at most ``budget`` bytes, oldest first out."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = BUDGET if budget is None else budget
        self._entries: dict[Hashable, tuple[Any, int]] = {}
        self.held = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: Hashable) -> tuple[bool, Any]:
        """(True, facts) when ``key`` is cached, else (False, None)."""
        with self._lock:
            found = self._entries.get(key)
        return (False, None) if found is None else (True, found[0])

    def put(self, key: Hashable, facts: Any) -> None:
        size = approx_size(facts) + approx_size(key)
        with self._lock:
            self._drop(key)
            if size > self.budget:
                return
            self._entries[key] = (facts, size)
            self.held += size
            while self.held > self.budget:
                self._drop(next(iter(self._entries)))

    def drop(self, key: Hashable) -> None:
        with self._lock:
            self._drop(key)

    def _drop(self, key: Hashable) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self.held -= found[1]
