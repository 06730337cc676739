"""Move ops: one name (repository or user) changing owner during a resize, as its driver asks.

The source lists its moving names (``move.list``), records ``COPYING`` (``move.start``), tells its
state (``move.state``: tags, manifests, links; a user's records) and sends manifests
(``move.manifests``); blobs travel with ``blob.read`` from the source to ``move.blob.*`` on the
target, which verifies the digest, installs the file (fsync + rename) and links it into the
importing repository in one metadata commit. ``move.apply`` makes the target's copy equal to the
source's state in one transaction (adds what is missing, removes what the source no longer has).
The switch: ``move.fence`` (source; writes held, ≤ 1 s), a last ``move.apply``, ``move.activate``
(target), ``move.switch`` (source: the one durable commit of the move, refused once the fence's
own deadline passed), ``move.done`` (target). Every op is idempotent and refuses a driver whose
lease token is older than one the shard has seen.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.grammar import digest_algorithm, parse_digest
from common.protocol import Answer, Frames
from shard.blobstore import UploadFile
from shard.lmdbstore import Txn
from shard.ops.registry import handles
from shard.routing import ACTIVE, COPYING, DONE, IMPORTING, SWITCHED, Routing
from shard.service import ShardService
from shard.userdata import put_user_records, user_names, user_present, user_records


def _bad(message: str) -> RegistryError:
    return RegistryError(ErrorCode.BAD_REQUEST, message)


class MoveOps:
    def __init__(self, shard: ShardService, routing: Routing, search: Any = None) -> None:
        #: The extensions' search data (shard.search_meta.SearchMeta), which moves with a repository.
        self.search = search
        self.shard = shard
        self.meta = shard.meta
        self.routing = routing
        self.token = 0

    def _check_token(self, args: Any) -> None:
        token = int(args.get("token") or 0)
        if token < self.token:
            raise RegistryError(ErrorCode.DENIED, "an older driver's move op (its lease was taken over)")
        self.token = token

    def _view(self) -> Any:
        view = self.routing.view
        if view is None or view.phase != "transition":
            raise RegistryError(ErrorCode.TRYAGAIN, "no resize in progress on this shard")
        return view

    def _record(self, txn: Txn, kind: str, name: str, role: str) -> dict[str, Any] | None:
        record = self.meta.move_of(txn, kind, name)
        return record if record is not None and record.get("role") == role else None

    # -- source ----------------------------------------------------------------------------------
    @handles(m.MOVE_LIST)
    async def names(self, args: m.MoveListRequest, frames: Frames) -> Answer[m.MoveListReply]:
        self._check_token(args)
        view, index = self._view(), self.shard.index

        def run(txn: Txn) -> list[list[Any]]:
            out: list[list[Any]] = []
            for name in self.meta.repo_names(txn):
                if view.source(name) == index and view.is_moving(name):
                    record = self._record(txn, "repo", name, "out")
                    if record is None or record["state"] == COPYING:
                        size = sum(link["size"] for _, link in self.meta.links(txn, name))
                        out.append(["repo", name, record["state"] if record else "", size])
            for user in user_names(self.meta, txn):
                if view.source(user) == index and view.is_moving(user):
                    record = self._record(txn, "user", user, "out")
                    if record is None or record["state"] == COPYING:
                        out.append(["user", user, record["state"] if record else "", 0])
            return out

        names = self.meta.read(run)
        return {"names": names, "more": False}, []

    @handles(m.MOVE_START)
    async def start(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        self._check_token(args)
        kind, name = args["kind"], args["name"]
        self._view()

        def run(txn: Txn) -> str:
            record = self._record(txn, kind, name, "out")
            if record is None:
                record = {"role": "out", "state": COPYING, "peer": args.get("peer"), "at": time.time()}
                self.meta.put_move(txn, kind, name, record)
            return str(record["state"])

        return {"state": await self.meta.write_async(run)}, []

    @handles(m.MOVE_STATE)
    async def state(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveStateReply]:
        kind, name = args["kind"], args["name"]

        if self.search is not None and kind == "repo":
            self.search.flush()  # download counts kept in memory go to the store first

        def run(txn: Txn) -> m.MoveStateReply:
            record = self.meta.move_of(txn, kind, name)
            reply: m.MoveStateReply = {"present": False, "state": record["state"] if record else "", "tags": {},
                                       "manifests": [], "links": {}, "records": {}, "uploads": 0}
            if kind == "user":
                reply["present"] = user_present(self.meta, txn, name)
                reply["records"] = user_records(self.meta, txn, name)
                return reply
            reply["present"] = self.meta.repo_exists(txn, name)
            reply["tags"] = dict(self.meta.tags(txn, name))
            reply["manifests"] = [d for d in self._manifest_digests(txn, name)]
            reply["links"] = {digest: link["size"] for digest, link in self.meta.links(txn, name)}
            reply["uploads"] = sum(1 for _, u in self.meta.uploads(txn) if u.get("repo") == name)
            if self.search is not None:
                reply["search"] = self.search.store.read(lambda stxn: self.search.store.repo_records(stxn, name))
            return reply

        return self.meta.read(run), []

    def _manifest_digests(self, txn: Txn, repo: str) -> list[str]:
        return self.meta.manifest_digests(txn, repo)

    @handles(m.MOVE_MANIFESTS)
    async def manifests(self, args: m.MoveManifestsRequest, frames: Frames) -> Answer[m.MoveManifestsReply]:
        repo = args["repo"]

        def run(txn: Txn) -> Answer[m.MoveManifestsReply]:
            records, bodies = [], []
            for digest in args["digests"]:
                record = self.meta.get_manifest(txn, repo, digest)
                body = self.meta.manifest_bytes(txn, repo, digest)
                if record is not None and body is not None:
                    records.append({**record, "digest": digest})
                    bodies.append(bytes(body))
            return {"records": records}, bodies

        return self.meta.read(run)

    @handles(m.MOVE_FENCE)
    async def fence(self, args: m.MoveFenceRequest, frames: Frames) -> Answer[m.MoveReply]:
        self._check_token(args)
        await self.routing.fence((args["kind"], args["name"]), float(args.get("budget") or 0.8))
        return {"state": "FENCED"}, []

    @handles(m.MOVE_UNFENCE)
    async def unfence(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        self.routing.unfence((args["kind"], args["name"]))
        return {"state": COPYING}, []

    @handles(m.MOVE_SWITCH)
    async def switch(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        """The move's commit: accepted only while the fence holds (the source bounds the pause)."""
        self._check_token(args)
        kind, name = args["kind"], args["name"]

        def run(txn: Txn) -> tuple[str, int]:
            record = self._record(txn, kind, name, "out")
            if record is not None and record["state"] == SWITCHED:
                return SWITCHED, 0
            if record is None or not self.routing.fenced((kind, name)):
                raise RegistryError(ErrorCode.TRYAGAIN, "the fence expired before the switch")
            record.update(state=SWITCHED, at=time.time())
            self.meta.put_move(txn, kind, name, record)
            refused = sum(1 for _, u in self.meta.uploads(txn) if u.get("repo") == name) if kind == "repo" else 0
            return SWITCHED, refused

        self.routing.switching.add((kind, name))
        try:
            state, refused = await self.meta.write_async(run)
        finally:
            self.routing.switching.discard((kind, name))
            self.routing.unfence((kind, name))
        self.routing.uploads_refused += refused
        return {"state": state}, []

    # -- target ----------------------------------------------------------------------------------
    def _set_in(self, kind: str, name: str, allowed: tuple[str, ...], state: str, peer: Any = None) -> Any:
        def run(txn: Txn) -> str:
            record = self._record(txn, kind, name, "in")
            current = record["state"] if record else None
            if current == state or (current == DONE and state != IMPORTING):
                return str(current)
            if current not in allowed:
                raise RegistryError(ErrorCode.TRYAGAIN, f"{kind} {name} is {current}, not one of {allowed}")
            self.meta.put_move(txn, kind, name, {"role": "in", "state": state, "peer": peer, "at": time.time()})
            return state

        return self.meta.write_async(run)

    @handles(m.MOVE_ACTIVATE)
    async def activate(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        self._check_token(args)
        return {"state": await self._set_in(args["kind"], args["name"], (IMPORTING,), ACTIVE)}, []

    @handles(m.MOVE_REOPEN)
    async def reopen(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        """Back to IMPORTING (a new import, or a switch that failed after the target was activated)."""
        self._check_token(args)
        self._view()
        kind, name = args["kind"], args["name"]

        def run(txn: Txn) -> str:
            record = self._record(txn, kind, name, "in")
            if record is not None and record["state"] == DONE:
                return DONE
            # Data of the name already here is a leftover of an earlier resize (not yet cleaned up):
            # the diff makes it equal to the source's. (A name born here by ASK is never listed by
            # its source, so the driver never imports it.)
            self.meta.put_move(txn, kind, name, {"role": "in", "state": IMPORTING, "peer": args.get("peer"),
                                                 "at": time.time()})
            return IMPORTING

        return {"state": await self.meta.write_async(run)}, []

    @handles(m.MOVE_DONE)
    async def done(self, args: m.MoveRequest, frames: Frames) -> Answer[m.MoveReply]:
        self._check_token(args)
        return {"state": await self._set_in(args["kind"], args["name"], (ACTIVE,), DONE)}, []

    def _importing(self, txn: Txn, kind: str, name: str) -> None:
        record = self._record(txn, kind, name, "in")
        if record is None or record["state"] != IMPORTING:
            raise RegistryError(ErrorCode.TRYAGAIN, f"{kind} {name} is not being imported here")

    @handles(m.MOVE_BLOB_LINK)
    async def blob_link(self, args: m.MoveBlobRequest, frames: Frames) -> Answer[m.MoveBlobReply]:
        """Link a blob this shard already holds into the importing repository; else say how much of
        its copy is here already."""
        self._check_token(args)
        repo, digest = args["repo"], args["digest"]
        parse_digest(digest)
        async with self.shard.digest_locks[digest]:
            def run(txn: Txn) -> bool:
                self._importing(txn, "repo", repo)
                blob = self.meta.blob(txn, digest)
                if blob is None:
                    return False
                self.meta.link(txn, repo, digest, blob["size"])
                return True

            if await self.meta.write_async(run):
                return {"linked": True, "offset": 0}, []
        path = self._copy_path(repo, digest)
        return {"linked": False, "offset": path.stat().st_size if path.exists() else 0}, []

    def _copy_path(self, repo: str, digest: str) -> Any:
        """Where a blob's copy is written: one file per repository and digest (two moves may copy
        one digest at once); removed on a restart like any upload file without a record."""
        tag = hashlib.sha256(repo.encode()).hexdigest()[:16]
        return self.shard.blobs.uploads_dir / f"move-{tag}-{digest.replace(':', '-')}"

    @handles(m.MOVE_BLOB_WRITE)
    async def blob_write(self, args: m.MoveBlobRequest, frames: Frames) -> Answer[m.MoveBlobReply]:
        self._check_token(args)
        digest, offset = args["digest"], int(args.get("offset") or 0)
        parse_digest(digest)
        path = self._copy_path(args["repo"], digest)

        def write() -> int:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, offset)
                os.lseek(fd, offset, os.SEEK_SET)
                for frame in frames:
                    view = memoryview(frame)
                    while view:
                        view = view[os.write(fd, view):]
                return os.lseek(fd, 0, os.SEEK_CUR)
            finally:
                os.close(fd)

        return {"linked": False, "offset": await self.shard.io(write)}, []

    @handles(m.MOVE_BLOB_COMMIT)
    async def blob_commit(self, args: m.MoveBlobRequest, frames: Frames) -> Answer[m.MoveBlobReply]:
        """Verify the copied file, install it (fsync + rename) and link it, as ``upload.commit`` does."""
        self._check_token(args)
        repo, digest = args["repo"], args["digest"]
        parse_digest(digest)
        path = self._copy_path(repo, digest)
        if not path.exists():
            if self.shard.blob_exists(digest):  # committed already (a retried commit): link it
                return await self.blob_link(args, frames)
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
        copy = await self.shard.io(UploadFile, path, digest_algorithm(digest), path.stat().st_size)
        try:
            actual = await self.shard.io(copy.digest, digest_algorithm(digest))
            if actual != digest:
                raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": digest, "actual": actual})
            size = copy.offset
            async with self.shard.digest_locks[digest]:
                if self.shard.blob_exists(digest):
                    copy.close()
                    await self.shard.io(path.unlink)
                else:
                    await self.shard.io(self.shard.blobs.install, copy, digest)

                def run(txn: Txn) -> None:
                    self._importing(txn, "repo", repo)
                    self.meta.link(txn, repo, digest, size)

                await self.meta.write_async(run)
        finally:
            copy.close()
        return {"linked": True, "offset": size}, []

    @handles(m.MOVE_APPLY)
    async def apply(self, args: m.MoveApplyRequest, frames: Frames) -> Answer[m.MoveReply]:
        """Make the importing copy equal to the source's state, in one transaction."""
        self._check_token(args)
        kind, name = args["kind"], args["name"]
        added = list(zip(args.get("added") or [], frames, strict=False))

        def run(txn: Txn) -> list[str]:
            self._importing(txn, kind, name)
            if kind == "user":
                put_user_records(self.meta, txn, name, dict(args.get("records") or {}))
                return []
            return self._apply_repo(txn, name, args, added)

        unused = await self.meta.write_async(run)
        for digest in unused:
            await self.shard.remove_file_if_unused(digest)
        if kind == "repo" and self.search is not None:  # search records and index entry, one transaction
            await self.search.import_repo(name, args["search"] if "search" in args else None)
        return {"state": IMPORTING}, []

    def _apply_repo(self, txn: Txn, repo: str, args: m.MoveApplyRequest, added: list[tuple[Any, Any]]) -> list[str]:
        meta = self.meta
        meta.ensure_repo(txn, repo)
        wanted_links = dict(args.get("links") or {})
        for digest in wanted_links:
            if not meta.is_linked(txn, repo, digest):
                blob = meta.blob(txn, digest)
                if blob is None:
                    raise RegistryError(ErrorCode.TRYAGAIN, f"blob {digest} not copied yet")
                meta.link(txn, repo, digest, blob["size"])
        for record, body in added:
            digest = record.pop("digest")
            if meta.get_manifest(txn, repo, digest) is None:
                meta.put_manifest(txn, repo, digest, record, bytes(body))
                if record.get("subject"):
                    descriptor: dict[str, Any] = {"mediaType": record["mediaType"], "digest": digest,
                                                  "size": record["size"]}
                    if record.get("artifactType"):
                        descriptor["artifactType"] = record["artifactType"]
                    if record.get("annotations"):
                        descriptor["annotations"] = record["annotations"]
                    meta.put_referrer(txn, repo, record["subject"], digest, descriptor)
        wanted_manifests = set(args.get("manifests") or [])
        for digest in self._manifest_digests(txn, repo):
            if digest not in wanted_manifests:
                record = meta.get_manifest(txn, repo, digest)
                meta.delete_manifest(txn, repo, digest)
                if record and record.get("subject"):
                    meta.delete_referrer(txn, repo, record["subject"], digest)
        wanted_tags = dict(args.get("tags") or {})
        for tag, digest in list(meta.tags(txn, repo)):
            if wanted_tags.get(tag) != digest:
                meta.delete_tag(txn, repo, tag)
        for tag, digest in wanted_tags.items():
            if meta.manifest_exists(txn, repo, digest):
                meta.set_tag(txn, repo, tag, digest)
        return [digest for digest, _ in list(meta.links(txn, repo))
                if digest not in wanted_links and meta.unlink(txn, repo, digest)]


__all__ = ["MoveOps", "ACTIVE"]
