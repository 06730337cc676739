"""A dictionary that forgets its oldest entries beyond a cap: for caches keyed by what clients ask
for (signatures verified, tags re-checked upstream), which must not grow with the data for ever."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(dict[K, V]):
    """At most ``cap`` entries; adding a new key beyond that drops the oldest-added one."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self and len(self) >= self.cap:
            del self[next(iter(self))]
        super().__setitem__(key, value)
