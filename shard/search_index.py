"""The ordered listing index of a shard's repositories (issue 17): kept, never recomputed per listing.

A sorted listing (``search.page``, :mod:`shard.search_walk`) walks the ``order`` database of the
extensions' environment (layout: :mod:`shard.searchstore`) in the order asked and stops once the
page is full, so a page costs what it returns. Each repository's entry (its newest update,
downloads, stars, platforms: :meth:`SearchIndex.index_record`) is rewritten

* in the same write transaction as the search records it derives from: a push's time
  (``record_push``), a flush of download counts (``flush``), a star (``UserPrefs``), a resize's
  import or purge (``import_repo``, ``purge_repo``);
* for a change of the main store (a tag deleted by a client, by retention, a sync write), after
  its commit: from the pushed image alone when a push only added tags (``add_tags``), otherwise
  by a background rewrite from every tag that changes arriving meanwhile share (``mark_dirty``;
  a listing waits for it: ``settled``).

The index is complete once built: a store without it (older version) or one a shard did not
close cleanly (killed between a main commit and its hook) is rebuilt in the background at start
(``warm``), and until the build is complete the listing is computed from the repositories
themselves (``computed_order``: the old way, O(repositories)), with the same keys and order.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
from typing import Any

import lmdb

from shard import digest_index
from shard.hooks import Pushed
from shard.imageinfo import Facts, fmt_time, parse_time
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.searchstore import CLOSED_KEY, SearchStore

log = logging.getLogger("shardreg.shard.search")
SIG_TAG_RE = re.compile(r"^(sha256|sha512)-([a-f0-9]+)\.(sig|att|sbom)$")
Summary = dict[str, Any]
#: Repositories indexed per write transaction of a build.
BUILD_BATCH = 200


class SearchIndex:
    meta: MetaStore
    store: SearchStore
    _static_lock: threading.Lock
    #: Repositories whose entry is to be rewritten from all their tags (:meth:`mark_dirty`).
    _dirty: set[str]
    _rewriting: asyncio.Task[None] | None
    #: A background rewrite failed: the index is not marked clean at close (rebuilt at the next start).
    _rewrite_failed: bool = False
    #: Per repository, per digest: how many listed tags name it (kept by :class:`~shard.search_meta.SearchMeta`).
    _tag_counts: dict[str, dict[str, int]]

    def _stats(self, stxn: Txn, repo: str, digest: str) -> tuple[int, float]:
        raise NotImplementedError

    def _manifest_static(self, txn: Txn, repo: str, digest: str) -> Facts | None:
        raise NotImplementedError

    # -- keeping the index ---------------------------------------------------------------
    def reindex(self, stxn: Txn, repo: str) -> bool:
        """Rewrite ``repo``'s entry in the write transaction ``stxn`` from a snapshot of the main
        store taken now (so a later transaction always sees a later snapshot)."""
        with self.meta.begin_read() as txn:
            rec = self.index_record(txn, stxn, repo) if self.meta.repo_exists(txn, repo) else None
            digest_index.sync_repo(self.meta, self.store, txn, stxn, repo)
        return self.store.index_put(stxn, repo, rec)

    def add_tags(self, stxn: Txn, event: Pushed) -> bool:
        """Update ``event.repo``'s entry for a push that only added tags (the common CI push: a new
        tag, or an untagged manifest) from the pushed image alone, in the push's transaction: O(1)
        in the repository's tags. False when the entry needs a rewrite from every tag instead
        (a tag moved away from another image, a new platform, no entry yet, unknown history)."""
        if event.previous is None:
            return False
        counted = {t: prev for t, prev in event.previous.items() if not SIG_TAG_RE.match(t)}
        if any(prev not in (None, event.digest) for prev in counted.values()):
            return False
        added = sum(1 for prev in counted.values() if prev is None)
        if not added:
            return True  # no tag of the listing changed (an untagged manifest, a signature, a re-push)
        old = self.store.index_get(stxn, event.repo)
        if old is None:
            return False
        with self.meta.begin_read() as txn:
            keys = self._image_keys(txn, stxn, event.repo, event.digest)
        if keys is None or any(p.get("Os") and p not in old["p"] for p in keys["_platforms"]):
            return False
        if keys["_updated"] == old["u"] and keys["LastUpdated"] != old["l"]:
            return False  # a tie the full rewrite breaks by tag order
        rec = {**old, "n": old["n"] + added, "d": old["d"] + keys["DownloadCount"] * added}
        if keys["_updated"] > old["u"]:
            rec["u"], rec["l"] = keys["_updated"], keys["LastUpdated"]
        self.store.index_put(stxn, event.repo, rec)
        return True

    def mark_dirty(self, repo: str) -> None:
        """Rewrite ``repo``'s entry from all its tags soon, in the background: changes that arrive
        meanwhile (a retention pass deleting hundreds of tags of one repository) share one rewrite.
        :meth:`settled` waits for it; a kill before it is repaired by the rebuild at start."""
        self._dirty.add(repo)
        if self._rewriting is None or self._rewriting.done():
            self._rewriting = asyncio.get_running_loop().create_task(self._rewrite_dirty())

    async def _rewrite_dirty(self) -> None:
        while self._dirty:
            repos = sorted(self._dirty)[:BUILD_BATCH]
            self._dirty.difference_update(repos)

            def run(stxn: Txn, repos: list[str] = repos) -> None:
                for repo in repos:
                    self.reindex(stxn, repo)

            try:
                await self.store.write_async(run)
            except lmdb.Error:  # closed while stopping: the rebuild at the next start repairs it
                log.warning("listing entries of %d repositories not rewritten", len(repos))
                return
            except Exception:  # never fails a listing; the store stays marked for a rebuild
                log.exception("rewriting the listing entries of %d repositories failed", len(repos))
                self._rewrite_failed = True

    async def settled(self) -> None:
        """Wait until every entry :meth:`mark_dirty` asked for is rewritten (a listing reads its own writes)."""
        while self._rewriting is not None and not self._rewriting.done():
            await asyncio.shield(self._rewriting)

    def forget(self, repo: str) -> None:
        """Rewrite ``repo``'s entry now (after a committed change the hooks do not see)."""
        self.store.write(lambda stxn: self.reindex(stxn, repo))

    async def import_repo(self, repo: str, records: dict[str, dict[str, bytes]] | None) -> None:
        """A resize moved ``repo`` here: its search records and its entry, in one transaction."""
        self._tag_counts.pop(repo, None)
        def run(stxn: Txn) -> None:
            if records is not None:
                self.store.put_repo_records(stxn, repo, records)
            self.reindex(stxn, repo)
        await self.store.write_async(run)

    async def purge_repo(self, repo: str) -> None:
        """A resize moved ``repo`` away: its search records and its entry go in one transaction."""
        self._tag_counts.pop(repo, None)
        await self.store.write_async(lambda stxn: self.store.delete_repo_records(stxn, repo))

    def index_record(self, txn: Txn, stxn: Txn, repo: str) -> dict[str, Any] | None:
        """What the index keeps of ``repo`` (None: no image)."""
        keys = self._shared_keys(txn, stxn, repo)
        if keys is None:
            return None
        return {"u": keys["_updated"], "l": keys["LastUpdated"], "d": keys["DownloadCount"],
                "s": keys["StarCount"], "p": keys["Platforms"], "n": keys["_images"]}

    async def warm(self, batch: int = BUILD_BATCH) -> None:
        """Build the index once if it is missing, the last run did not close the store, or another
        version wrote the store since (``CLOSED_KEY``), in
        batches of ``batch`` repositories per write transaction (start-up never waits for it);
        then note the store open until :meth:`close_index`."""
        def begin(stxn: Txn) -> bool:
            written_since = self.store.get(stxn, "indexmeta", CLOSED_KEY) != self.store.opened_txn
            if written_since or not self.store.user_marks_built(stxn):
                self.store.build_user_marks(stxn)  # O(marks): a store of before them, or a rollback
            rebuild = (not self.store.index_flag(stxn, "complete") or self.store.index_flag(stxn, "open")
                       or written_since)
            if rebuild:
                self.store.index_clear(stxn)
                self.store.set_index_flag(stxn, "complete", False)
            self.store.set_index_flag(stxn, "open", True)
            return rebuild

        try:
            if not self.store.write(begin):
                return
            log.info("building the listing index")
            after: str | None = None
            while True:
                def run(stxn: Txn, after: str | None = after) -> list[str]:
                    with self.meta.begin_read() as txn:
                        names = list(itertools.islice(self.meta.repo_names(txn, after), batch))
                    for name in names:
                        self.reindex(stxn, name)
                    if not names:
                        self.store.set_index_flag(stxn, "complete", True)
                    return names

                names = self.store.write(run)
                if not names:
                    log.info("listing index of %d repositories ready",
                             self.store.read(self.store.index_count))
                    return
                after = names[-1]
                await asyncio.sleep(0.005)
        except lmdb.Error:  # closed while stopping
            return

    def close_index(self) -> None:
        """A clean stop: the index matches the main store, no rebuild at the next start."""
        dirty, self._dirty = sorted(self._dirty), set()

        def run(stxn: Txn) -> None:
            for repo in dirty:
                self.reindex(stxn, repo)
            if not self._rewrite_failed:  # else: rebuilt at the next start
                self.store.set_index_flag(stxn, "open", False)
                self.store.put(stxn, "indexmeta", CLOSED_KEY, stxn.id())  # this transaction's

        self.store.write(run)

    def index_complete(self, stxn: Txn) -> bool:
        return self.store.index_flag(stxn, "complete")

    # -- the keys of one repository ------------------------------------------------------
    def _manifest_time(self, stxn: Txn, repo: str, info: Facts) -> tuple[float, str | None]:
        """(_updated, LastUpdated) of one manifest: its config's creation, else its first push."""
        push = self.store.push(stxn, repo, info["digest"])
        updated = parse_time(info.get("configCreated")) or push.get("at") or info.get("created")
        updated = float(updated or 0.0)
        return updated, info.get("configCreated") or fmt_time(updated)

    def _image_keys(self, txn: Txn, stxn: Txn, repo: str, digest: str) -> Summary | None:
        """What a repository listing sorts and filters on, of one tagged image, without the
        signatures, referrers and sizes of a full summary (same values as :meth:`image_summary`)."""
        info = self._manifest_static(txn, repo, digest)
        if info is None:
            return None
        downloads, _last = self.store.stats(stxn, repo, digest)  # as stored: a flush adds the pending ones
        if info["kind"] == "index":
            times: list[tuple[float, str | None]] = []
            platforms = []
            for child in info["children"]:
                child_info = self._manifest_static(txn, repo, child.get("digest", ""))
                if child_info is None:
                    continue
                times.append(self._manifest_time(stxn, repo, child_info))
                platforms.append(platform_of(child_info, child.get("platform")))
            push = self.store.push(stxn, repo, digest)
            updated = max([t for t, _ in times] or [push.get("at") or info["created"] or 0.0])
            last_updated = fmt_time(updated)
            for t, text in times:
                if t == updated:
                    last_updated = text
        else:
            updated, last_updated = self._manifest_time(stxn, repo, info)
            platforms = [platform_of(info)]
        return {"_updated": updated or 0.0, "LastUpdated": last_updated, "DownloadCount": downloads,
                "_platforms": platforms}

    def _shared_keys(self, txn: Txn, stxn: Txn, repo: str) -> Summary | None:
        newest: Summary | None = None
        downloads = images = 0
        platforms: list[dict[str, Any]] = []
        for tag, digest in self.meta.tags(txn, repo):
            if SIG_TAG_RE.match(tag):
                continue
            keys = self._image_keys(txn, stxn, repo, digest)
            if keys is None:
                continue
            downloads += keys["DownloadCount"]
            images += 1
            for plat in keys["_platforms"]:
                if plat.get("Os") and plat not in platforms:
                    platforms.append(plat)
            if newest is None or keys["_updated"] > newest["_updated"]:
                newest = keys
        if newest is None:
            return None
        return {"Name": repo, "LastUpdated": newest["LastUpdated"], "_updated": newest["_updated"],
                "DownloadCount": downloads, "StarCount": self.store.mark_count(stxn, "stars", repo), "_images": images,
                "Platforms": platforms, "Rank": 0}



def platform_of(info: Facts, platform: dict[str, Any] | None = None) -> dict[str, Any]:
    """A manifest's platform; an index's descriptor ``platform`` when the config names none."""
    plat: dict[str, Any] = info.get("platform") or {"Os": "", "Arch": ""}
    if platform and not plat.get("Os"):
        arch = platform.get("architecture") or ""
        if platform.get("variant"):
            arch = f"{arch}/{platform['variant']}"
        plat = {"Os": platform.get("os") or "", "Arch": arch}
    return plat
