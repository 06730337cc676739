"""HEADs answered from the owning shard's metadata, read in place (gateway/local_reads.py, issue 17).

In-process (tests/inprocess.py: the real gateway app and real shards, sharing the filesystem as
the embedded cluster does) the gateway borrows each shard's open environment; the read-only
environment of another process, and its map growing under it, is tested with a writer in a
child process at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from common.clustermap import ClusterMap
from common.protocol import Op
from common.ring import shard_for
from gateway.local_reads import LocalReads
from shard.metastore import MetaStore
from tests.inprocess import InProcessRegistry
from tests.oci import digest, push_image

pytestmark = pytest.mark.inprocess
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry() -> Iterator[InProcessRegistry]:
    with InProcessRegistry(shards=2) as reg:
        yield reg


def count_shard_reads(reg: InProcessRegistry) -> Counter[str]:
    """Count the ``blob.stat`` and ``manifest.get`` ops every shard serves from now on, and the
    pulls the ``manifest.pulls`` notices tell (under ``"pulled"``)."""
    seen: Counter[str] = Counter()
    for server in reg.shards:
        for op in (Op.BLOB_STAT, Op.MANIFEST_GET, Op.MANIFEST_PULLS):
            original = server.handlers[op]

            async def counted(*args: Any, _op: Op = op, _original: Any = original, **kwargs: Any) -> Any:
                if _op is Op.MANIFEST_PULLS:
                    seen["pulled"] += len(args[0]["pulls"])
                else:
                    seen[_op.value] += 1
                return await _original(*args, **kwargs)

            server.handlers[op] = counted
    return seen


def local(reg: InProcessRegistry) -> LocalReads:
    reads = reg.app.state.local_reads  # type: ignore[attr-defined]
    assert reads is not None
    return reads


def name_on(shard: int, old: int, new: int, *, stays: bool) -> str:
    """A name on ``shard`` under ``old`` shards that stays there (or moves) under ``new``."""
    prefix = "stays/" if stays else "moves/"
    return next(f"{prefix}{i}" for i in range(1000) if shard_for(f"{prefix}{i}", old) == shard
                and (shard_for(f"{prefix}{i}", new) == shard) == stays)


def layer_digests(manifest: bytes) -> list[str]:
    parsed = json.loads(manifest)
    return [parsed["config"]["digest"], *(layer["digest"] for layer in parsed["layers"])]


def downloads(reg: InProcessRegistry, repo: str, manifest_digest: str) -> int:
    """The shard's stored download count of a manifest (its pending counts flushed first)."""
    server: Any = reg.shards[shard_for(repo, 2)]

    async def read() -> int:
        server.search.flush()
        store = server.search.store
        count: int = store.read(lambda txn: store.stats(txn, repo, manifest_digest))[0]
        return count

    return reg.run(read())


def wait_for(seen: Counter[str], op: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while seen[op] < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen[op] == count, seen


def test_reads_skip_the_shard_and_a_get_still_counts_as_a_pull(registry: InProcessRegistry) -> None:
    with registry.client() as c:
        manifest_digest, manifest = push_image(c, "local/app", "v1")
        blobs = layer_digests(manifest)
        seen = count_shard_reads(registry)
        before = local(registry).answered
        for blob in blobs:
            r = c.head(f"/v2/local/app/blobs/{blob}")
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == blob
            got = c.get(f"/v2/local/app/blobs/{blob}")
            assert got.status_code == 200 and digest(got.content) == blob
            assert int(r.headers["Content-Length"]) == len(got.content)
        for reference in ("v1", manifest_digest):
            r = c.head(f"/v2/local/app/manifests/{reference}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200, r.text
            assert r.headers["Docker-Content-Digest"] == manifest_digest
            assert int(r.headers["Content-Length"]) == len(manifest)
            assert r.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        assert seen == Counter(), "HEADs and blob GETs asked a shard"
        assert local(registry).answered - before == 2 * len(blobs) + 2
        # a manifest GET is read in place too; the shard hears of the pull after the answer (download counts)
        for reference in ("v1", manifest_digest):
            got = c.get(f"/v2/local/app/manifests/{reference}")
            assert got.content == manifest and got.headers["Docker-Content-Digest"] == manifest_digest
        wait_for(seen, "pulled", 2)
        assert seen == Counter({"pulled": 2})
        assert downloads(registry, "local/app", manifest_digest) == 2
        # an Accept that excludes the stored type is still refused, as from the shard
        r = c.head("/v2/local/app/manifests/v1", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 404


def test_a_repository_under_a_retention_policy_has_its_gets_served_by_the_shard() -> None:
    """A running retention pass keeps what is pulled while it runs: the shard must see the pull
    before the client gets the manifest, so such a GET is never answered in place."""
    retention = {"storage": {"retention": {"policies": [{"repositories": ["kept/**"], "deleteUntagged": True}]}}}
    with InProcessRegistry(shards=2, config=retention) as reg, reg.client() as c:
        kept_digest, _ = push_image(c, "kept/app", "v1")
        free_digest, _ = push_image(c, "free/app", "v1")
        seen = count_shard_reads(reg)
        assert c.get("/v2/kept/app/manifests/v1").status_code == 200
        assert c.head("/v2/kept/app/manifests/v1").status_code == 200  # a HEAD is no pull: read in place
        assert seen == Counter({"manifest.get": 1})
        assert c.get("/v2/free/app/manifests/v1").status_code == 200
        wait_for(seen, "pulled", 1)
        assert seen == Counter({"manifest.get": 1, "pulled": 1})
        assert downloads(reg, "kept/app", kept_digest) == 1 and downloads(reg, "free/app", free_digest) == 1


def test_misses_get_the_shards_own_answer(registry: InProcessRegistry) -> None:
    with registry.client() as c:
        push_image(c, "local/miss", "v1")
        seen = count_shard_reads(registry)
        unknown = digest(b"never pushed")
        assert c.head(f"/v2/local/miss/blobs/{unknown}").status_code == 404
        r = c.get(f"/v2/local/miss/blobs/{unknown}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert c.head("/v2/local/miss/manifests/nope").status_code == 404
        r = c.get("/v2/local/nowhere/manifests/v1")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
        assert seen == Counter({"blob.stat": 2, "manifest.get": 2})


def test_a_shard_whose_view_differs_from_the_gateways_map_is_asked(registry: InProcessRegistry) -> None:
    """The gateway reads in place only under the map the shard holds; the shard decides otherwise
    (STALE_MAP makes the gateway refresh its map, and then they agree again)."""
    repo = name_on(1, 2, 2, stays=True)
    with registry.client() as c:
        _, manifest = push_image(c, repo, "v1")
        blob = layer_digests(manifest)[0]
        seen = count_shard_reads(registry)
        assert c.head(f"/v2/{repo}/blobs/{blob}").status_code == 200
        assert seen == Counter()
        view = ClusterMap.stable(2, 2).to_wire()  # a newer map the gateway has not heard of yet
        for shard in (0, 1):
            registry.run(registry.shards[shard].dispatch("cluster.map.put", {"view": view}, []))
        assert c.head(f"/v2/{repo}/blobs/{blob}").status_code == 200
        # served by the shard (after its ownership check's STALE_MAP made the gateway take the new map)
        assert seen == Counter({"blob.stat": 1})
        assert c.head(f"/v2/{repo}/blobs/{blob}").status_code == 200
        assert seen == Counter({"blob.stat": 1})  # the maps agree again: read in place


def test_moving_names_are_always_asked_of_the_shards(registry: InProcessRegistry) -> None:
    moving, staying = name_on(1, 2, 1, stays=False), name_on(0, 2, 1, stays=True)
    with registry.client() as c:
        blobs = {repo: layer_digests(push_image(c, repo, "v1")[1])[0] for repo in (moving, staying)}
        view = ClusterMap.stable(1, 2).after(1).to_wire()  # shrinking 2 → 1: shard 1 drains into 0
        for shard in (0, 1):
            registry.run(registry.shards[shard].dispatch("cluster.map.put", {"view": view}, []))
        seen = count_shard_reads(registry)
        for _ in range(2):
            assert c.head(f"/v2/{moving}/blobs/{blobs[moving]}").status_code == 200
            assert c.head(f"/v2/{moving}/manifests/v1").status_code == 200
        calls = sum(seen.values())
        assert calls >= 4  # every read of the moving name went to a shard
        assert c.head(f"/v2/{staying}/blobs/{blobs[staying]}").status_code == 200
        assert c.head(f"/v2/{staying}/manifests/v1").status_code == 200
        assert sum(seen.values()) == calls  # a name that stays is read in place under the transition map


def test_a_closed_gateway_state_opens_nothing_again() -> None:
    """After the worker stopped, nothing re-creates its shard client (a ZeroMQ context nobody would
    close) or its read-only views."""
    with InProcessRegistry(shards=1) as reg:
        state: Any = reg.app.state  # type: ignore[attr-defined]
        assert state.local_reads is not None
    with pytest.raises(RuntimeError):
        state.client  # noqa: B018
    assert state.local_reads is None


WRITER = """
import sys
from pathlib import Path
from shard.metastore import MetaStore
meta = MetaStore(Path(sys.argv[1]), map_size=1 << 20)
for line in sys.stdin:
    start, count = map(int, line.split())
    def run(txn, start=start, count=count):
        for i in range(start, start + count):
            meta.link(txn, f"repo/{i % 7}", "sha256:" + f"{i:064x}", i)
    meta.write(run)
    print(meta.env.info()["map_size"], flush=True)
"""


def test_a_reader_in_another_process_follows_the_writer_as_its_map_grows(tmp_path: Path) -> None:
    path = tmp_path / "meta"
    with subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=ROOT, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as writer:
        assert writer.stdin is not None and writer.stdout is not None
        follow_the_writer(writer, path)


def follow_the_writer(writer: subprocess.Popen[str], path: Path) -> None:
    assert writer.stdin is not None and writer.stdout is not None
    try:
        writer.stdin.write("0 1\n")
        writer.stdin.flush()
        first_size = int(writer.stdout.readline())
        reader = MetaStore(path, readonly=True)
        written, sizes = 1, {first_size}
        while len(sizes) < 4:  # the writer doubles its map three times under the reader
            writer.stdin.write(f"{written} 3000\n")
            writer.stdin.flush()
            sizes.add(int(writer.stdout.readline()))
            written += 3000
            last = written - 1
            found = reader.read(lambda txn, i=last: reader.link_of(txn, f"repo/{i % 7}", "sha256:" + f"{i:064x}"))
            assert found is not None, f"link {last} not seen by the reader"
        assert reader.read(lambda txn: sum(1 for _ in reader.links(txn, "repo/3"))) == len(range(3, written, 7))
        with pytest.raises(lmdb.ReadonlyError):
            reader.write(lambda txn: reader.ensure_repo(txn, "nope"))
        reader.close()
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)


STALLED_READER = """
import sys
from pathlib import Path
from shard.metastore import MetaStore
reader = MetaStore(Path(sys.argv[1]), readonly=True)
txn = reader.env.begin()  # a read in progress, as a gateway worker's when it is killed
print(txn.id(), flush=True)
sys.stdin.readline()
"""


def test_the_shard_frees_the_read_slot_of_a_reader_killed_mid_read(tmp_path: Path) -> None:
    path = tmp_path / "meta"
    store = MetaStore(path, sync=False)
    try:
        store.write(lambda txn: store.ensure_repo(txn, "repo/a"))
        with subprocess.Popen([sys.executable, "-c", STALLED_READER, str(path)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) as reader:
            assert reader.stdout is not None and reader.stdin is not None
            assert int(reader.stdout.readline()) > 0
            assert store.free_stale_readers() == 0  # alive: its slot stays
            reader.kill()  # kill -9, mid-read
            reader.wait(timeout=30)
            reader.stdin.close()
        assert store.free_stale_readers() == 1
        assert store.free_stale_readers() == 0
    finally:
        store.close()
