"""Retention against real processes: passes running while a client pushes and pulls, and a
shard killed (SIGKILL) while a pass deletes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from common.ring import shard_for
from tests.cluster import ROOT, Cluster
from tests.lifecycle.helpers import exists, run_retention, tags
from tests.oci import OCI_MANIFEST, push_image

pytestmark = pytest.mark.timeout(180)
KEEP = 3
CONFIG = {
    "storage": {"gc": True, "gcDelay": "1h", "gcInterval": "24h",
                "retention": {"delay": "0s", "policies": [
                    {"repositories": ["loop/**"], "deleteUntagged": True,
                     "keepTags": [{"patterns": ["^stable$"]}, {"patterns": ["^b-"], "mostRecentlyPushedCount": KEEP}]},
                    {"repositories": ["bulk/**"], "deleteUntagged": True,
                     "keepTags": [{"patterns": ["^keep-"]}]}]}},
    "extensions": {"debug": {"enable": True}, "search": {"enable": True}},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("retention")
    # shard/faults.py: the shard of bulk/app exits (as if SIGKILLed) after the 2nd chunk of a pass, once
    os.environ["SHARDREG_FAULTS"] = f"retention.chunk:bulk/app:2@{tmp / 'fault-fired'}"
    try:
        cluster = Cluster(tmp / "data", config=CONFIG).start()
    finally:
        del os.environ["SHARDREG_FAULTS"]
    try:
        yield cluster
    finally:
        cluster.stop()


def test_passes_during_a_push_loop_lose_no_acknowledged_push(cluster: Cluster) -> None:
    repo = "loop/app"
    stop = threading.Event()
    failures: list[str] = []
    acknowledged: list[tuple[str, str]] = []
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        stable, _ = push_image(client, repo, "stable", layers=1, layer_size=64)

        def pusher() -> None:
            with httpx.Client(base_url=cluster.url, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    tag = f"b-{i:04d}"
                    digest, _ = push_image(c, repo, tag, layers=1, layer_size=64)
                    acknowledged.append((tag, digest))
                    # the newest push is among the KEEP most recent: it must be there right after its 201
                    r = c.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                    if r.status_code != 200:
                        failures.append(f"acknowledged push {tag} not pullable: {r.status_code}")
                    i += 1

        def puller() -> None:
            with httpx.Client(base_url=cluster.url, timeout=30) as c:
                while not stop.is_set():
                    r = c.get(f"/v2/{repo}/manifests/stable", headers={"Accept": OCI_MANIFEST})
                    if r.status_code != 200 or r.headers.get("Docker-Content-Digest") != stable:
                        failures.append(f"pull of the kept tag failed: {r.status_code}")

        threads = [threading.Thread(target=pusher), threading.Thread(target=puller)]
        for t in threads:
            t.start()
        passes = deleted = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline or passes < 5:
            report = run_retention(client, dry_run=False)
            deleted += sum(1 for a in report["repositories"].get(repo, []) if a["action"] == "deleteManifest")
            passes += 1
        stop.set()
        for t in threads:
            t.join(30)
        assert not failures, failures[:5]
        assert deleted > 0, "the passes did delete old pushes while the loop ran"
        run_retention(client, dry_run=False)
        newest = [tag for tag, _ in acknowledged[-KEEP:]]
        assert tags(client, repo) == {"stable", *newest}
        for tag, digest in acknowledged[-KEEP:]:
            assert exists(client, repo, digest) and exists(client, repo, tag)
        for tag, digest in acknowledged[:-KEEP]:
            assert not exists(client, repo, digest), f"{tag} should have been deleted"


def test_shard_killed_during_a_pass_then_the_next_pass_finishes(cluster: Cluster) -> None:
    repo = "bulk/app"
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        kept = [push_image(client, repo, f"keep-{i}", layers=1, layer_size=64)[0] for i in range(3)]
        doomed = [push_image(client, repo, f"old-{i}", layers=1, layer_size=64)[0] for i in range(50)]
        shard = f"shard-{shard_for(repo, 2)}"
        old = cluster.children()[shard]
        r = client.post("/v2/_shardreg/retention", params={"dryRun": "false"})
        assert r.status_code == 503, "the shard died in the middle of the pass"
        cluster.wait_restarted(shard, old)
        assert {f"keep-{i}" for i in range(3)} <= tags(client, repo)
        left = sum(exists(client, repo, d) for d in doomed)
        assert 0 < left < len(doomed), "the pass stopped half-way (2 of its 4 chunks committed)"
        run_retention(client, dry_run=False)
        assert tags(client, repo) == {f"keep-{i}" for i in range(3)}
        for digest in kept:
            assert exists(client, repo, digest)
        for digest in doomed:
            assert not exists(client, repo, digest)
        assert repo not in run_retention(client, dry_run=True)["repositories"]


def test_cli_dry_run_prints_the_plan_per_repository(cluster: Cluster) -> None:
    repo = "bulk/cli"
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        doomed, _ = push_image(client, repo, "old-cli", layers=1, layer_size=64)
        push_image(client, repo, "keep-cli", layers=1, layer_size=64)
        out = subprocess.run([sys.executable, "-m", "common.cli", "retention", "--dry-run", "--url", cluster.url],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert "retention (dry run)" in out.stdout
        section = out.stdout.split(f"\n{repo}\n", 1)[1]
        assert "would delete tag      old-cli" in section and f"would delete manifest {doomed}" in section
        assert "keep-cli" not in section.split("\ntotal")[0]
        gc = subprocess.run([sys.executable, "-m", "common.cli", "gc", "--dry-run", "--url", cluster.url],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert gc.returncode == 0 and "gc: " in gc.stdout and "would delete tag      old-cli" in gc.stdout
        assert tags(client, repo) == {"old-cli", "keep-cli"}, "a dry run deletes nothing"
