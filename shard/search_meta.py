"""What the search extension needs, kept by each shard for its own repositories.

Push times, pushers, tag times and download counts are recorded in the extensions'
environment (:mod:`shard.searchstore`) from the core's hooks (:mod:`shard.hooks`): the
server subscribes :meth:`SearchMeta.record_push`, :meth:`~SearchMeta.record_pull` and
:meth:`~SearchMeta.record_delete`.

Downloads are counted in memory on the pull path and written in one transaction every
:data:`FLUSH_INTERVAL` seconds (or when :data:`FLUSH_PENDING` digests are waiting): a
manifest GET never waits for an LMDB write. Readers add the pending counts, so a pull is
visible at once.

Image and repository summaries are built from the main store (manifests, tags, referrers),
the image config blob and the records above, using zot's GraphQL field names, so the gateway
only filters (access control), merges, sorts and paginates. Signature verdicts come from
:mod:`shard.trust`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import lmdb

from common import imagetrust, messages
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard import clock, digest_index
from shard.blobstore import BlobStore
from shard.diskfull import is_storage_full
from shard.facts_cache import FactsCache
from shard.hooks import Deleted, Pushed
from shard.imageinfo import Facts, fmt_time, has_digest, manifest_facts
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.ops.registry import handles
from shard.search_index import SIG_TAG_RE, SearchIndex, platform_of
from shard.searchstore import SearchStore
from shard.trust import Trust

log = logging.getLogger("shardreg.shard.search")

FLUSH_INTERVAL = 2.0
FLUSH_PENDING = 5000
#: Repositories whose tag counts per digest are kept at most.
MAX_TAG_COUNTS = 10_000
#: Config blobs and signature payloads larger than this are not read for search.
MAX_SMALL_BLOB = 4 * 1024 * 1024
Summary = dict[str, Any]

ANNOTATIONS = {
    "Title": ("org.opencontainers.image.title",),
    "Description": ("org.opencontainers.image.description",),
    "Vendor": ("org.opencontainers.image.vendor",),
    "Licenses": ("org.opencontainers.image.licenses",),
    "Source": ("org.opencontainers.image.source",),
    "Documentation": ("org.opencontainers.image.documentation",),
    "Authors": ("org.opencontainers.image.authors",),
    "Labels": ("org.label-schema.labels",),
}


class SearchMeta(SearchIndex):
    def __init__(self, meta: MetaStore, blobs: BlobStore, store: SearchStore, trust: Trust) -> None:
        self.meta = meta
        self.blobs = blobs
        self.store = store
        self.trust = trust
        self.pending: dict[tuple[str, str], list[float]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        #: Also used by the writer thread (an index entry is computed in its txn): it locks.
        self._static = FactsCache()
        self._dirty: set[str] = set()
        #: Per repository, per digest: how many listed tags name it (see :meth:`_tags_of`).
        self._tag_counts: dict[str, dict[str, int]] = {}
        self._rewriting: asyncio.Task[None] | None = None
        #: Whether this shard lists a repository (a resize leaves names it no longer owns).
        self.owns: Callable[[str], bool] = lambda name: True

    # -- recording (hook listeners) ------------------------------------------------------
    async def record_push(self, event: Pushed) -> None:
        """Push time, pusher, tag times, and the repository's index entry, in one transaction."""
        now = clock.now()  # the lifecycle clock (tests move it; retention reads these times)

        def run(stxn: Txn) -> bool:
            self.store.record_push(stxn, event.repo, event.digest, event.tags, now, event.pushed_by)
            with self.meta.begin_read() as txn:  # the push is committed: what its manifest names
                digest_index.index_manifest(self.meta, self.store, txn, stxn, event.repo, event.digest)
            return self.add_tags(stxn, event)  # after: an image's time may be its first push

        if not await self.store.write_async(run):
            self.mark_dirty(event.repo)
        moved = None if event.previous is None else [event.digest, *event.previous.values()]
        self._tags_moved(event.repo, moved)

    def record_pull(self, repo: str, digest: str) -> None:
        """Count a served manifest (in memory; flushed in batches with the index entries)."""
        entry = self.pending.get((repo, digest))
        if entry is None:
            self.pending[(repo, digest)] = [1, clock.now()]
        else:
            entry[0] += 1
            entry[1] = clock.now()
        if len(self.pending) >= FLUSH_PENDING:
            self.flush()
        elif self._flush_handle is None:
            try:
                self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)
            except RuntimeError:  # no loop (tests calling directly): write now
                self.flush()

    async def record_delete(self, event: Deleted) -> None:
        """Forget the cached facts of a deleted manifest (a later push of it is a new record);
        rewrite the repository's index entry."""
        if event.digest is not None:
            self._static.drop((event.repo, event.digest))
        self._tags_moved(event.repo, None)
        self.mark_dirty(event.repo)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self.pending:
            return
        pending, self.pending = self.pending, {}

        def run(txn: Txn) -> None:
            moved: dict[str, int] = {}
            with self.meta.begin_read() as mtxn:
                for (repo, digest), (count, last) in pending.items():
                    self.store.add_downloads(txn, repo, digest, int(count), last)
                    # a repository's downloads are the sum over its tags: a digest counts once per tag
                    tags = self._tags_of(mtxn, repo, digest)
                    moved[repo] = moved.get(repo, 0) + int(count) * tags
            for repo, delta in moved.items():  # the index moves with the counts, in the same txn
                if delta:
                    self.store.index_add_downloads(txn, repo, delta)

        try:
            self.store.write(run)
        except (lmdb.Error, OSError) as exc:  # best-effort statistics (see shard.hooks): never fails a pull
            if is_storage_full(exc):
                log.warning("download counts not recorded: storage full: %s", exc)
            else:
                log.exception("flushing download counts failed")

    def _tags_of(self, mtxn: Txn, repo: str, digest: str) -> int:
        """How many listed tags name ``digest``: a scan of the repository's tags the first time, then
        kept until a push or delete in the repository changes it (a flush must not walk 100,000 tags)."""
        counts = self._tag_counts.setdefault(repo, {})
        if digest not in counts:
            counts[digest] = sum(1 for t in self.meta.tags_pointing_to(mtxn, repo, digest) if not SIG_TAG_RE.match(t))
            if len(self._tag_counts) > MAX_TAG_COUNTS:
                self._tag_counts.pop(next(iter(self._tag_counts)))
        return counts[digest]

    def _tags_moved(self, repo: str, digests: list[str | None] | None) -> None:
        """Drop kept tag counts a change made stale (``None``: any digest of the repository)."""
        counts = self._tag_counts.get(repo)
        if counts is None:
            return
        if digests is None:
            del self._tag_counts[repo]
            return
        for digest in digests:
            counts.pop(digest or "", None)

    def close(self) -> None:
        self.flush()
        try:
            self.close_index()
        except lmdb.Error:
            log.exception("closing the listing index failed: it is rebuilt at the next start")
        self.store.close()

    # -- reading helpers -----------------------------------------------------------------
    def _read_blob(self, digest: str, size: int | None = None) -> bytes | None:
        if size is not None and size > MAX_SMALL_BLOB:
            return None
        try:
            return self.blobs.read(digest, 0, size if size is not None else MAX_SMALL_BLOB)
        except (OSError, ValueError):
            return None

    def _stats(self, stxn: Txn, repo: str, digest: str) -> tuple[int, float]:
        count, last = self.store.stats(stxn, repo, digest)
        pending = self.pending.get((repo, digest))
        if pending:
            count += int(pending[0])
            last = max(last, pending[1])
        return count, last

    def read_stats(self, repo: str, digest: str) -> tuple[int, float]:
        """(downloads, last pull) including the counts not yet flushed."""
        return self.store.read(lambda stxn: self._stats(stxn, repo, digest))

    def _manifest_static(self, txn: Txn, repo: str, digest: str) -> Facts | None:
        """What never changes about a stored manifest (cached): sizes, layers, config facts."""
        cached, known = self._static.lookup((repo, digest))
        if cached:
            facts: Facts | None = known
            return facts
        record = self.meta.get_manifest(txn, repo, digest)
        body = self.meta.manifest_bytes(txn, repo, digest)
        if record is None or body is None:
            return None
        info = manifest_facts(digest, record, bytes(body), self._read_blob)
        self._static.put((repo, digest), info)
        return info

    # -- signatures and referrers --------------------------------------------------------
    def _signature_manifests(self, txn: Txn, repo: str, digest: str, tags: dict[str, str]) -> list[tuple[str, str]]:
        """(tool, signature manifest digest) pairs that sign ``digest``."""
        found: list[tuple[str, str]] = []
        alg, _, hexpart = digest.partition(":")
        sig = tags.get(f"{alg}-{hexpart}.sig")
        if sig:
            found.append(("cosign", sig))
        for descriptor in self.meta.referrers(txn, repo, digest):
            artifact = descriptor.get("artifactType")
            if artifact == imagetrust.COSIGN_ARTIFACT_TYPE:
                found.append(("cosign", descriptor["digest"]))
            elif artifact == imagetrust.NOTATION_ARTIFACT_TYPE:
                found.append(("notation", descriptor["digest"]))
        return found

    def _signatures(self, txn: Txn, repo: str, digest: str, tags: dict[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for tool, sig in self._signature_manifests(txn, repo, digest, tags):
            body = self.meta.manifest_bytes(txn, repo, sig)
            verdicts = [] if body is None else self.trust.verdicts(tool, bytes(body), sig, digest, self._read_blob)
            out.extend(v.summary() for v in verdicts)
            if not verdicts:
                out.append(imagetrust.Verdict(tool, False).summary())
        return out

    def _referrers(self, txn: Txn, repo: str, digest: str) -> list[dict[str, Any]]:
        return [{"MediaType": d.get("mediaType"), "ArtifactType": d.get("artifactType") or "",
                 "Size": d.get("size"), "Digest": d.get("digest"),
                 "Annotations": [{"Key": k, "Value": v} for k, v in (d.get("annotations") or {}).items()]}
                for d in self.meta.referrers(txn, repo, digest)]

    # -- summaries -----------------------------------------------------------------------
    def _manifest_summary(self, txn: Txn, stxn: Txn, repo: str, info: Facts, tags: dict[str, str],
                          platform: dict[str, Any] | None = None) -> Summary:
        digest = info["digest"]
        downloads, _last = self._stats(stxn, repo, digest)
        updated, last_updated = self._manifest_time(stxn, repo, info)
        signatures = self._signatures(txn, repo, digest, tags)
        plat = platform_of(info, platform)
        return {
            "Digest": digest, "ConfigDigest": info.get("configDigest", ""),
            "LastUpdated": last_updated, "_updated": updated,
            "Size": str(info["size"]), "IsSigned": bool(signatures), "SignatureInfo": signatures,
            "Platform": plat, "DownloadCount": downloads,
            "Layers": info.get("layers", []), "History": info.get("history", []),
            "Vulnerabilities": None, "Referrers": self._referrers(txn, repo, digest),
            "ArtifactType": info.get("artifactType", ""),
        }

    def image_summary(self, txn: Txn, stxn: Txn, repo: str, tag: str, digest: str,
                      tags: dict[str, str]) -> Summary | None:
        info = self._manifest_static(txn, repo, digest)
        if info is None:
            return None
        downloads, last = self._stats(stxn, repo, digest)
        push = self.store.push(stxn, repo, digest)
        tagged = self.store.tag_time(stxn, repo, tag)
        signatures = self._signatures(txn, repo, digest, tags)
        annotations = dict(info["annotations"])
        if info["kind"] == "index":
            manifests = []
            size = info["size"]
            for child in info["children"]:
                child_info = self._manifest_static(txn, repo, child.get("digest", ""))
                if child_info is None:
                    continue
                manifests.append(self._manifest_summary(txn, stxn, repo, child_info, tags, child.get("platform")))
                size += child_info["size"]
                if not annotations:
                    annotations = dict(child_info["annotations"]) or dict(child_info.get("labels") or {})
            updated = max([m["_updated"] for m in manifests] or [push.get("at") or info["created"] or 0.0])
            last_updated = fmt_time(updated)
            for m in manifests:
                if m["_updated"] == updated:
                    last_updated = m["LastUpdated"]
        else:
            manifest = self._manifest_summary(txn, stxn, repo, info, tags)
            manifests = [manifest]
            size = info["size"]
            merged = dict(info.get("labels") or {})
            merged.update(annotations)
            annotations = merged
            updated, last_updated = manifest["_updated"], manifest["LastUpdated"]
        summary: Summary = {
            "RepoName": repo, "Tag": tag, "Digest": digest, "MediaType": info["mediaType"],
            "Manifests": manifests, "Size": str(size), "DownloadCount": downloads,
            "LastPullTimestamp": fmt_time(last), "PushTimestamp": fmt_time(push.get("at") or info["created"]),
            "PushedBy": push.get("by", ""), "TaggedTimestamp": fmt_time(tagged or push.get("at")),
            "LastUpdated": last_updated, "_updated": updated or 0.0,
            "IsSigned": bool(signatures), "SignatureInfo": signatures, "Vulnerabilities": None,
            "Referrers": self._referrers(txn, repo, digest), "IsDeletable": True,
            "ArtifactType": info.get("artifactType", ""),
        }
        for field, names in ANNOTATIONS.items():
            summary[field] = next((annotations[n] for n in names if annotations.get(n)), "")
        if not summary["Description"]:
            summary["Description"] = ""
        return summary

    def repo_images(self, txn: Txn, stxn: Txn, repo: str) -> list[Summary]:
        """Summaries of the repository's tagged images (signature tags are not images)."""
        tags = dict(self.meta.tags(txn, repo))
        images = []
        for tag, digest in tags.items():
            if SIG_TAG_RE.match(tag):
                continue
            summary = self.image_summary(txn, stxn, repo, tag, digest, tags)
            if summary is not None:
                images.append(summary)
        return images

    def repo_summary(self, txn: Txn, stxn: Txn, repo: str, user: str | None, images: list[Summary]) -> Summary:
        platforms: list[dict[str, Any]] = []
        vendors: list[str] = []
        for image in images:
            for m in image["Manifests"]:
                if m["Platform"].get("Os") and m["Platform"] not in platforms:
                    platforms.append(m["Platform"])
            if image["Vendor"] and image["Vendor"] not in vendors:
                vendors.append(image["Vendor"])
        newest = max(images, key=lambda i: i["_updated"], default=None)
        size = sum(link["size"] for _, link in self.meta.links(txn, repo))
        size += sum(record["size"] for record in self.meta.manifests(txn, repo))
        starred = bookmarked = False
        if user:
            starred = self.store.marked(stxn, "stars", repo, user)
            bookmarked = self.store.marked(stxn, "bookmarks", repo, user)
        return {
            "Name": repo, "LastUpdated": newest["LastUpdated"] if newest else None,
            "_updated": newest["_updated"] if newest else 0.0,
            "Size": str(size), "Platforms": platforms, "Vendors": vendors, "NewestImage": newest,
            "DownloadCount": sum(i["DownloadCount"] for i in images),
            "StarCount": self.store.mark_count(stxn, "stars", repo),
            "IsBookmarked": bookmarked, "IsStarred": starred, "Rank": 0,
        }

    def _repos(self, txn: Txn, names: list[str] | None) -> list[str]:
        if names is not None:
            return [n for n in names if self.meta.repo_exists(txn, n) and self.owns(n)]
        return [n for n in self.meta.repo_names(txn) if self.owns(n)]

    # -- ops -----------------------------------------------------------------------------
    @handles(messages.SEARCH_IMAGES)
    async def op_images(self, args: messages.SearchImagesRequest, frames: Frames) -> Answer[messages.SearchImagesReply]:
        """Image summaries of some (``repos``) or all repositories; ``digest`` keeps only the images
        whose manifest, config or a layer has that digest (or digest prefix)."""
        wanted = args.get("digest")
        prefix = digest_index.lookup_prefix(wanted) if wanted else None
        if prefix is not None:
            await self.settled()  # the records of a change made just before are written

        def candidates(txn: Txn, stxn: Txn) -> list[str]:
            names = args.get("repos")
            if prefix is not None and names is None and self.index_complete(stxn):  # O(matches)
                names = sorted(self.store.digest_repos(stxn, prefix))
            return self._repos(txn, names)

        def run(txn: Txn) -> list[Summary]:
            with self.store.begin_read() as stxn:
                out = []
                for repo in candidates(txn, stxn):
                    for image in self.repo_images(txn, stxn, repo):
                        if wanted and not has_digest(image, wanted):
                            continue
                        out.append(image)
                return out

        return {"images": self.meta.read(run)}, []

    @handles(messages.SEARCH_REPOS)
    async def op_repos(self, args: messages.SearchReposRequest, frames: Frames) -> Answer[messages.SearchReposReply]:
        """Repository summaries; ``query`` keeps names containing it, ``only`` = starred|bookmarked
        (sorted listings: ``search.page``, :mod:`shard.search_walk`)."""
        user, query, only = args.get("user"), (args.get("query") or "").lower(), args.get("only")
        with_images = bool(args.get("images"))

        def candidates(txn: Txn, stxn: Txn) -> list[str]:
            names = args.get("repos")
            if only and user and self.store.user_marks_built(stxn):  # the user's own marks: O(their number)
                marked = self.store.marked_repos(stxn, "stars" if only == "starred" else "bookmarks", user)
                names = marked if names is None else [n for n in marked if n in set(names)]
            return self._repos(txn, names)

        def run(txn: Txn) -> list[Summary]:
            with self.store.begin_read() as stxn:
                out = []
                for repo in candidates(txn, stxn):
                    if query and query not in repo.lower():
                        continue
                    if only:
                        if not user:
                            continue
                        if not self.store.marked(stxn, "stars" if only == "starred" else "bookmarks", repo, user):
                            continue
                    images = self.repo_images(txn, stxn, repo)
                    summary = self.repo_summary(txn, stxn, repo, user, images)
                    if with_images:
                        summary["_images"] = images
                    out.append(summary)
                return out

        return {"repos": self.meta.read(run)}, []

    @handles(messages.SEARCH_EXPAND)
    async def op_expand(self, args: messages.SearchExpandRequest, frames: Frames) -> Answer[messages.SearchExpandReply]:
        repo, user = args["repo"], args.get("user")

        def run(txn: Txn) -> messages.SearchExpandReply:
            if not self.meta.repo_exists(txn, repo):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
            with self.store.begin_read() as stxn:
                images = self.repo_images(txn, stxn, repo)
                return {"images": images, "summary": self.repo_summary(txn, stxn, repo, user, images)}

        return self.meta.read(run), []

