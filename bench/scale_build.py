"""Building a large registry quickly through the real API, for ``shardreg bench scale``.

The fastest real-API way found (docs/performance.md, "scale"): every object is as small as it
can be and every write is one request, sent with keep-alive over ``concurrency`` connections:

* a repository = one distinct image config pushed monolithically (``POST ...?digest=`` with the
  body: one request, one blob record) + one manifest ``PUT`` (no layers: an OCI image manifest may
  have none), so a repository costs two requests and adds one blob record;
* a tag of the big repository = one manifest ``PUT`` (an annotation makes each distinct; the
  config is shared), no blob;
* the remaining blob records = distinct tiny layers, each one monolithic ``POST``, referenced by
  manifests of :data:`LAYERS_PER_MANIFEST` layers (so that no GC may take them), in repositories
  of :data:`BLOBS_PER_REPO` blobs.

Mounts would not add blob records (a blob record is one digest) and cross shards only by upload,
so they are not used. Growing is incremental: a level adds the indexes from the previous one's.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYERS_PER_MANIFEST = 100
BLOBS_PER_REPO = 1_000
TAGS_REPO = "scale/tags"
#: Every tenth repository is arm64 (the filtered search finds a tenth of them).
ARM_EVERY = 10


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def repo_name(i: int) -> str:
    return f"scale/r{i:07d}"


def tag_name(j: int) -> str:
    return f"t{j:07d}"


def config_bytes(label: str, arch: str = "amd64") -> bytes:
    doc = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
           "created": "2026-12-06T00:00:00Z", "config": {"Labels": {"scale": label}}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def manifest_bytes(config: bytes, layers: list[bytes] | None = None, annotation: str | None = None) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": digest_of(b), "size": len(b)} for b in layers or ()]}
    if annotation is not None:
        doc["annotations"] = {"scale.index": annotation}
    return json.dumps(doc, separators=(",", ":")).encode()


Job = Callable[[], Awaitable[None]]


def _progress(say: Callable[[str], None], part: str, n: int) -> None:
    say(f"  {part}: {n} jobs done")


class BuildError(RuntimeError):
    pass


@dataclass
class Counts:
    """What has been built so far (the indexes a level continues from)."""

    repos: int = 0
    tags: int = 0
    blobs: int = 0  # extra tiny layers
    requests: int = 0
    seconds: float = 0.0
    per_level: list[dict[str, Any]] = field(default_factory=list)


class Builder:
    def __init__(self, url: str, session: aiohttp.ClientSession, concurrency: int = 64) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.concurrency = concurrency
        self.requests = 0
        self.tag_config = config_bytes("tags")
        self.blob_config = config_bytes("blobs")

    async def _check(self, resp: aiohttp.ClientResponse, expect: int, what: str) -> None:
        self.requests += 1
        if resp.status != expect:
            body = (await resp.read())[:300]
            raise BuildError(f"{what}: HTTP {resp.status} (expected {expect}): {body!r}")
        await resp.read()

    async def put_blob(self, repo: str, data: bytes) -> None:
        async with self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/", params={"digest": digest_of(data)},
                                     data=data, headers={"Content-Type": "application/octet-stream"}) as r:
            await self._check(r, 201, f"POST blob to {repo}")

    async def put_manifest(self, repo: str, ref: str, body: bytes) -> None:
        async with self.session.put(f"{self.url}/v2/{repo}/manifests/{ref}", data=body,
                                    headers={"Content-Type": MANIFEST}) as r:
            await self._check(r, 201, f"PUT manifest {repo}:{ref}")

    async def repo(self, i: int) -> None:
        config = config_bytes(f"r{i}", "arm64" if i % ARM_EVERY == 0 else "amd64")
        name = repo_name(i)
        await self.put_blob(name, config)
        await self.put_manifest(name, "v1", manifest_bytes(config))

    async def tag(self, j: int) -> None:
        await self.put_manifest(TAGS_REPO, tag_name(j), manifest_bytes(self.tag_config, annotation=str(j)))

    async def blob_group(self, start: int, stop: int) -> None:
        """Blobs ``start..stop`` (one manifest's worth, in one repository), then their manifest."""
        repo = f"scale/blobs{start // BLOBS_PER_REPO:04d}"
        layers = [f"scale-blob-{k}".encode() for k in range(start, stop)]
        await self.put_blob(repo, self.blob_config)
        for data in layers:
            await self.put_blob(repo, data)
        await self.put_manifest(repo, f"m{start:08d}", manifest_bytes(self.blob_config, layers))

    async def run(self, jobs: Iterable[Callable[[], Awaitable[None]]], progress: Callable[[int], None] | None = None
                  ) -> int:
        """Run ``jobs`` with at most ``concurrency`` at once; the first failure stops them all."""
        it = iter(jobs)
        done = 0

        async def worker() -> None:
            nonlocal done
            for job in it:
                await job()
                done += 1
                if progress is not None and done % 1000 == 0:
                    progress(done)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))
        return done

    async def grow(self, counts: Counts, repos: int, tags: int, blobs: int,
                   say: Callable[[str], None] = print) -> dict[str, Any]:
        """Add repositories, tags and blobs up to the given totals; how long each part took."""
        t_start, r0 = time.perf_counter(), self.requests
        parts: dict[str, Any] = {}
        if counts.tags == 0 and tags > 0:
            await self.put_blob(TAGS_REPO, self.tag_config)
        def repo_jobs(a: int, b: int) -> Iterator[Job]:
            return (functools.partial(self.repo, i) for i in range(a, b))

        def tag_jobs(a: int, b: int) -> Iterator[Job]:
            return (functools.partial(self.tag, j) for j in range(a, b))

        def blob_jobs(a: int, b: int) -> Iterator[Job]:
            return (functools.partial(self.blob_group, s, min(s + LAYERS_PER_MANIFEST, b))
                    for s in range(a, b, LAYERS_PER_MANIFEST))

        for part, have, want, jobs in (("repos", counts.repos, repos, repo_jobs), ("tags", counts.tags, tags, tag_jobs),
                                       ("blobs", counts.blobs, blobs, blob_jobs)):
            if want <= have:
                continue
            t0, q0 = time.perf_counter(), self.requests
            await self.run(jobs(have, want), functools.partial(_progress, say, part))
            seconds = time.perf_counter() - t0
            parts[part] = {"added": want - have, "seconds": round(seconds, 2), "requests": self.requests - q0,
                           "requests_per_s": round((self.requests - q0) / seconds, 1) if seconds else None}
            say(f"  built {want - have} {part} in {seconds:.1f} s ({parts[part]['requests_per_s']} req/s)")
        counts.repos, counts.tags, counts.blobs = max(counts.repos, repos), max(counts.tags, tags), max(counts.blobs, blobs)
        seconds = time.perf_counter() - t_start
        counts.seconds += seconds
        counts.requests += self.requests - r0
        return {"seconds": round(seconds, 2), "requests": self.requests - r0, "parts": parts}


__all__ = ["Builder", "BuildError", "Counts", "repo_name", "tag_name", "TAGS_REPO", "ARM_EVERY", "digest_of"]
