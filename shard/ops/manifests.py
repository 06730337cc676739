"""Manifest ops: get (and head), put, delete, and the referrers of a subject.

A manifest is stored with its exact bytes, its tags and (if it has a subject) a referrer
record, in one metadata transaction that first checks every blob and child it names, and
whether the caller may create or move each tag it names (the gateway says what the caller
may do, ``may_create``/``may_update``; whether a tag exists is decided here, atomically
with the write). Re-pushing a stored digest never changes its record: the same media type
only moves tags, another one is refused (``MANIFEST_INVALID``). The hooks
(:mod:`shard.hooks`) hear of each push, pull and delete once it is committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import lmdb

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard.hooks import Deleted, Hooks, Pushed
from shard.lmdbstore import Txn
from shard.ops.registry import handles
from shard.pushpolicy import PushPolicy
from shard.service import ShardService


class ManifestOps:
    def __init__(self, shard: ShardService, hooks: Hooks, policy: PushPolicy | None = None) -> None:
        self.meta = shard.meta
        self.hooks = hooks
        #: Immutable tags, lint and the event outbox (shard/pushpolicy.py); None: none configured.
        self.policy = policy
        #: Whether this shard serves a repository under a sender's map epoch (shard.routing; the
        #: server sets it): the per-name check of ``manifest.pulls``. Unset: every name.
        self.serves: Callable[[str, int | None], bool] = lambda repo, epoch: True

    @handles(m.MANIFEST_GET)
    async def get(self, args: m.ManifestGetRequest, frames: Frames) -> Answer[m.ManifestGetReply]:
        repo, reference, head = args["repo"], args["reference"], args.get("head", False)

        def run(txn: Txn) -> Answer[m.ManifestGetReply]:
            digest = self.meta.resolve(txn, repo, reference)
            record = self.meta.get_manifest(txn, repo, digest)
            if record is None:
                raise self.meta.manifest_unknown(txn, repo, reference)
            result: m.ManifestGetReply = {"digest": digest, "media_type": record["mediaType"],
                                          "size": record["size"]}
            if head:
                return result, []
            self.hooks.pulled(repo, digest)
            return result, [self.meta.manifest_bytes(txn, repo, digest)]

        return self.meta.read(run)

    @handles(m.MANIFEST_PULLS)
    async def pulls(self, args: m.ManifestPullsRequest, frames: Frames) -> Answer[m.Empty]:
        """Manifest GETs the gateway answered itself (gateway.local_reads): record each pull of a
        manifest stored here, in a repository this shard serves under the sender's map epoch."""
        pulls = args["pulls"]
        if not (isinstance(pulls, list) and len(pulls) <= m.MAX_PULLS and all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str) for p in pulls)):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"manifest.pulls: at most {m.MAX_PULLS} [repo, digest] pairs")
        epoch = cast(int | None, args.get("epoch"))  # added by the sender's ShardClient
        served = [(repo, digest) for repo, digest in pulls if self.serves(repo, epoch)]

        def stored(txn: Txn) -> list[tuple[str, str]]:
            found = []
            for repo, digest in served:
                try:
                    if self.meta.manifest_exists(txn, repo, digest):
                        found.append((repo, digest))
                except (lmdb.Error, ValueError):  # e.g. a key too long: no such manifest
                    continue
            return found

        for repo, digest in self.meta.read(stored) if served else ():
            self.hooks.pulled(repo, digest)
        return {}, []

    @handles(m.MANIFEST_PUT)
    async def put(self, args: m.ManifestPutRequest, frames: Frames) -> Answer[m.ManifestPutReply]:
        """Store a manifest the gateway has parsed; check the blobs and children it names."""
        repo, digest = args["repo"], args["digest"]
        body = bytes(frames[0]) if frames else b""
        self.hooks.writing(repo, digest)
        policy = self.policy
        if policy is not None:
            await policy.lint(dict(args), body)

        previous: dict[str, str | None] = {}  # what each tag named before (the listing index updates by it)

        def run(txn: Txn) -> Answer[m.ManifestPutReply]:
            previous.clear()  # a retried transaction starts again
            for blob in args.get("blobs", []):
                if not self.meta.is_linked(txn, repo, blob):
                    raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digest": blob})
            for child in args.get("children", []):
                if not self.meta.manifest_exists(txn, repo, child):
                    raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digest": child})
            self.meta.ensure_repo(txn, repo)
            self._check_tags(txn, args)
            first = policy is not None and next(self.meta.manifests(txn, repo), None) is None
            if policy is not None:
                policy.check_put(txn, dict(args))
            existing = self.meta.get_manifest(txn, repo, digest)
            if existing is not None:
                # Same digest, same bytes: the stored record stays as it is. Only the media type
                # (from Content-Type when the body names none) could differ, and changing it would
                # hide the manifest from clients that ask for the stored type.
                if existing["mediaType"] != args["media_type"]:
                    raise RegistryError(
                        ErrorCode.MANIFEST_INVALID, f"this manifest is stored as {existing['mediaType']}; "
                        "re-pushing it with another media type is refused",
                        detail={"digest": digest, "mediaType": existing["mediaType"]})
            else:
                record = {
                    "mediaType": args["media_type"], "size": len(body), "subject": args.get("subject"),
                    "artifactType": args.get("artifact_type"), "annotations": args.get("annotations"),
                    "blobs": args.get("blobs", []), "children": args.get("children", []),
                    "config": args.get("config"), "created": time.time(),
                }
                self.meta.put_manifest(txn, repo, digest, record, body)
            for tag in args.get("tags", []):
                previous[tag] = self.meta.tag_digest(txn, repo, tag)
                self.meta.set_tag(txn, repo, tag, digest)
            subject = args.get("subject")
            if subject and existing is None:
                descriptor: dict[str, Any] = {"mediaType": args["media_type"], "digest": digest, "size": len(body)}
                if args.get("artifact_type"):
                    descriptor["artifactType"] = args["artifact_type"]
                if args.get("annotations"):
                    descriptor["annotations"] = args["annotations"]
                self.meta.put_referrer(txn, repo, subject, digest, descriptor)
            if policy is not None:
                policy.record_put(txn, dict(args), body, first)
            return {"digest": digest, "created": existing is None}, []

        result = await self.meta.write_async(run)
        if policy is not None:
            policy.committed()
        await self.hooks.pushed(Pushed(repo=repo, digest=digest, tags=list(args.get("tags") or []),
                                       pushed_by=args.get("pushed_by") or "", previous=previous))
        return result

    def _check_tags(self, txn: Txn, args: m.ManifestPutRequest) -> None:
        """Moving an existing tag needs ``may_update``, creating one ``may_create``: decided here,
        in the write transaction, so that no other push can create the tag between check and write."""
        may_create, may_update = args.get("may_create", True), args.get("may_update", False)
        if may_create and may_update:
            return
        repo = args["repo"]
        for tag in args.get("tags", []):
            exists = self.meta.tag_digest(txn, repo, tag) is not None
            if not (may_update if exists else may_create):
                action = "update" if exists else "create"
                raise RegistryError(ErrorCode.DENIED, f"{action} permission is needed to "
                                    f"{'move the existing' if exists else 'create the'} tag {tag}",
                                    detail={"repository": repo, "tag": tag, "action": action})

    @handles(m.MANIFEST_DELETE)
    async def delete(self, args: m.ManifestDeleteRequest, frames: Frames) -> Answer[m.ManifestDeleteReply]:
        repo, reference = args["repo"], args["reference"]
        policy = self.policy

        def run(txn: Txn) -> Answer[m.ManifestDeleteReply]:
            if ":" not in reference:
                digest = self.meta.tag_digest(txn, repo, reference)
                if policy is not None and digest is not None:
                    policy.check_delete(txn, dict(args), [reference])
                if not self.meta.delete_tag(txn, repo, reference):
                    raise self.meta.manifest_unknown(txn, repo, reference)
                if policy is not None and digest is not None:
                    tagged = self.meta.get_manifest(txn, repo, digest) or {}
                    policy.record_delete(txn, repo, reference, digest, tagged.get("mediaType", ""), args.get("event"))
                return {"deleted": reference}, []
            record = self.meta.get_manifest(txn, repo, reference)
            if record is None:
                raise self.meta.manifest_unknown(txn, repo, reference)
            tags = self.meta.tags_pointing_to(txn, repo, reference)
            if policy is not None:
                policy.check_delete(txn, dict(args), tags)
            self.meta.delete_manifest(txn, repo, reference)
            for tag in tags:
                self.meta.delete_tag(txn, repo, tag)
            if record.get("subject"):
                self.meta.delete_referrer(txn, repo, record["subject"], reference)
            if policy is not None:
                policy.record_delete(txn, repo, reference, reference, record["mediaType"], args.get("event"))
            return {"deleted": reference, "tags": tags}, []

        result = await self.meta.write_async(run)
        if policy is not None:
            policy.committed()
        if ":" in reference:
            await self.hooks.deleted(Deleted(repo=repo, digest=reference, tags=result[0].get("tags", [])))
        else:
            await self.hooks.deleted(Deleted(repo=repo, digest=None, tags=[reference]))
        return result

    @handles(m.REFERRERS)
    async def referrers(self, args: m.ReferrersRequest, frames: Frames) -> Answer[m.ReferrersReply]:
        repo, subject = args["repo"], args["subject"]
        wanted = set(args.get("artifact_types") or [])

        def run(txn: Txn) -> Answer[m.ReferrersReply]:
            found = [descriptor for descriptor in self.meta.referrers(txn, repo, subject)
                     if not wanted or descriptor.get("artifactType") in wanted]
            return {"manifests": found}, []

        return self.meta.read(run)
