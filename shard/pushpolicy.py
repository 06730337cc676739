"""What the lifecycle settings add to a manifest PUT or DELETE on the shard.

* immutable tags (``storage.immutableTags``): moving or deleting a tag that matches is refused
  (``DENIED``) unless the gateway says the caller is an admin; checked in the write
  transaction, like the create/update permission of ``manifest.put``;
* lint (``extensions.lint``): an image manifest missing a mandatory annotation (in its
  annotations or, as zot, its config's labels) is refused with ``MANIFEST_INVALID`` naming the
  missing keys, and a ``lint_failed`` event is stored;
* events: the write's events are appended to the outbox in the write's own transaction.

:class:`shard.ops.manifests.ManifestOps` calls these at the one place each decision is made.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import boundedjson
from common.config.lifecycle import LifecycleConfig, tag_is_immutable
from common.errors import ErrorCode, RegistryError
from shard.blobstore import BlobStore
from shard.events import record as ev
from shard.events.outbox import Outbox
from shard.lmdbstore import Txn
from shard.metastore import MetaStore

#: zot lints image manifests only; an index's children are linted when they are pushed.
_LINTED = {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}
MAX_CONFIG = 4 << 20


class PushPolicy:
    def __init__(self, meta: MetaStore, blobs: BlobStore, config: LifecycleConfig, outbox: Outbox | None,
                 committed: Callable[[], None] = lambda: None) -> None:
        self.meta = meta
        self.blobs = blobs
        self.config = config
        self.outbox = outbox
        #: Called after a write that stored events commits (wakes the sender).
        self.committed = committed

    # -- immutable tags ---------------------------------------------------------------------
    def immutable(self, repo: str, tag: str) -> bool:
        return bool(self.config.immutable) and tag_is_immutable(self.config.immutable, repo, tag)

    def check_put(self, txn: Txn, args: dict[str, Any]) -> None:
        """Refuse moving an immutable tag to another manifest (re-pushing the same one is fine)."""
        if not self.config.immutable or args.get("admin"):
            return
        repo = args["repo"]
        for tag in args.get("tags") or []:
            current = self.meta.tag_digest(txn, repo, tag)
            if current is not None and current != args["digest"] and self.immutable(repo, tag):
                raise RegistryError(ErrorCode.DENIED, f"tag {tag} is immutable (storage.immutableTags): it cannot "
                                    "be overwritten; push a new tag, or ask an admin",
                                    detail={"repository": repo, "tag": tag})

    def check_delete(self, txn: Txn, args: dict[str, Any], tags: list[str]) -> None:
        """Refuse deleting an immutable tag, or a manifest an immutable tag points to."""
        if not self.config.immutable or args.get("admin"):
            return
        repo = args["repo"]
        for tag in tags:
            if self.immutable(repo, tag):
                raise RegistryError(ErrorCode.DENIED, f"tag {tag} is immutable (storage.immutableTags): it cannot "
                                    "be deleted except by an admin", detail={"repository": repo, "tag": tag})

    # -- lint --------------------------------------------------------------------------------
    def missing_annotations(self, args: dict[str, Any]) -> list[str]:
        """The mandatory annotations neither the manifest nor its config's labels have."""
        wanted = self.config.mandatory_annotations
        if not wanted or args["media_type"] not in _LINTED:
            return []
        present = dict(args.get("annotations") or {})
        missing = [k for k in wanted if k not in present]
        if missing and args.get("config"):
            present.update(self._labels(args["config"]))
            missing = [k for k in wanted if k not in present]
        return missing

    def _labels(self, config: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(config.get("digest"), str) or int(config.get("size") or 0) > MAX_CONFIG:
            return {}
        try:
            doc = boundedjson.loads(self.blobs.read(config["digest"], 0, int(config.get("size") or MAX_CONFIG)))
            labels = (doc.get("config") or {}).get("Labels") or {}
        except (OSError, ValueError, AttributeError):
            return {}
        return labels if isinstance(labels, dict) else {}

    async def lint(self, args: dict[str, Any], body: bytes) -> None:
        """Raise MANIFEST_INVALID (after storing a lint_failed event) when annotations are missing."""
        missing = self.missing_annotations(args)
        if not missing:
            return
        if self.outbox is not None:
            reference = (args.get("tags") or [args["digest"]])[0]
            record = ev.event(ev.IMAGE_LINT_FAILED, args["repo"], reference=reference, digest=args["digest"],
                              media_type=args["media_type"], size=len(body), manifest=body,
                              context=args.get("event"))
            outbox = self.outbox
            await self.meta.write_async(lambda txn: outbox.append(txn, [record]))
            self.committed()
        raise RegistryError(ErrorCode.MANIFEST_INVALID, "missing mandatory annotations (extensions.lint): "
                            + ", ".join(missing), detail={"missing": missing})

    # -- events ------------------------------------------------------------------------------
    def record_put(self, txn: Txn, args: dict[str, Any], body: bytes, first: bool) -> None:
        """The events of a committed push: repository created (its first manifest), image updated."""
        if self.outbox is None:
            return
        repo, ctx = args["repo"], args.get("event")
        records = [ev.event(ev.REPOSITORY_CREATED, repo, context=ctx)] if first else []
        for reference in args.get("tags") or [args["digest"]]:
            records.append(ev.event(ev.IMAGE_UPDATED, repo, reference=reference, digest=args["digest"],
                                    media_type=args["media_type"], size=len(body), manifest=body, context=ctx))
        self.outbox.append(txn, records)

    def record_delete(self, txn: Txn, repo: str, reference: str, digest: str, media_type: str,
                      context: dict[str, str] | None) -> None:
        if self.outbox is not None:
            self.outbox.append(txn, [ev.event(ev.IMAGE_DELETED, repo, reference=reference, digest=digest,
                                              media_type=media_type, context=context)])
