"""Through the registry's API: every shard's usage counters equal a full scan of its metadata
after pushes, mounts (same shard and across shards), blob deletes and manifest deletes, and the
``status`` and ``repo.count`` ops answer them (issue 17)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from common.protocol import Op
from tests.inprocess import InProcessRegistry
from tests.integration.test_blobs import repo_on
from tests.oci import push_blob, push_image

pytestmark = pytest.mark.inprocess


def shard_op(registry: InProcessRegistry, index: int, op: Op, args: dict[str, Any]) -> Any:
    return registry.run(registry.shards[index].dispatch(op.value, args, []))[0]


def check_every_shard(registry: InProcessRegistry) -> list[tuple[int, int]]:
    """Each shard's (blob count, blob bytes): counters, scan and ``status`` agree."""
    usages = []
    for index, server in enumerate(registry.shards):
        meta = server.service.meta
        blobs = meta.read(lambda txn, meta=meta: list(meta.blobs(txn)))
        repos = meta.read(lambda txn, meta=meta: sum(1 for _ in meta.repo_names(txn)))
        status = shard_op(registry, index, Op.STATUS, {})
        assert (status["blob_count"], status["blob_bytes"]) == (len(blobs), sum(size for _, size in blobs))
        assert meta.read(meta.blob_usage) == (len(blobs), sum(size for _, size in blobs))
        assert shard_op(registry, index, Op.REPO_COUNT, {"repo": ""})["count"] == repos
        usages.append((status["blob_count"], status["blob_bytes"]))
    return usages


def test_counters_follow_pushes_mounts_and_deletes(client, inprocess):
    before = check_every_shard(inprocess)
    source, same, other = repo_on(0, "count-src-"), repo_on(0, "count-same-"), repo_on(1, "count-other-")
    data = os.urandom(70_001)
    d = push_blob(client, source, data)
    after_push = check_every_shard(inprocess)
    assert after_push[0] == (before[0][0] + 1, before[0][1] + len(data))
    push_blob(client, source, data)  # again: nothing new
    assert check_every_shard(inprocess) == after_push
    for target in (same, other):
        r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": source})
        assert r.status_code == 201, r.text
    mounted = check_every_shard(inprocess)
    assert mounted[0] == after_push[0]  # a second link to the same file
    assert mounted[1] == (after_push[1][0] + 1, after_push[1][1] + len(data))  # copied to the other shard
    assert client.delete(f"/v2/{source}/blobs/{d}").status_code == 202
    assert check_every_shard(inprocess) == mounted  # still linked from `same`
    assert client.delete(f"/v2/{same}/blobs/{d}").status_code == 202
    assert client.delete(f"/v2/{other}/blobs/{d}").status_code == 202
    assert check_every_shard(inprocess) == before

    manifest, _ = push_image(client, source, "v1", layers=2, layer_size=5000)
    pushed = check_every_shard(inprocess)
    assert pushed[0][0] == before[0][0] + 3  # config and two layers
    assert client.delete(f"/v2/{source}/manifests/{manifest}").status_code == 202
    assert check_every_shard(inprocess) == pushed  # the blobs stay until GC
