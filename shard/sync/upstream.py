"""One configured upstream registry: its URLs (fail-over in order), auth, TLS, request limits, counters.

Every request holds a slot of the registry's limiter for as long as its response is open (a
blob download keeps its slot while it streams): ``reqConcurrent`` bounds what is in flight and
``reqPerSec`` spaces the starts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from common.config.sync import SyncRegistry
from common.errors import ErrorCode, RegistryError
from shard.sync.auth import RegistryAuth

log = logging.getLogger("shardreg.sync")

#: Connecting to an upstream must not take longer than this (an on-demand miss fails fast).
CONNECT_TIMEOUT = 5.0


class Limiter:
    """``reqConcurrent`` requests in flight, started at most ``reqPerSec`` per second."""

    def __init__(self, concurrent: int, per_sec: float) -> None:
        self.slots = asyncio.Semaphore(concurrent)
        self.interval = 1.0 / per_sec if per_sec > 0 else 0.0
        self.next_start = 0.0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self.slots:
            if self.interval:
                now = time.monotonic()
                start = max(now, self.next_start)
                self.next_start = start + self.interval
                if start > now:
                    await asyncio.sleep(start - now)
            yield


def tls_context(registry: SyncRegistry) -> ssl.SSLContext | bool:
    """``tlsVerify``/``certDir`` as httpx's ``verify``: CAs ``*.crt``, client pair ``*.cert`` + ``*.key``."""
    if not registry.tls_verify and not registry.cert_dir:
        return False
    context = ssl.create_default_context()
    if not registry.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if registry.cert_dir:
        directory = Path(registry.cert_dir)
        for ca in sorted(directory.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca))
        for cert in sorted(directory.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                context.load_cert_chain(str(cert), str(key))
    return context


class Upstream:
    def __init__(self, registry: SyncRegistry, credentials: dict[str, tuple[str, str]], *,
                 timeout: float) -> None:
        self.registry = registry
        self.name = registry.name
        self.limiter = Limiter(registry.req_concurrent, registry.req_per_sec)
        verify = tls_context(registry)
        self.auths = {url: RegistryAuth(credentials.get(urlsplit(url).netloc)) for url in registry.urls}
        self.clients = {url: httpx.AsyncClient(
            base_url=url, verify=verify, auth=self.auths[url], follow_redirects=True,
            timeout=httpx.Timeout(min(timeout, registry.sync_timeout), connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=registry.req_concurrent + 2)) for url in registry.urls}
        #: (kind, outcome) → count; bytes fetched; the last failure.
        self.requests: Counter[tuple[str, str]] = Counter()
        self.bytes = 0
        self.last_error = ""
        self.last_error_at = 0.0
        self.last_ok_at = 0.0
        #: Periodic mirroring: repositories this shard synced in its last pass, and when it ended.
        self.mirrored_repos = 0
        self.last_mirror_at = 0.0

    def failed(self, why: str) -> None:
        self.last_error, self.last_error_at = why, time.time()
        log.warning("sync: upstream %s: %s", self.name, why)

    @asynccontextmanager
    async def stream(self, method: str, path: str, kind: str, headers: dict[str, str] | None = None
                     ) -> AsyncIterator[httpx.Response]:
        """One request to the first URL that answers; RegistryError(UNAVAILABLE) when none does."""
        errors = []
        async with self.limiter.slot():
            for url, client in self.clients.items():
                request = client.build_request(method, path, headers=headers)
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    errors.append(f"{url}: {type(exc).__name__} {exc}".strip())
                    self.requests[(kind, "error")] += 1
                    continue
                self.requests[(kind, str(response.status_code))] += 1
                if response.status_code < 500:
                    self.last_ok_at = time.time()
                try:
                    yield response
                finally:
                    await response.aclose()
                return
        why = "; ".join(errors)
        self.failed(why)
        raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {self.name} cannot be reached",
                            detail={"upstream": self.name, "reason": why[:500]}, headers={"Retry-After": "5"})

    async def get(self, path: str, kind: str, headers: dict[str, str] | None = None,
                  method: str = "GET", limit: int = 8 * 1024 * 1024) -> tuple[httpx.Response, bytes]:
        """A small response read whole (manifests, tag lists), at most ``limit`` bytes."""
        async with self.stream(method, path, kind, headers) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {self.name} sent more "
                                        f"than {limit} bytes for {path}", detail={"upstream": self.name})
            self.bytes += len(body)
            return response, bytes(body)

    def status(self) -> dict[str, object]:
        return {
            "name": self.name, "urls": list(self.registry.urls), "onDemand": self.registry.on_demand,
            "periodic": self.registry.periodic, "pollInterval": self.registry.poll_interval,
            "requests": {f"{kind}/{outcome}": n for (kind, outcome), n in sorted(self.requests.items())},
            "bytes": self.bytes, "lastError": self.last_error, "lastErrorAt": self.last_error_at,
            "lastOkAt": self.last_ok_at,
            "tokenRequests": sum(a.token_requests for a in self.auths.values()),
            "mirroredRepos": self.mirrored_repos, "lastMirrorAt": self.last_mirror_at,
        }

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()
