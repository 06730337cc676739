"""A small OCI Distribution client that checks every answer it gets.

Every call verifies what the registry returned (status, digests, sizes, ordering) and raises
:class:`VerifyError` otherwise, so that a registry answering wrongly cannot score. Blob bodies
are streamed in 1 MiB pieces from a shared random buffer; aiohttp is used because it costs the
load generator less than half the CPU of httpx per MB pulled (see docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp

PIECE = 1 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT_MANIFESTS = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST))
OCTET = "application/octet-stream"
LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class VerifyError(Exception):
    """The registry answered something other than what the spec and the data require."""


def sha256_digest(data: bytes | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A blob made of a prefix of the shared random buffer and a unique suffix."""

    prefix: memoryview
    suffix: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def pieces(self, start: int = 0, end: int | None = None, piece: int = PIECE) -> list[memoryview | bytes]:
        """The bytes [start, end) as a list of views (no copy of the shared buffer)."""
        end = self.size if end is None else end
        out: list[memoryview | bytes] = []
        plen = len(self.prefix)
        pos = start
        while pos < min(end, plen):
            stop = min(pos + piece, end, plen)
            out.append(self.prefix[pos:stop])
            pos = stop
        if end > plen:
            out.append(self.suffix[max(start - plen, 0) : end - plen])
        return out

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(memoryview(data), b"", sha256_digest(data))

    def descriptor(self, media_type: str) -> dict:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size}


class BlobFactory:
    """Makes fresh, distinct blobs cheaply: one random buffer, a unique suffix per blob.

    A blob's digest starts from the hash state of the buffer up to the last :data:`CHECKPOINT`
    boundary below its prefix (kept once computed), so a new blob of any size costs hashing less
    than one checkpoint interval plus its suffix, not its whole size: the load generator's own CPU
    (and the lateness of its event loop) is in every latency the bench measures.
    """

    SUFFIX = 16
    CHECKPOINT = 64 * 1024

    def __init__(self, buffer: bytes, run_id: str) -> None:
        self.buffer = memoryview(buffer)
        self.run_tag = hashlib.sha256(run_id.encode()).digest()[:8]
        self.counter = 0
        #: ``_checkpoints[k]``: the hash state of ``buffer[:k * CHECKPOINT]``.
        self._checkpoints: list[hashlib._Hash] = [hashlib.sha256()]

    def _prefix_state(self, plen: int) -> hashlib._Hash:
        """A fresh hash state of ``buffer[:plen]``."""
        k = plen // self.CHECKPOINT
        while len(self._checkpoints) <= k:
            n = len(self._checkpoints)
            state = self._checkpoints[-1].copy()
            state.update(self.buffer[(n - 1) * self.CHECKPOINT : n * self.CHECKPOINT])
            self._checkpoints.append(state)
        h = self._checkpoints[k].copy()
        h.update(self.buffer[k * self.CHECKPOINT : plen])
        return h

    def make(self, size: int) -> Blob:
        if size < self.SUFFIX or size - self.SUFFIX > len(self.buffer):
            raise ValueError(f"blob size {size} out of range")
        self.counter += 1
        suffix = self.run_tag + self.counter.to_bytes(8, "big")
        plen = size - self.SUFFIX
        h = self._prefix_state(plen)
        h.update(suffix)
        return Blob(self.buffer[:plen], suffix, "sha256:" + h.hexdigest())


async def _stream(pieces: list[memoryview | bytes]) -> AsyncIterator[memoryview | bytes]:
    for p in pieces:
        yield p


def _expect(resp: aiohttp.ClientResponse, *statuses: int, what: str) -> None:
    if resp.status not in statuses:
        raise VerifyError(f"{what}: HTTP {resp.status}, expected {'/'.join(map(str, statuses))}")


def next_link(resp: aiohttp.ClientResponse, base: str) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    m = LINK_NEXT.search(link)
    return urljoin(base, m.group(1)) if m else None


class Registry:
    """OCI Distribution calls against one registry, each verified."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.session = session

    def _abs(self, location: str) -> str:
        return urljoin(self.url + "/", location)

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + "digest=" + digest

    # ----- blobs -----------------------------------------------------------------------------------

    async def start_upload(self, repo: str) -> str:
        async with self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/") as r:
            _expect(r, 202, what="start upload")
            loc = r.headers.get("Location")
            if not loc:
                raise VerifyError("start upload: no Location")
            return self._abs(loc)

    async def _finish_upload(self, repo: str, location: str, blob: Blob, body: list | None) -> None:
        headers = {"Content-Type": OCTET}
        if body is None:
            headers["Content-Length"] = "0"
            data: object = b""
        else:
            headers["Content-Length"] = str(blob.size)
            data = _stream(body)
        async with self.session.put(self._with_digest(location, blob.digest), data=data, headers=headers) as r:
            _expect(r, 201, what="finish upload")
            got = r.headers.get("Docker-Content-Digest")
            if got and got != blob.digest:
                raise VerifyError(f"finish upload: digest {got} != {blob.digest}")

    async def push_blob(self, repo: str, blob: Blob) -> None:
        """Monolithic upload: POST then one PUT with the whole body."""
        location = await self.start_upload(repo)
        await self._finish_upload(repo, location, blob, blob.pieces())

    async def push_blob_chunked(self, repo: str, blob: Blob, chunk: int) -> None:
        """Chunked upload: POST, PATCH each chunk with Content-Range, then PUT ?digest=."""
        location = await self.start_upload(repo)
        for start in range(0, blob.size, chunk):
            end = min(start + chunk, blob.size)
            headers = {"Content-Type": OCTET, "Content-Length": str(end - start),
                       "Content-Range": f"{start}-{end - 1}"}
            async with self.session.patch(location, data=_stream(blob.pieces(start, end)), headers=headers) as r:
                _expect(r, 202, what="patch chunk")
                rng = r.headers.get("Range", "")
                if rng != f"0-{end - 1}":
                    raise VerifyError(f"patch chunk: Range {rng!r}, expected 0-{end - 1}")
                location = self._abs(r.headers.get("Location") or location)
        await self._finish_upload(repo, location, blob, None)

    async def mount_blob(self, repo: str, source_repo: str, blob: Blob) -> None:
        """Cross-repository mount; falls back to a monolithic upload if the registry declines."""
        url = f"{self.url}/v2/{repo}/blobs/uploads/?mount={blob.digest}&from={source_repo}"
        async with self.session.post(url) as r:
            if r.status == 201:
                return
            _expect(r, 202, what="mount")
            location = self._abs(r.headers["Location"])
        await self._finish_upload(repo, location, blob, blob.pieces())

    async def pull_blob(self, repo: str, digest: str, size: int) -> int:
        """GET a blob, hash it while reading, check size and digest."""
        h = hashlib.sha256()
        got = 0
        async with self.session.get(f"{self.url}/v2/{repo}/blobs/{digest}") as r:
            _expect(r, 200, what="get blob")
            cl = r.headers.get("Content-Length")
            if cl is not None and int(cl) != size:
                raise VerifyError(f"get blob: Content-Length {cl} != {size}")
            async for piece in r.content.iter_chunked(PIECE):
                h.update(piece)
                got += len(piece)
        if got != size:
            raise VerifyError(f"get blob: {got} bytes, expected {size}")
        if "sha256:" + h.hexdigest() != digest:
            raise VerifyError("get blob: content does not match its digest")
        return got

    async def head_blob(self, repo: str, digest: str, size: int) -> None:
        async with self.session.head(f"{self.url}/v2/{repo}/blobs/{digest}") as r:
            _expect(r, 200, what="head blob")
            if int(r.headers.get("Content-Length", -1)) != size:
                raise VerifyError(f"head blob: Content-Length {r.headers.get('Content-Length')} != {size}")
            if r.headers.get("Docker-Content-Digest", digest) != digest:
                raise VerifyError("head blob: wrong Docker-Content-Digest")

    # ----- manifests -------------------------------------------------------------------------------

    async def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        digest = sha256_digest(body)
        headers = {"Content-Type": media_type}
        async with self.session.put(f"{self.url}/v2/{repo}/manifests/{ref}", data=body, headers=headers) as r:
            _expect(r, 201, what="put manifest")
            got = r.headers.get("Docker-Content-Digest")
            if got and got != digest:
                raise VerifyError(f"put manifest: digest {got} != {digest}")
        return digest

    async def get_manifest(self, repo: str, ref: str, digest: str) -> bytes:
        headers = {"Accept": ACCEPT_MANIFESTS}
        async with self.session.get(f"{self.url}/v2/{repo}/manifests/{ref}", headers=headers) as r:
            _expect(r, 200, what="get manifest")
            body = await r.read()
            if r.headers.get("Docker-Content-Digest", digest) != digest:
                raise VerifyError("get manifest: wrong Docker-Content-Digest")
        if sha256_digest(body) != digest:
            raise VerifyError("get manifest: body does not match its digest")
        return body

    async def head_manifest(self, repo: str, ref: str, digest: str, size: int) -> None:
        headers = {"Accept": ACCEPT_MANIFESTS}
        async with self.session.head(f"{self.url}/v2/{repo}/manifests/{ref}", headers=headers) as r:
            _expect(r, 200, what="head manifest")
            if r.headers.get("Docker-Content-Digest") != digest:
                raise VerifyError("head manifest: wrong or missing Docker-Content-Digest")
            if int(r.headers.get("Content-Length", -1)) != size:
                raise VerifyError(f"head manifest: Content-Length {r.headers.get('Content-Length')} != {size}")

    # ----- listings --------------------------------------------------------------------------------

    async def _json_page(self, url: str, what: str) -> tuple[dict, str | None]:
        async with self.session.get(url) as r:
            _expect(r, 200, what=what)
            body = await r.read()
            nxt = next_link(r, url)
        try:
            return json.loads(body), nxt
        except ValueError as e:
            raise VerifyError(f"{what}: body is not JSON") from e

    async def catalog_page(self, url: str | None, n: int) -> tuple[list[str], str | None]:
        url = url or f"{self.url}/v2/_catalog?n={n}"
        doc, nxt = await self._json_page(url, "catalog")
        names = doc.get("repositories")
        if not isinstance(names, list):
            raise VerifyError("catalog: no repositories list")
        _check_page(names, n, "catalog")
        return names, nxt

    async def tags_page(self, repo: str, url: str | None, n: int) -> tuple[list[str], str | None]:
        url = url or f"{self.url}/v2/{repo}/tags/list?n={n}"
        doc, nxt = await self._json_page(url, "tags list")
        tags = doc.get("tags") or []
        if doc.get("name") != repo:
            raise VerifyError(f"tags list: name {doc.get('name')!r} != {repo!r}")
        _check_page(tags, n, "tags list")
        return tags, nxt

    async def referrers(self, repo: str, digest: str, artifact_type: str | None = None) -> list[dict]:
        """All referrers of ``digest`` (following pagination), filtered client-side if needed."""
        first = f"{self.url}/v2/{repo}/referrers/{digest}"
        if artifact_type:
            first += f"?artifactType={artifact_type}"
        url: str | None = first
        found: list[dict] = []
        while url:
            async with self.session.get(url) as r:
                _expect(r, 200, what="referrers")
                if not r.headers.get("Content-Type", "").startswith(OCI_INDEX):
                    raise VerifyError(f"referrers: Content-Type {r.headers.get('Content-Type')!r}")
                doc = json.loads(await r.read())
                nxt = next_link(r, url)
            found.extend(doc.get("manifests") or [])
            url = nxt
        if artifact_type:
            found = [d for d in found if d.get("artifactType") == artifact_type]
        return found


def _check_page(items: list[str], n: int, what: str) -> None:
    if len(items) > n:
        raise VerifyError(f"{what}: {len(items)} entries for n={n}")
    if items != sorted(items):
        raise VerifyError(f"{what}: page not in lexical order")


# ----- image documents -------------------------------------------------------------------------------


def config_blob(factory: BlobFactory, label: str) -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"bench": label, "n": str(factory.counter)}},
        "rootfs": {"type": "layers", "diff_ids": []},
    }, sort_keys=True).encode()


def image_manifest(config: dict, layers: list[dict], subject: dict | None = None,
                   artifact_type: str | None = None, annotations: dict | None = None) -> bytes:
    doc: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config
    doc["layers"] = layers
    if subject:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, sort_keys=True).encode()
