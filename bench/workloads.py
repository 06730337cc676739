"""The workloads: what one operation is, and what must exist before it can be measured.

A workload's ``setup`` runs before the measured window (its cost is not counted); ``op`` is one
measured operation and returns the bytes it moved plus optional labelled latencies of its parts
(for instance the manifest GET inside an image pull). Every call verifies what it got.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from bench.client import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_LAYER,
    Blob,
    BlobFactory,
    Registry,
    VerifyError,
    config_blob,
    image_manifest,
)

KiB = 1 << 10
MiB = 1 << 20
SETUP_PARALLELISM = 16
SIGNATURE = "application/vnd.bench.signature.v1"
SBOM = "application/vnd.bench.sbom.v1+json"

Progress = Callable[[str, int, int], None]


def _no_progress(desc: str, done: int, total: int) -> None:
    return None


@dataclass
class Options:
    run_id: str = "run"
    blob_size: int = 64 * MiB
    chunk_size: int = 8 * MiB
    small_min: int = 64 * KiB
    small_max: int = 1 * MiB
    small_repos: int = 100
    list_repos: int = 10_000
    list_tags: int = 1_000
    page_size: int = 100
    referrers: int = 100
    seed: int = 1


@dataclass(frozen=True)
class Image:
    repo: str
    tag: str
    digest: str
    size: int
    blobs: tuple[tuple[str, int], ...]  # config first, then layers

    @property
    def nbytes(self) -> int:
        return self.size + sum(s for _, s in self.blobs)


@dataclass
class TargetState:
    """What earlier workloads left in one registry, for later ones to use."""

    large: list[tuple[str, Blob]] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    list_ready: bool = False
    referrers: dict[str, str] | None = None  # referrer digest -> artifactType
    subject: Image | None = None


@dataclass(frozen=True)
class OpResult:
    nbytes: int = 0
    samples: tuple[tuple[str, float], ...] = ()


async def gather_limited(coros: Iterable[Awaitable], limit: int = SETUP_PARALLELISM,
                         progress: Progress = _no_progress, desc: str = "setup") -> None:
    items = list(coros)
    sem = asyncio.Semaphore(limit)
    done = 0

    async def one(c: Awaitable) -> None:
        nonlocal done
        async with sem:
            await c
        done += 1
        if done % 50 == 0 or done == len(items):
            progress(desc, done, len(items))

    await asyncio.gather(*(one(c) for c in items))


async def push_image(reg: Registry, factory: BlobFactory, rng: random.Random, opts: Options,
                     repo: str, tag: str) -> Image:
    """Push config + 3 layers + manifest, the way a build's final push does."""
    layers = [factory.make(rng.randint(opts.small_min, opts.small_max)) for _ in range(3)]
    cfg = Blob.of(config_blob(factory, repo))
    for blob in (cfg, *layers):
        await reg.push_blob(repo, blob)
    body = image_manifest(cfg.descriptor(OCI_CONFIG), [b.descriptor(OCI_LAYER) for b in layers])
    digest = await reg.put_manifest(repo, tag, body)
    return Image(repo, tag, digest, len(body), tuple((b.digest, b.size) for b in (cfg, *layers)))


async def pull_image(reg: Registry, image: Image) -> OpResult:
    """What a CI runner does: manifest by tag, then config and layers, all verified."""
    t0 = time.perf_counter()
    await reg.get_manifest(image.repo, image.tag, image.digest)
    manifest_s = time.perf_counter() - t0
    for digest, size in image.blobs:
        await reg.pull_blob(image.repo, digest, size)
    return OpResult(image.nbytes, (("manifest-get", manifest_s),))


class Workload:
    name = ""
    headline = "ops/s"  # or "MB/s"
    description = ""
    #: Whether its measured operations store new bytes (the bench then fills the page cache first).
    stores = False

    def __init__(self, opts: Options, factory: BlobFactory, state: TargetState) -> None:
        self.opts = opts
        self.factory = factory
        self.state = state
        self.rng = random.Random(f"{opts.seed}-{self.name}")
        self.serial = 0  # numbers names across levels, so that no tag is ever overwritten

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def repo(self, kind: str, i: int) -> str:
        return f"bench/{self.opts.run_id}/{kind}-{i:03d}"

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        return None

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        raise NotImplementedError

    async def ensure_images(self, reg: Registry, count: int, progress: Progress) -> None:
        missing = count - len(self.state.images)
        if missing <= 0:
            return
        start = len(self.state.images)

        async def one(i: int) -> None:
            self.state.images.append(
                await push_image(reg, self.factory, self.rng, self.opts, self.repo("pull", i % 4), f"{self.name}-{i}"))

        await gather_limited((one(start + i) for i in range(missing)), progress=progress, desc="push images")


class PushLarge(Workload):
    name = "push-large"
    stores = True
    headline = "MB/s"
    description = "fresh random blobs pushed monolithically (POST + one PUT)"
    keep = 64

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        blob = self.factory.make(self.opts.blob_size)
        repo = self.repo("large", worker % 8)
        await self.push(reg, repo, blob)
        if len(self.state.large) < self.keep:
            self.state.large.append((repo, blob))
        return OpResult(blob.size)

    async def push(self, reg: Registry, repo: str, blob: Blob) -> None:
        await reg.push_blob(repo, blob)


class PushChunked(PushLarge):
    name = "push-chunked"
    description = "fresh random blobs pushed in PATCH chunks with Content-Range, then PUT ?digest="

    async def push(self, reg: Registry, repo: str, blob: Blob) -> None:
        await reg.push_blob_chunked(repo, blob, self.opts.chunk_size)


class PullLarge(Workload):
    name = "pull-large"
    headline = "MB/s"
    description = "the large blobs pulled and hashed (each pulled once before measuring)"

    def __init__(self, opts: Options, factory: BlobFactory, state: TargetState) -> None:
        super().__init__(opts, factory, state)
        self.pulled: list[tuple[str, Blob]] = []

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        # The same few blobs at a level whatever ran before: push-large leaves up to 64 of its blobs
        # (4 GiB), and pulling all of them measured the disk as much as the registry.
        want = max(2, min(concurrency, 8))
        missing = want - len(self.state.large)
        for i in range(max(missing, 0)):
            blob = self.factory.make(self.opts.blob_size)
            repo = self.repo("large", i % 8)
            await reg.push_blob(repo, blob)
            self.state.large.append((repo, blob))
            progress("push large blobs", i + 1, missing)
        self.pulled = self.state.large[:want]
        # Each pulled once before measuring, as a registry's often-pulled blobs are: otherwise the
        # first pull of a blob pushed long before reads it back from the disk into newly
        # allocated pages, which is the machine's cost, not the serving path's.
        for repo, blob in self.pulled:
            await reg.pull_blob(repo, blob.digest, blob.size)

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        repo, blob = self.pulled[seq % len(self.pulled)]
        return OpResult(await reg.pull_blob(repo, blob.digest, blob.size))


class PushSmall(Workload):
    name = "push-small"
    stores = True
    description = "whole images (config + 3 layers of 64 KiB-1 MiB + manifest) into many repositories"
    keep = 256

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        n = self.next_serial()
        image = await push_image(reg, self.factory, self.rng, self.opts,
                                 self.repo("small", n % self.opts.small_repos), f"t{n}")
        if len(self.state.images) < self.keep:
            self.state.images.append(image)
        return OpResult(image.nbytes)


class PullSmall(Workload):
    name = "pull-small"
    description = "image pulls as a CI runner does them: manifest by tag, config, layers"

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        await self.ensure_images(reg, 16, progress)

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        return await pull_image(reg, self.state.images[seq % len(self.state.images)])


class HeadCheck(Workload):
    name = "head-check"
    description = "HEAD of existing blobs and manifests, as clients do before pushing"

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        await self.ensure_images(reg, 4, progress)

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        image = self.state.images[(seq // 2) % len(self.state.images)]
        if seq % 2:
            await reg.head_manifest(image.repo, image.tag, image.digest, image.size)
        else:
            digest, size = image.blobs[(seq // 2) % len(image.blobs)]
            await reg.head_blob(image.repo, digest, size)
        return OpResult(0)


class MixedCI(Workload):
    name = "mixed-ci"
    stores = True
    description = "pulls and pushes at once, 80 % image pulls and 20 % image pushes"

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        await self.ensure_images(reg, 16, progress)

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        t0 = time.perf_counter()
        if seq % 5 == 4:
            n = self.next_serial()
            image = await push_image(reg, self.factory, self.rng, self.opts,
                                     self.repo("mixed", n % self.opts.small_repos), f"t{n}")
            return OpResult(image.nbytes, (("push-image", time.perf_counter() - t0),))
        res = await pull_image(reg, self.state.images[seq % len(self.state.images)])
        return OpResult(res.nbytes, res.samples + (("pull-image", time.perf_counter() - t0),))


LIST_PREFIX = "benchlist/r"
LIST_TAGS_REPO = "benchlist/tags"
LIST_SEED_REPO = "benchlist/seed"


class ListRepos(Workload):
    name = "list"
    description = "catalog and tags listing, page by page, over >= 10,000 repositories and a repository with >= 1,000 tags"

    def __init__(self, opts: Options, factory: BlobFactory, state: TargetState) -> None:
        super().__init__(opts, factory, state)
        self.cursors: dict[int, tuple[str, str | None, int]] = {}  # worker -> (kind, next url, seen)

    def _fixed_image(self) -> tuple[Blob, Blob, bytes]:
        cfg = Blob.of(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        layer = Blob.of(b"shardreg bench list layer\n" * 40)
        body = image_manifest(cfg.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
        return cfg, layer, body

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        if self.state.list_ready:
            return
        cfg, layer, body = self._fixed_image()
        last_repo = f"{LIST_PREFIX}{self.opts.list_repos - 1:05d}"
        last_tag = f"t{self.opts.list_tags - 1:04d}"
        await reg.push_blob(LIST_SEED_REPO, cfg)
        await reg.push_blob(LIST_SEED_REPO, layer)
        await reg.put_manifest(LIST_SEED_REPO, "latest", body)
        if not await _exists(reg, last_repo, "latest", body):
            async def one_repo(i: int) -> None:
                repo = f"{LIST_PREFIX}{i:05d}"
                await reg.mount_blob(repo, LIST_SEED_REPO, cfg)
                await reg.mount_blob(repo, LIST_SEED_REPO, layer)
                await reg.put_manifest(repo, "latest", body)

            await gather_limited((one_repo(i) for i in range(self.opts.list_repos)), progress=progress,
                                 desc="create repositories")
        if not await _exists(reg, LIST_TAGS_REPO, last_tag, body):
            await reg.mount_blob(LIST_TAGS_REPO, LIST_SEED_REPO, cfg)
            await reg.mount_blob(LIST_TAGS_REPO, LIST_SEED_REPO, layer)
            await gather_limited((reg.put_manifest(LIST_TAGS_REPO, f"t{i:04d}", body)
                                  for i in range(self.opts.list_tags)), progress=progress, desc="create tags")
        self.state.list_ready = True

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        kind, url, seen = self.cursors.get(worker, ("catalog" if worker % 2 == 0 else "tags", None, 0))
        n = self.opts.page_size
        t0 = time.perf_counter()
        if kind == "catalog":
            items, nxt = await reg.catalog_page(url, n)
            seen += sum(1 for x in items if x.startswith(LIST_PREFIX))
            want = self.opts.list_repos
        else:
            items, nxt = await reg.tags_page(LIST_TAGS_REPO, url, n)
            seen += sum(1 for x in items if x.startswith("t"))
            want = self.opts.list_tags
        page_s = time.perf_counter() - t0
        if nxt is None:
            if seen < want:
                raise VerifyError(f"{kind} walk ended after {seen} entries, expected >= {want}")
            kind, nxt, seen = ("tags" if kind == "catalog" else "catalog"), None, 0
        label = f"{self.cursors.get(worker, (kind,))[0]}-page"
        self.cursors[worker] = (kind, nxt, seen)
        return OpResult(0, ((label, page_s),))


async def _exists(reg: Registry, repo: str, tag: str, body: bytes) -> bool:
    try:
        await reg.head_manifest(repo, tag, Blob.of(body).digest, len(body))
        return True
    except VerifyError:
        return False


class Referrers(Workload):
    name = "referrers"
    description = "referrers listing of an image with many signatures and SBOMs attached"

    async def setup(self, reg: Registry, concurrency: int, progress: Progress = _no_progress) -> None:
        if self.state.referrers is not None:
            return
        repo = "benchref/app"
        cfg = Blob.of(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
        layer = Blob.of(b"shardreg bench referrers subject\n" * 64)
        empty = Blob.of(b"{}")
        payload = Blob.of(b"shardreg bench signature payload\n")
        for blob in (cfg, layer, empty, payload):
            await reg.push_blob(repo, blob)
        body = image_manifest(cfg.descriptor(OCI_CONFIG), [layer.descriptor(OCI_LAYER)])
        subject_digest = await reg.put_manifest(repo, "subject", body)
        self.state.subject = Image(repo, "subject", subject_digest, len(body), ())
        subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject_digest,
                   "size": len(body)}
        expected: dict[str, str] = {}

        async def one(i: int) -> None:
            kind = SIGNATURE if i % 2 == 0 else SBOM
            doc = image_manifest(empty.descriptor(OCI_EMPTY), [payload.descriptor(OCI_LAYER)], subject=subject,
                                 artifact_type=kind, annotations={"bench.index": str(i)})
            digest = Blob.of(doc).digest
            await reg.put_manifest(repo, digest, doc)
            expected[digest] = kind

        await gather_limited((one(i) for i in range(self.opts.referrers)), progress=progress, desc="attach referrers")
        self.state.referrers = expected

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        subject = self.state.subject
        expected = self.state.referrers or {}
        assert subject is not None
        artifact_type = SIGNATURE if seq % 2 else None
        found = await reg.referrers(subject.repo, subject.digest, artifact_type)
        want = {d for d, k in expected.items() if artifact_type in (None, k)}
        got = {d.get("digest") for d in found}
        if got != want or len(found) != len(want):
            raise VerifyError(f"referrers: {len(got & want)}/{len(want)} expected, {len(got - want)} unexpected")
        for d in found:
            if d.get("artifactType") != expected[d["digest"]]:
                raise VerifyError("referrers: wrong artifactType in descriptor")
        return OpResult(0)


WORKLOADS: dict[str, type[Workload]] = {w.name: w for w in (
    PushLarge, PushChunked, PullLarge, PushSmall, PullSmall, HeadCheck, MixedCI, ListRepos, Referrers)}
