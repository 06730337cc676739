"""Issue 12: a resize moves only the repositories whose owner changes, all to the new shard
(grow), or only the removed shard's (shrink); and a second resize while one runs is refused.

1,000 repositories (one tiny manifest each: an empty image index; blobs move in test_reshard_load) on 2 shards; grow to 3 then 4,
shrink back to 3. The moved count is the driver's (``progress.names.done``) and each shard's
owned count is its own (``shardStates``): both come from the running cluster, not from the hash.
"""

from __future__ import annotations

import httpx
import pytest

from tests.cluster import Cluster
from tests.integration.reshard_util import make_repos

pytestmark = pytest.mark.timeout(600)
REPOS = 1000


def owned(status: dict) -> list[int]:
    return [s["owned"] for s in status["shardStates"]]


def test_moved_fraction_and_concurrent_resize(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHARDREG_RESHARD_WATCH", "1")
    names = [f"frac/r{i:04d}" for i in range(REPOS)]
    # metadata commits without fsync: this test is about counts, not durability
    with Cluster(tmp_path / "data", shards=2, workers=2, config={"storage": {"commit": False}}) as cluster:
        make_repos(cluster.url, names)
        before = owned(cluster.status())
        seeds = sum(before) - REPOS

        # a resize while another runs: refused (409 RESIZE_RUNNING, CLI exit 1), the first one goes on
        began = cluster.cli("resize", "--shards", "3", "--no-wait")
        assert began.returncode == 0, began.stderr
        refused = httpx.post(f"{cluster.url}/v2/_shardreg/cluster/resize", json={"shards": 4})
        second = cluster.cli("resize", "--shards", "4")
        status = cluster.status()
        if status["resize"]["state"] == "running":  # (it may have finished meanwhile: then 4 is a new resize)
            assert refused.status_code == 409, refused.text
            assert refused.json()["errors"][0]["code"] == "RESIZE_RUNNING"
            assert "a resize 2→3" in refused.json()["errors"][0]["message"]
            assert second.returncode == 1 and "RESIZE_RUNNING" in second.stderr, second.stderr
        bad = httpx.post(f"{cluster.url}/v2/_shardreg/cluster/resize", json={"shards": 0})
        assert bad.status_code == 400
        assert cluster.cli("resize", "--shards", "3").returncode == 0  # waits for the running one

        for old, new in ((2, 3), (3, 4), (4, 3)):
            if (old, new) != (2, 3):
                cluster.resize(new)
            status = cluster.status()
            after = owned(status)
            moved = status["progress"]["names"]["done"]
            assert sum(after) == REPOS + seeds, after
            if new > old:
                assert moved <= (REPOS + seeds) * (1 / new + 0.05), (old, new, moved)
                assert after[new - 1] == moved, (after, moved)  # all of them to the new shard
                assert all(a <= b for a, b in zip(after[:old], before, strict=True))
            else:
                assert moved == before[old - 1], (before, moved)  # only the removed shard's
            before = after
        catalog = httpx.get(f"{cluster.url}/v2/_catalog", params={"n": 2000}).json()["repositories"]
        assert [c for c in catalog if c.startswith("frac/")] == names
