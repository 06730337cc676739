"""Manifests pulled through: one upstream request per ``(repository, reference)`` at a time.

A manifest held locally by digest is final. A tag held locally is served as it is until it
was last checked ``pollInterval`` (or the default) ago; then one request re-checks it (a HEAD,
a GET only when it moved) while every other request for it waits for that answer. A
failing re-check serves the cached tag and is logged. The bytes are verified against the digest
asked for, or the upstream's ``Docker-Content-Digest`` for a tag, and stored exactly as
fetched (so the digest is always preserved), as a push would store them, except that the
blobs and children they name are fetched when they are asked for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.grammar import MANIFEST_MEDIA_TYPES, digest_algorithm, digest_of
from common.manifest import ParsedManifest, media_type_of, parse_manifest
from common.protocol import Answer
from common.recent import Recent
from shard.hooks import Hooks, Pushed
from shard.lmdbstore import Txn
from shard.service import ShardService
from shard.sync.upstream import Upstream

log = logging.getLogger("shardreg.sync")

ACCEPT = ", ".join(sorted(MANIFEST_MEDIA_TYPES))
#: Who a pulled-through manifest was "pushed by" in the search metadata.
PUSHED_BY = "sync"


#: Tags whose last upstream check is remembered.
CHECKED = 100_000


class ManifestPuller:
    def __init__(self, shard: ShardService, hooks: Hooks) -> None:
        self.meta = shard.meta
        self.hooks = hooks
        #: When each pulled-through tag was last checked upstream (forgotten beyond CHECKED: re-checked then).
        self.checked: Recent[tuple[str, str], float] = Recent(CHECKED)
        self.flights: dict[tuple[str, str], asyncio.Future[str]] = {}
        self.joined = 0
        self.hits = 0
        self.misses = 0

    def local(self, repo: str, reference: str) -> str | None:
        def run(txn: Txn) -> str | None:
            try:
                digest = self.meta.resolve(txn, repo, reference)
            except RegistryError:
                return None
            return digest if self.meta.manifest_exists(txn, repo, digest) else None
        return self.meta.read(run)

    def answer(self, repo: str, digest: str, head: bool) -> Answer[m.ManifestGetReply]:
        def run(txn: Txn) -> Answer[m.ManifestGetReply]:
            record = self.meta.get_manifest(txn, repo, digest)
            if record is None:
                raise self.meta.manifest_unknown(txn, repo, digest)
            result: m.ManifestGetReply = {"digest": digest, "media_type": record["mediaType"], "size": record["size"]}
            if head:
                return result, []
            self.hooks.pulled(repo, digest)
            return result, [self.meta.manifest_bytes(txn, repo, digest)]
        return self.meta.read(run)

    async def get(self, upstream: Upstream, remote: str, repo: str, reference: str, head: bool
                  ) -> Answer[m.ManifestGetReply]:
        is_tag = ":" not in reference
        held = self.local(repo, reference)
        fresh = held is not None and (not is_tag or time.monotonic() - self.checked.get((repo, reference), -1e12)
                                      < upstream.registry.tag_recheck)
        if held is not None and fresh:
            self.hits += 1
            return self.answer(repo, held, head)
        key = (repo, reference)
        flight = self.flights.get(key)
        if flight is None:
            self.misses += 1
            flight = asyncio.get_running_loop().create_future()
            self.flights[key] = flight
            task = asyncio.get_running_loop().create_task(self._pull(upstream, remote, repo, reference, held))

            def settle(done: asyncio.Task[str]) -> None:
                self.flights.pop(key, None)
                if done.cancelled():
                    flight.cancel()
                elif done.exception() is not None:
                    flight.set_exception(done.exception())  # type: ignore[arg-type]
                else:
                    flight.set_result(done.result())
            task.add_done_callback(settle)
        else:
            self.joined += 1
        try:
            digest = await asyncio.shield(flight)
        except RegistryError as exc:
            if held is None:
                raise
            log.warning("sync: re-checking %s:%s against %s failed (%s); serving the cached tag",
                        repo, reference, upstream.name, exc.message)
            digest = held
        return self.answer(repo, digest, head)

    async def _pull(self, upstream: Upstream, remote: str, repo: str, reference: str, held: str | None) -> str:
        path = f"/v2/{remote}/manifests/{reference}"
        is_tag = ":" not in reference
        if held is not None and is_tag:
            response, _ = await upstream.get(path, "manifest", {"Accept": ACCEPT}, method="HEAD")
            if response.status_code == 200 and response.headers.get("Docker-Content-Digest") == held:
                self.checked[(repo, reference)] = time.monotonic()
                return held
        digest, parsed, body = await self.fetch(upstream, remote, reference)
        await self.store(repo, digest, parsed, body, reference if is_tag else None)
        if is_tag:
            self.checked[(repo, reference)] = time.monotonic()
        return digest

    async def fetch(self, upstream: Upstream, remote: str, reference: str) -> tuple[str, ParsedManifest, bytes]:
        """A manifest from the upstream, verified (digest asked for, or ``Docker-Content-Digest``) and parsed."""
        path = f"/v2/{remote}/manifests/{reference}"
        is_tag = ":" not in reference
        response, body = await upstream.get(path, "manifest", {"Accept": ACCEPT})
        if response.status_code == 404:
            raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"the upstream registry {upstream.name} has no manifest "
                                f"{remote}:{reference}", detail={"upstream": upstream.name, "reference": reference})
        if response.status_code != 200:
            raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {upstream.name} answered "
                                f"{response.status_code} for the manifest {remote}:{reference}",
                                detail={"upstream": upstream.name, "status": response.status_code},
                                headers={"Retry-After": "5"})
        announced = response.headers.get("Docker-Content-Digest")
        expected = reference if not is_tag else announced
        digest = digest_of(body, digest_algorithm(expected) if expected else "sha256")
        if expected is not None and digest != expected:
            upstream.failed(f"manifest {remote}:{reference} refused: digest {digest}, expected {expected}")
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"the upstream registry {upstream.name} sent a manifest "
                                "that does not match its digest; nothing was stored", status=502,
                                detail={"upstream": upstream.name, "expected": expected, "actual": digest})
        try:
            parsed = parse_manifest(body, media_type_of(response.headers.get("Content-Type")))
        except RegistryError as exc:
            raise RegistryError(ErrorCode.MANIFEST_INVALID, f"the upstream registry {upstream.name} sent an invalid "
                                f"manifest: {exc.message}", status=502, detail={"upstream": upstream.name}) from None
        return digest, parsed, body

    async def store(self, repo: str, digest: str, parsed: ParsedManifest, body: bytes, tag: str | None) -> bool:
        """Store a fetched manifest as a push would (the blobs it names may come later); True if new."""
        def run(txn: Txn) -> bool:
            self.meta.ensure_repo(txn, repo)
            new = self.meta.get_manifest(txn, repo, digest) is None
            if new:
                record: dict[str, Any] = {
                    "mediaType": parsed.media_type, "size": len(body), "subject": parsed.subject,
                    "artifactType": parsed.artifact_type, "annotations": parsed.annotations,
                    "blobs": parsed.blobs, "children": parsed.children, "config": parsed.config,
                    "created": time.time(), "synced": True,
                }
                self.meta.put_manifest(txn, repo, digest, record, body)
                if parsed.subject:
                    descriptor: dict[str, Any] = {"mediaType": parsed.media_type, "digest": digest, "size": len(body)}
                    if parsed.artifact_type:
                        descriptor["artifactType"] = parsed.artifact_type
                    if parsed.annotations:
                        descriptor["annotations"] = parsed.annotations
                    self.meta.put_referrer(txn, repo, parsed.subject, digest, descriptor)
            previous.clear()
            if tag is not None:
                previous[tag] = self.meta.tag_digest(txn, repo, tag)
                self.meta.set_tag(txn, repo, tag, digest)
            return new

        previous: dict[str, str | None] = {}
        new = await self.meta.write_async(run)
        await self.hooks.pushed(Pushed(repo=repo, digest=digest, tags=[tag] if tag else [], pushed_by=PUSHED_BY,
                                       previous=previous))
        return new
