"""The fields a sorted repository listing needs, per repository, kept between requests (issue 17).

A listing of every repository sorts and filters on a few fields (update time, downloads, stars,
platforms); :class:`SearchKeys` computes them without the signatures, referrers and sizes of a
full summary and keeps the user-independent part per repository until something changes it:
:meth:`SearchKeys.forget` is called after every committed change of a repository's tags,
manifests, push times, downloads or stars (the hooks, star toggles, a resize's import and purge).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from typing import Any

import lmdb

from shard.imageinfo import Facts, fmt_time, parse_time
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.searchstore import SearchStore

log = logging.getLogger("shardreg.shard.search")
#: Repositories whose keys are kept at most (past that, the oldest entry is recomputed when asked).
MAX_KEPT = 500_000
SIG_TAG_RE = re.compile(r"^(sha256|sha512)-([a-f0-9]+)\.(sig|att|sbom)$")
Summary = dict[str, Any]


class SearchKeys:
    meta: MetaStore
    store: SearchStore
    #: Per repository, the user-independent part of :meth:`repo_keys` (None: no image).
    _keys: dict[str, Summary | None]

    def _stats(self, stxn: Txn, repo: str, digest: str) -> tuple[int, float]:
        raise NotImplementedError

    def _manifest_static(self, txn: Txn, repo: str, digest: str) -> Facts | None:
        raise NotImplementedError

    def forget(self, repo: str) -> None:
        """Drop what is kept about ``repo``'s listing: called on the event loop after every change
        of its tags, manifests, push times, downloads or stars is committed. A listing computes
        its keys synchronously on the loop from one snapshot, so no stale entry can outlive this."""
        self._keys.pop(repo, None)

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
        downloads, _last = self._stats(stxn, repo, digest)
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

    def repo_keys(self, txn: Txn, stxn: Txn, repo: str, user: str | None) -> Summary | None:
        """The fields of :meth:`repo_summary` a sorted listing needs (``None``: no image), cheap
        enough to compute for every repository: the gateway sorts and pages these, then asks
        for the full summaries of the page only."""
        shared = self._keys[repo] if repo in self._keys else self._remember(txn, stxn, repo)
        if shared is None:
            return None
        starred = bookmarked = False
        if user:
            starred = self.store.marked(stxn, "stars", repo, user)
            bookmarked = self.store.marked(stxn, "bookmarks", repo, user)
        return {**shared, "IsStarred": starred, "IsBookmarked": bookmarked}

    def _remember(self, txn: Txn, stxn: Txn, repo: str) -> Summary | None:
        shared = self._shared_keys(txn, stxn, repo)
        if len(self._keys) >= MAX_KEPT:
            self._keys.pop(next(iter(self._keys)))
        self._keys[repo] = shared
        return shared

    async def warm(self, batch: int = 200) -> None:
        """Compute every repository's keys once after start, ``batch`` repositories per turn of
        the event loop: start-up and requests never wait for the whole walk, and the first
        listing finds them ready. Each batch reads one snapshot synchronously (see :meth:`forget`)."""
        after: str | None = None
        while True:
            def run(txn: Txn, after: str | None = after) -> list[str]:
                names = list(itertools.islice(self.meta.repo_names(txn, after), batch))
                with self.store.begin_read() as stxn:
                    for name in names:
                        if name not in self._keys and len(self._keys) < MAX_KEPT:
                            self._remember(txn, stxn, name)
                return names

            try:
                names = self.meta.read(run)
            except lmdb.Error:  # closed while stopping
                return
            if not names:
                log.info("listing keys of %d repositories ready", len(self._keys))
                return
            after = names[-1]
            await asyncio.sleep(0.005)

    def _shared_keys(self, txn: Txn, stxn: Txn, repo: str) -> Summary | None:
        newest: Summary | None = None
        downloads = 0
        platforms: list[dict[str, Any]] = []
        for tag, digest in self.meta.tags(txn, repo):
            if SIG_TAG_RE.match(tag):
                continue
            keys = self._image_keys(txn, stxn, repo, digest)
            if keys is None:
                continue
            downloads += keys["DownloadCount"]
            for plat in keys["_platforms"]:
                if plat.get("Os") and plat not in platforms:
                    platforms.append(plat)
            if newest is None or keys["_updated"] > newest["_updated"]:
                newest = keys
        if newest is None:
            return None
        return {"Name": repo, "LastUpdated": newest["LastUpdated"], "_updated": newest["_updated"],
                "DownloadCount": downloads, "StarCount": self.store.mark_count(stxn, "stars", repo),
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
