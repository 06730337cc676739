"""Periodic mirroring: every ``pollInterval``, the content rules of a registry, on the owning shard.

Every shard runs the loop for each registry with ``pollInterval`` and ``content``, reads the
upstream's catalog, and syncs only the repositories whose *local* name it owns
(``shard_for``): no repository is synced by two shards. For each tag the rule keeps (``regex``,
``excludeRegex``, ``semver``): a HEAD tells whether it is new or moved; if so the manifest, its
children and every blob are fetched (through the same single-flight downloads as pull-through)
and the tag is written last, so a mirrored tag never names missing content — nor misses its
signatures, which are mirrored just before it: referrers (the referrers API, or its fallback tag
``sha256-<hex>``) and cosign's ``sha256-<hex>.sig`` tag. ``onlySigned`` skips an image without any of them. A pass that fails
on an unreachable upstream is retried ``maxRetries`` times, ``retryDelay`` apart.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from common import boundedjson
from common.config.sync import SyncContent
from common.errors import ErrorCode, RegistryError
from common.ring import shard_for
from common.syncrules import destination, filter_tags, matches
from shard.lmdbstore import Txn
from shard.sync.blobfetch import BlobFetches
from shard.sync.manifests import ACCEPT, ManifestPuller
from shard.sync.upstream import Upstream

log = logging.getLogger("shardreg.sync")

_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
#: Pages of a catalog or tag list followed at most (1000 names each).
MAX_PAGES = 100


class Mirror:
    def __init__(self, manifests: ManifestPuller, blobs: BlobFetches, index: int, shards: int, seed: int) -> None:
        self.manifests = manifests
        self.blobs = blobs
        self.meta = manifests.meta
        self.index, self.shards, self.seed = index, shards, seed
        #: Whether this shard owns a local repository name now: the configured count until the
        #: server installs its cluster map's answer (resharding: shard.routing.Routing.owns_stably).
        self.owns: Callable[[str], bool] = lambda name: shard_for(name, self.shards, self.seed) == self.index

    async def run(self, upstream: Upstream) -> None:
        """Mirror ``upstream`` every ``pollInterval`` until cancelled."""
        registry = upstream.registry
        while True:
            for attempt in range(registry.max_retries + 1):
                try:
                    await self.pass_once(upstream)
                    break
                except RegistryError as exc:
                    if exc.code is not ErrorCode.UNAVAILABLE or attempt == registry.max_retries:
                        log.warning("sync: mirroring %s failed: %s", upstream.name, exc.message)
                        break
                    await asyncio.sleep(registry.retry_delay)
                except Exception:
                    log.exception("sync: mirroring %s failed", upstream.name)
                    break
            await asyncio.sleep(registry.poll_interval)

    def _owned(self, remote: str, contents: tuple[SyncContent, ...]) -> tuple[str, SyncContent] | None:
        for content in contents:  # the first rule that matches, as zot
            if matches(content, remote):
                local = destination(content, remote)
                if local and self.owns(local):
                    return local, content
                return None
        return None

    async def pass_once(self, upstream: Upstream) -> None:
        mirrored = 0
        for remote in await self._paged(upstream, "/v2/_catalog?n=1000", "repositories", "catalog"):
            owned = self._owned(remote, upstream.registry.content)
            if owned is not None:
                await self.sync_repo(upstream, remote, owned[0], owned[1])
                mirrored += 1
        upstream.mirrored_repos, upstream.last_mirror_at = mirrored, time.time()

    async def _paged(self, upstream: Upstream, path: str, key: str, kind: str) -> list[str]:
        names: list[str] = []
        for _ in range(MAX_PAGES):
            response, body = await upstream.get(path, kind)
            if response.status_code == 404 and kind == "tags":
                return names
            if response.status_code != 200:
                raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {upstream.name} answered "
                                    f"{response.status_code} for {path}", detail={"upstream": upstream.name})
            try:
                names += [str(n) for n in (boundedjson.loads(body).get(key) or [])]
            except (ValueError, AttributeError):
                raise RegistryError(ErrorCode.UNAVAILABLE, f"{upstream.name}: {path} is not a JSON listing") from None
            link = _NEXT.search(response.headers.get("Link", ""))
            if link is None:
                return names
            path = link.group(1)
        return names

    def _tag_digest(self, local: str, tag: str) -> str | None:
        def run(txn: Txn) -> str | None:
            return self.meta.tag_digest(txn, local, tag)
        return self.meta.read(run)

    async def sync_repo(self, upstream: Upstream, remote: str, local: str, content: SyncContent) -> None:
        all_tags = await self._paged(upstream, f"/v2/{remote}/tags/list?n=1000", "tags", "tags")
        tags = [t for t in filter_tags(all_tags, content.tags) if not _is_signature_tag(t)]
        for tag in tags:
            response, _ = await upstream.get(f"/v2/{remote}/manifests/{tag}", "manifest", {"Accept": ACCEPT},
                                             method="HEAD")
            announced = response.headers.get("Docker-Content-Digest")
            if response.status_code == 200 and announced and announced == self._tag_digest(local, tag):
                continue  # neither new nor moved
            digest, parsed, body = await self.manifests.fetch(upstream, remote, tag)
            signatures = await self._signatures(upstream, remote, digest, set(all_tags))
            if upstream.registry.only_signed and not signatures:
                log.info("sync: %s:%s from %s is not signed: skipped (onlySigned)", remote, tag, upstream.name)
                continue
            await self._content(upstream, remote, local, parsed.blobs, parsed.children)
            await self.manifests.store(local, digest, parsed, body, None)
            for reference, as_tag in signatures:  # before the tag: whoever sees the tag sees its signatures
                try:
                    await self._image(upstream, remote, local, reference, as_tag)
                except RegistryError as exc:
                    log.warning("sync: signature %s of %s:%s not mirrored: %s", reference, remote, tag, exc.message)
            await self.manifests.store(local, digest, parsed, body, tag)
            log.info("sync: mirrored %s:%s from %s as %s (%s)", remote, tag, upstream.name, local, digest)

    async def _image(self, upstream: Upstream, remote: str, local: str, reference: str, tag: str | None) -> None:
        """A manifest by digest or tag with everything it names, stored last."""
        digest, parsed, body = await self.manifests.fetch(upstream, remote, reference)
        await self._content(upstream, remote, local, parsed.blobs, parsed.children)
        await self.manifests.store(local, digest, parsed, body, tag)

    async def _content(self, upstream: Upstream, remote: str, local: str, blobs: list[str], children: list[str]) -> None:
        wait = upstream.registry.sync_timeout
        for blob in blobs:
            await self.blobs.ensure(upstream, remote, local, blob, wait, whole=True)
        for child in children:
            if not self.manifests.local(local, child):
                await self._image(upstream, remote, local, child, None)

    async def _signatures(self, upstream: Upstream, remote: str, digest: str, tags: set[str]
                          ) -> list[tuple[str, str | None]]:
        """(reference, tag to keep or None) of each signature of ``digest`` upstream."""
        found: list[tuple[str, str | None]] = []
        fallback = digest.replace(":", "-")
        index: dict[str, Any] | None = None
        response, body = await upstream.get(f"/v2/{remote}/referrers/{digest}", "referrers")
        if response.status_code == 200:
            index = _json(body)
        elif fallback in tags:  # the referrers tag schema of registries without the API
            response, body = await upstream.get(f"/v2/{remote}/manifests/{fallback}", "referrers", {"Accept": ACCEPT})
            index = _json(body) if response.status_code == 200 else None
        for descriptor in (index or {}).get("manifests") or []:
            if isinstance(descriptor, dict) and isinstance(descriptor.get("digest"), str):
                found.append((descriptor["digest"], None))
        if f"{fallback}.sig" in tags:  # cosign's tag scheme
            found.append((f"{fallback}.sig", f"{fallback}.sig"))
        return found


def _is_signature_tag(tag: str) -> bool:
    return tag.startswith(("sha256-", "sha512-"))


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = boundedjson.loads(body)
    except ValueError:  # not JSON, too deep, not text
        return None
    return value if isinstance(value, dict) else None
