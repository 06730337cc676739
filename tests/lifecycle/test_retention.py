"""Retention policies (storage.retention, zot's format) on a generated history, in process.

Push and pull times are set through the real API: the shards' lifecycle clock is moved
(``PUT /v2/_shardreg/debug/clock``) around each push or pull, so search metadata records them
days apart, as it would have over days.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import free_port
from tests.inprocess import InProcessRegistry
from tests.lifecycle.helpers import (
    DAY,
    exists,
    pull_at,
    push_at,
    push_index,
    push_referrer,
    run_retention,
    set_clock,
    tags,
)
from tests.lifecycle.receiver import Receiver

pytestmark = pytest.mark.timeout(120)

CONFIG = {
    "storage": {
        "gc": True, "gcDelay": "1h", "gcInterval": "24h",
        "retention": {"dryRun": False, "delay": "24h", "policies": [
            # zot's example: tags by name only, or by name and recent pulls
            {"repositories": ["infra/*", "prod/*"], "deleteReferrers": False,
             "keepTags": [{"patterns": ["v2.*", ".*-prod"]},
                          {"patterns": ["v3.*", ".*-prod"], "pulledWithin": "168h"}]},
            {"repositories": ["tmp/**"], "deleteReferrers": True, "deleteUntagged": True,
             "keepTags": [{"patterns": ["v1.*"], "pulledWithin": "168h", "pushedWithin": "168h"}],
             "keepUntagged": {"pulledWithin": "168h", "pushedWithin": "168h"}},
            {"repositories": ["ci/**"], "deleteReferrers": True, "deleteUntagged": True,
             "keepTags": [{"mostRecentlyPushedCount": 2, "mostRecentlyPulledCount": 1}]},
        ]},
        "immutableTags": {"policies": [{"repositories": ["ci/**"], "patterns": ["release-.*"]}]},
    },
    "extensions": {"debug": {"enable": True}, "search": {"enable": True}, "metrics": {"enable": True}},
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with InProcessRegistry(config=CONFIG) as registry, registry.client() as c:
        yield c
        set_clock(c, 0)


def test_name_patterns_and_pulled_within(client: httpx.Client) -> None:
    repo = "infra/app"
    push_at(client, repo, "v2.0", 30)            # kept: first entry, pattern only
    push_at(client, repo, "app-prod", 30)        # kept: first entry (the first matching entry applies)
    push_at(client, repo, "v3.0", 30)
    pull_at(client, repo, "v3.0", 2)             # kept: pulled within 168h
    v31 = push_at(client, repo, "v3.1", 30)      # deleted: second entry, not pulled recently
    push_at(client, repo, "v3.2", 3)             # kept: pulledWithin also keeps what was pushed within
    dev = push_at(client, repo, "dev", 30)       # deleted: no entry matches
    plan = run_retention(client, dry_run=True)
    planned = {(a["action"], a["reference"]) for a in plan["repositories"][repo]}
    # deleteUntagged is the default of a matched policy (zot): the manifests left untagged go too,
    # being older than delay
    assert planned == {("deleteTag", "v3.1"), ("deleteTag", "dev"), ("deleteManifest", v31), ("deleteManifest", dev)}
    assert tags(client, repo) == {"v2.0", "app-prod", "v3.0", "v3.1", "v3.2", "dev"}, "a dry run deletes nothing"
    assert exists(client, repo, v31) and exists(client, repo, dev)
    report = run_retention(client, dry_run=False)
    assert {(a["action"], a["reference"]) for a in report["repositories"][repo]} == planned, "dry run == real"
    assert tags(client, repo) == {"v2.0", "app-prod", "v3.0", "v3.2"}
    assert not exists(client, repo, v31) and not exists(client, repo, dev)
    assert repo not in run_retention(client, dry_run=True)["repositories"], "a second pass finds nothing"


def test_unmatched_repository_keeps_everything(client: httpx.Client) -> None:
    repo = "keep/everything"
    old = push_at(client, repo, "ancient", 400)
    push_at(client, repo, None, 400)  # untagged and old
    report = run_retention(client, dry_run=False)
    assert repo not in report["repositories"]
    assert tags(client, repo) == {"ancient"} and exists(client, repo, old)


def test_most_recent_counts_untagged_and_referrers(client: httpx.Client) -> None:
    repo = "ci/service"
    old1 = push_at(client, repo, "build-1", 10)
    old2 = push_at(client, repo, "build-2", 9)
    new1 = push_at(client, repo, "build-3", 2)
    new2 = push_at(client, repo, "build-4", 0.5)
    pull_at(client, repo, "build-1", 1)                 # the most recently pulled: kept
    sig_old2 = push_referrer(client, repo, old2, 9)     # its subject goes: deleted with it
    sig_new1 = push_referrer(client, repo, new1, 2)     # its subject stays: kept
    release = push_at(client, repo, "release-1", 20)    # immutable: never deleted by retention
    report = run_retention(client, dry_run=False)
    done = {(a["action"], a["reference"]) for a in report["repositories"][repo]}
    assert ("deleteTag", "build-2") in done and ("deleteManifest", old2) in done
    assert ("deleteManifest", sig_old2) in done, "the referrer of a deleted image is deleted (deleteReferrers)"
    assert tags(client, repo) == {"build-1", "build-3", "build-4", "release-1"}
    assert not exists(client, repo, old2) and not exists(client, repo, sig_old2)
    for kept in (old1, new1, new2, sig_new1, release):
        assert exists(client, repo, kept)
    r = client.get(f"/v2/{repo}/referrers/{old2}")
    assert r.status_code == 200 and r.json()["manifests"] == []


def test_kept_index_protects_its_children(client: httpx.Client) -> None:
    repo = "tmp/multi"
    children = [push_at(client, repo, None, 30) for _ in range(2)]
    index = push_index(client, repo, "v1.0", children, 1)   # kept: v1.* pushed within 168h
    orphans = [push_at(client, repo, None, 30) for _ in range(2)]
    gone_index = push_index(client, repo, None, orphans, 30)  # untagged, old: deleted, then its children
    recent_untagged = push_at(client, repo, None, 0.1)        # younger than delay and keepUntagged: kept
    report = run_retention(client, dry_run=False)
    deleted = {a["reference"] for a in report["repositories"][repo]}
    assert deleted == {gone_index, *orphans}
    for kept in (index, *children, recent_untagged):
        assert exists(client, repo, kept)
    assert run_retention(client, dry_run=True)["repositories"].get(repo) is None, "nothing left to delete"


def test_plan_reports_blobs_for_gc_dry_run(client: httpx.Client) -> None:
    report = run_retention(client, dry_run=True, gc=True)
    assert "blobs" in report and report["dryRun"] is True
    assert len(report["shards"]) == 2


def test_dry_runs_are_counted_in_metrics_and_status(client: httpx.Client) -> None:
    push_at(client, "infra/metrics", "dev-1", 30)
    run_retention(client, dry_run=True)
    text = client.get("/metrics").text
    planned = [float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("shardreg_retention_dry_run_deletions_total")]
    assert planned and sum(planned) >= 2  # the tag and its manifest
    assert "shardreg_retention_last_pass_timestamp_seconds" in text


def test_a_pass_runs_by_itself_every_gc_interval_and_tells_the_sinks() -> None:
    receiver = Receiver(free_port()).start()
    config = {"storage": {"gcInterval": "1s", "retention": {"delay": "0s", "policies": [
        {"repositories": ["auto/**"], "keepTags": [{"patterns": ["^keep"]}]}]}},
        "extensions": {"events": {"sinks": [{"type": "http", "address": f"http://127.0.0.1:{receiver.port}/"}]}}}
    try:
        with InProcessRegistry(config=config, shards=1) as registry, registry.client() as c:
            from tests.oci import push_image
            push_image(c, "auto/app", "keep-1", layers=1, layer_size=16)
            old, _ = push_image(c, "auto/app", "old-1", layers=1, layer_size=16)
            deadline = time.monotonic() + 30
            while tags(c, "auto/app") != {"keep-1"}:
                assert time.monotonic() < deadline, "no retention pass ran within 30 s with gcInterval 1s"
                time.sleep(0.1)

            def deleted(got: list) -> list:  # type: ignore[type-arg]
                return [json.loads(b)["data"] for _, _, b in got
                        if json.loads(b)["type"] == "zotregistry.image.deleted"]
            receiver.wait_for(lambda got: len(deleted(got)) >= 2)
            events = deleted(receiver.received)
            assert {(e["reference"], e["digest"]) for e in events} == {("old-1", old), (old, old)}
            assert all(e["actor"] == {"name": "retention"} for e in events)
    finally:
        receiver.stop()


def test_manifests_pulled_or_pushed_while_a_pass_runs_are_left_alone() -> None:
    """Between a pass's plan and its deletions, a pull (manifest.get) and a re-push (manifest.put)
    go through the real ops: the pass deletes neither manifest, and deletes the others."""
    config = {"storage": {"retention": {"delay": "0s", "policies": [
        {"repositories": ["race/**"], "keepTags": [{"patterns": ["^keep"]}]}]}}}
    with InProcessRegistry(config=config, shards=1) as registry, registry.client() as c:
        from tests.oci import OCI_MANIFEST, push_image
        pulled, _ = push_image(c, "race/app", "old-pulled", layers=1, layer_size=16)
        repushed, body = push_image(c, "race/app", "old-repushed", layers=1, layer_size=16)
        other, _ = push_image(c, "race/app", "old-other", layers=1, layer_size=16)
        server = registry.shards[0]
        runner = server.lifecycle.retention
        original = runner._apply

        async def apply_after_traffic(repo: str, actions: list) -> list:  # type: ignore[type-arg]
            await server.dispatch("manifest.get", {"repo": repo, "reference": "old-pulled", "head": False}, [])
            await server.dispatch("manifest.put", {
                "repo": repo, "digest": repushed, "media_type": OCI_MANIFEST, "tags": ["old-repushed"],
                "blobs": [], "children": [], "subject": None, "artifact_type": None, "annotations": None,
                "config": None, "pushed_by": "", "may_create": True, "may_update": True}, [body])
            return await original(repo, actions)

        runner._apply = apply_after_traffic  # type: ignore[method-assign]
        report = run_retention(c, dry_run=False)
        runner._apply = original  # type: ignore[method-assign]
        assert {a["reference"] for a in report["repositories"]["race/app"]} == {"old-other", other}
        assert report["shards"][0]["skipped"] == 4  # the tag and manifest of each, left alone
        assert exists(c, "race/app", "old-pulled") and exists(c, "race/app", "old-repushed")
        assert not exists(c, "race/app", other)
        # the next pass, with no traffic, deletes them
        run_retention(c, dry_run=False)
        assert not exists(c, "race/app", pulled) and not exists(c, "race/app", repushed)


def test_debug_clock_refuses_offsets_it_cannot_use(client: httpx.Client) -> None:
    """Not a number, infinite, too far or too deep: a 400 that moves no shard's clock."""
    for body in (b'{"offset": 1e400}', b'{"offset": NaN}', b'{"offset": -Infinity}', b'{"offset": 1' + b"0" * 400 + b"}",
                 b'{"offset": 4e9}', b'{"offset": "soon"}', b"{}", b"[" * 5000, b"\xff"):
        r = client.put("/v2/_shardreg/debug/clock", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body[:40], r.text)
        assert "offset" in r.json()["errors"][0]["message"]
    r = client.put("/v2/_shardreg/debug/clock", json={"offset": -3 * 365 * DAY})
    assert r.status_code == 200 and r.json() == {"offset": -3 * 365 * DAY}
    set_clock(client, 0)
