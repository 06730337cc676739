"""Which repositories name a digest (issue 17): ``ImageListForDigest``, ``DerivedImageList`` and
``BaseImageList`` look up the repositories whose manifests name the digest (their own, a config's,
a layer's, an index's children) instead of summarising every image of the shard.

The records (``digests``/``mdigests`` in :mod:`shard.searchstore`) are a superset of the truth at
every moment: a pushed manifest is added in the push's search transaction, a repository's part is
rewritten with its listing entry (deletions drop theirs then), and the answer is still filtered
by the exact test (:func:`~shard.imageinfo.has_digest`) over those repositories' images. Built
and rebuilt with the listing index (:meth:`~shard.search_index.SearchIndex.warm`).
"""

from __future__ import annotations

import re
from typing import Any

from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.searchstore import SearchStore

_HEX_PREFIX = re.compile(r"[0-9a-f]*")


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[-1]


def named_digests(digest: str, record: dict[str, Any]) -> set[str]:
    """The hex parts of the digests a manifest names: its own and what its record lists (the config
    and layers as ``blobs``, an index's ``children``: parsed when it was pushed)."""
    return {hex_of(d) for d in (digest, *record.get("blobs", ()), *record.get("children", ())) if d}


def index_manifest(meta: MetaStore, store: SearchStore, txn: Txn, stxn: Txn, repo: str, digest: str) -> None:
    """Add what ``digest`` of ``repo`` names (``txn``: a read of the main store after its commit)."""
    record = meta.get_manifest(txn, repo, digest)
    if record is not None:
        store.digest_add(stxn, repo, digest, named_digests(digest, record))


def sync_repo(meta: MetaStore, store: SearchStore, txn: Txn, stxn: Txn, repo: str) -> None:
    """Make ``repo``'s records name exactly its stored manifests (none if it is gone): O(its manifests)."""
    stored = set(meta.manifest_digests(txn, repo)) if meta.repo_exists(txn, repo) else set()
    indexed = set(store.digest_manifests(stxn, repo))
    for gone in indexed - stored:
        store.digest_drop(stxn, repo, gone)
    for new in stored - indexed:
        index_manifest(meta, store, txn, stxn, repo, new)


def lookup_prefix(wanted: str) -> str | None:
    """The hex prefix to look ``wanted`` up by, or None when the records cannot answer it (a
    ``wanted`` without ``:`` that is not hex may be the start of an algorithm's name: every digest)."""
    if ":" in wanted:
        return hex_of(wanted)
    return wanted if _HEX_PREFIX.fullmatch(wanted) else None
