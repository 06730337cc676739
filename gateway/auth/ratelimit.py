"""Per-client token buckets: failed logins and the optional ``http.ratelimit`` request rate.

Buckets are per gateway worker (no shared state): with W workers a client can get up to W
times the configured rate, which is the usual trade-off for a stateless gateway. Idle buckets
are dropped so that the table stays small under a scan from many addresses.
"""

from __future__ import annotations

import time


class Buckets:
    """``capacity`` tokens per key, refilled at ``rate`` tokens per second."""

    def __init__(self, rate: float, capacity: float, max_keys: int = 100_000) -> None:
        self.rate, self.capacity, self.max_keys = rate, capacity, max_keys
        self._state: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def _level(self, key: str, now: float) -> float:
        tokens, updated = self._state.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - updated) * self.rate)

    def allowed(self, key: str) -> bool:
        """True while ``key`` has a token left (does not take one)."""
        return self._level(key, time.monotonic()) >= 1.0

    def take(self, key: str) -> bool:
        """Take a token; False (and nothing taken) when the bucket is empty."""
        now = time.monotonic()
        tokens = self._level(key, now)
        if tokens < 1.0:
            self._state[key] = (tokens, now)
            return False
        if len(self._state) >= self.max_keys:
            self._prune(now)
        self._state[key] = (tokens - 1.0, now)
        return True

    def _prune(self, now: float) -> None:
        full = [k for k in self._state if self._level(k, now) >= self.capacity]
        for k in full:
            del self._state[k]
        if len(self._state) >= self.max_keys:  # still full: forget the oldest half
            for k in sorted(self._state, key=lambda k: self._state[k][1])[: self.max_keys // 2]:
                del self._state[k]


class FailedLogins:
    """``limit`` failed logins per client per minute; beyond that the client gets 429 for a while."""

    def __init__(self, limit: int) -> None:
        self.buckets = Buckets(rate=limit / 60.0, capacity=float(limit))

    def blocked(self, client: str | None) -> bool:
        return not self.buckets.allowed(client or "-")

    def failed(self, client: str | None) -> None:
        self.buckets.take(client or "-")


class RequestRate:
    """``http.ratelimit``: requests per second per client, optionally per method."""

    def __init__(self, rate: float | None, methods: dict[str, float]) -> None:
        self.default = Buckets(rate, max(1.0, rate)) if rate else None
        self.methods = {m: Buckets(r, max(1.0, r)) for m, r in methods.items()}

    @property
    def enabled(self) -> bool:
        return self.default is not None or bool(self.methods)

    def take(self, client: str | None, method: str | None) -> bool:
        buckets = self.methods.get((method or "").upper(), self.default)
        return buckets is None or buckets.take(client or "-")
