"""The listing index (and the digest and by-user records kept with it) after a clean stop is
trusted at the next start only if nothing wrote the extensions' store in between (issue 17): a
version that does not keep the index (a rollback, then the upgrade again) writes it on every push,
and the index is then rebuilt, so that no repository pushed meanwhile is missing from listings;
a clean stop followed by a start of this version rebuilds nothing."""

from __future__ import annotations

import asyncio
import hashlib
import json

from shard.metastore import MetaStore
from shard.search_meta import SearchMeta
from shard.searchstore import SearchStore
from shard.service import ShardService
from shard.trust import Trust

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def fill(meta: MetaStore, repos: int, prefix: str = "r") -> None:
    """``repos`` repositories with one tagged image each, written to the main store directly."""
    def run(txn) -> None:
        for i in range(repos):
            repo = f"{prefix}{i:06d}"
            layer = sha(f"layer {repo}".encode())
            body = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}]}).encode()
            meta.link(txn, repo, layer, 5)
            meta.put_manifest(txn, repo, sha(body), {"mediaType": MANIFEST, "size": len(body), "blobs": [layer]}, body)
            meta.set_tag(txn, repo, "latest", sha(body))

    meta.write(run)


def open_search(service: ShardService) -> SearchMeta:
    store = SearchStore(service.root / "search", sync=False)
    return SearchMeta(service.meta, service.blobs, store, Trust(store))


def indexed(search: SearchMeta) -> set[str]:
    return {name for name, _ in search.store.read(lambda stxn: list(search.store.index_names(stxn)))}


def test_a_clean_restart_keeps_the_index_and_a_foreign_write_rebuilds_it(tmp_path):
    service = ShardService(tmp_path / "shard-0", 0, 1, durable=False)
    try:
        fill(service.meta, 5)
        search = open_search(service)
        asyncio.run(search.warm())
        assert indexed(search) == {f"r{i:06d}" for i in range(5)}
        # a marker only a rebuild removes (no such repository in the main store)
        search.store.write(lambda stxn: search.store.index_put(stxn, "marker", {"u": 1.0, "l": "", "d": 0, "s": 0,
                                                                              "p": [], "n": 1}))
        search.close()

        search = open_search(service)  # this version again: nothing to rebuild
        asyncio.run(search.warm())
        assert "marker" in indexed(search)
        search.close()

        # an older version: pushes a repository, writes its search records, keeps no index
        fill(service.meta, 1, prefix="old")
        old = SearchStore(service.root / "search", sync=False)
        old.write(lambda stxn: old.record_push(stxn, "old000000", "sha256:" + "0" * 64, ["latest"], 5.0, "ci"))
        old.close()

        search = open_search(service)
        asyncio.run(search.warm())
        assert indexed(search) == {f"r{i:06d}" for i in range(5)} | {"old000000"}  # rebuilt: marker gone
        search.close()

        # the version before this index format: it keeps the index, not the platform counts, and
        # marks its own clean close (``closed_txn``): this version rebuilds all the same
        search = open_search(service)
        asyncio.run(search.warm())
        search.store.write(lambda stxn: search.store.index_put(stxn, "marker", {"u": 1.0, "l": "", "d": 0, "s": 0,
                                                                              "p": [], "n": 1}))
        search.close()
        previous = SearchStore(service.root / "search", sync=False)
        previous.write(lambda stxn: previous.put(stxn, "indexmeta", b"closed_txn", stxn.id()))
        previous.close()
        search = open_search(service)
        asyncio.run(search.warm())
        assert "marker" not in indexed(search)
        search.close()
    finally:
        service.close()
