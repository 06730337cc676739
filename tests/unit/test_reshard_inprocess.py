"""Issue 12, in-process: the shard's ownership check (shard/routing.py), the move ops
(shard/ops/moves.py), the map, plan and lease ops (shard/ops/cluster.py) and the admin routes,
on real shard servers and the real gateway app in one process (tests/inprocess.py)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from common.clustermap import ClusterMap
from common.errors import ErrorCode, RegistryError
from common.ring import shard_for
from tests.inprocess import InProcessRegistry
from tests.oci import digest as sha256_of
from tests.oci import push_blob, push_image

pytestmark = pytest.mark.inprocess


@pytest.fixture
def registry() -> Any:
    with InProcessRegistry(shards=2) as reg:
        yield reg


def call(reg: InProcessRegistry, shard: int, op: str, args: dict[str, Any], frames: list[Any] | None = None) -> Any:
    return reg.run(reg.shards[shard].dispatch(op, args, frames or []))[0]


def error(reg: InProcessRegistry, shard: int, op: str, args: dict[str, Any]) -> RegistryError:
    with pytest.raises(RegistryError) as caught:
        call(reg, shard, op, args)
    return caught.value


def name_on(shard: int, old: int, new: int, moving: bool = True, prefix: str = "t/") -> str:
    for i in range(1000):
        name = f"{prefix}{i}"
        if shard_for(name, old) == shard and (shard_for(name, new) != shard) == moving:
            return name
    raise AssertionError("no such name")


def test_ownership_check_stable(registry: InProcessRegistry) -> None:
    own, other = name_on(0, 2, 2, moving=False), name_on(1, 2, 2, moving=False)
    with registry.client() as c:
        push_image(c, own, "v1")
    get = {"repo": own, "reference": "v1", "head": True}
    assert call(registry, 0, "manifest.get", {**get, "epoch": 1})["size"] > 0
    assert call(registry, 0, "manifest.get", get)["size"] > 0  # no epoch: served while never resized
    moved = error(registry, 0, "manifest.get", {**get, "repo": other, "epoch": 1})
    assert moved.code is ErrorCode.MOVED and moved.detail == {"shard": 1, "epoch": 1}
    stale = error(registry, 0, "manifest.get", {**get, "epoch": 0})
    assert stale.code is ErrorCode.STALE_MAP and stale.detail["view"]["shards"] == 2
    # a map is accepted only from a newer epoch; an older one is refused with the shard's own
    assert error(registry, 0, "cluster.map.put", {"view": ClusterMap.stable(0, 2).to_wire()}).code is ErrorCode.STALE_MAP
    # fan-outs must agree on the map too
    assert error(registry, 0, "repo.catalog", {"n": 10, "last": None, "epoch": 0}).code is ErrorCode.STALE_MAP
    # a new cluster's other shards get the home's map from a gateway: a shard never takes it from its config
    with registry.client() as c:
        push_image(c, other, "v1")
    assert registry.shards[1].routing.view == ClusterMap.stable(1, 2)


def test_one_move_by_hand(registry: InProcessRegistry) -> None:
    """A name's move, step by step: ASK for absent names, TRYAGAIN while importing, writes held
    by the fence and answered MOVED after the switch; the switch is refused after the fence's
    deadline; an older driver's token is refused."""
    repo = name_on(1, 2, 1)  # shrink 2→1: shard 1 drains into shard 0
    absent = name_on(1, 2, 1, prefix="absent/")
    with registry.client() as c:
        push_image(c, repo, "v1")
    view = ClusterMap.stable(1, 2).after(1)
    for shard in (0, 1):  # targets first, then sources
        call(registry, shard, "cluster.map.put", {"view": view.to_wire()})
    head = {"reference": "v1", "head": True, "epoch": 2}
    ask = error(registry, 1, "manifest.get", {**head, "repo": absent})
    assert ask.code is ErrorCode.ASK and ask.detail["shard"] == 0
    assert error(registry, 0, "manifest.get", {**head, "repo": repo}).code is ErrorCode.TRYAGAIN
    listed = call(registry, 1, "move.list", {"after": None, "n": 100, "token": 5})["names"]
    assert ["repo", repo] in [entry[:2] for entry in listed]
    move = {"kind": "repo", "name": repo, "token": 5}
    assert call(registry, 1, "move.start", {**move, "peer": 0})["state"] == "COPYING"
    assert call(registry, 0, "move.reopen", {**move, "peer": 1})["state"] == "IMPORTING"
    assert error(registry, 0, "manifest.get", {**head, "repo": repo, "via": "moved"}).code is ErrorCode.TRYAGAIN
    state = call(registry, 1, "move.state", move)
    for digest in state["links"]:
        assert call(registry, 0, "move.blob.link", {"repo": repo, "digest": digest, "token": 5})["linked"] is False
        data = registry.run(registry.shards[1].dispatch("blob.read", {"digest": digest, "offset": 0,
                                                                        "length": 1 << 20}, []))[1][0]
        call(registry, 0, "move.blob.write", {"repo": repo, "digest": digest, "token": 5, "offset": 0}, [data])
        call(registry, 0, "move.blob.commit", {"repo": repo, "digest": digest, "token": 5})
    manifests = registry.run(registry.shards[1].dispatch(
        "move.manifests", {"repo": repo, "digests": state["manifests"], "token": 5}, []))
    call(registry, 0, "move.apply", {**move, "tags": state["tags"], "manifests": state["manifests"],
                                     "links": state["links"], "added": manifests[0]["records"], "records": {}},
         manifests[1])
    assert call(registry, 0, "move.state", move)["tags"] == state["tags"]
    assert error(registry, 1, "move.start", {**move, "token": 4}).code is ErrorCode.DENIED  # an older driver

    async def fenced_write() -> tuple[float, RegistryError | None]:
        server = registry.shards[1]
        await server.dispatch("move.fence", {**move, "budget": 0.8}, [])
        write = asyncio.ensure_future(server.dispatch("manifest.delete", {"repo": repo, "reference": "nope",
                                                                          "epoch": 2}, []))
        await asyncio.sleep(0.2)
        held = not write.done()
        await registry.shards[0].dispatch("move.activate", move, [])
        await server.dispatch("move.switch", move, [])
        try:
            await write
        except RegistryError as exc:
            return held, exc
        return held, None

    held, outcome = registry.run(fenced_write())
    assert held and outcome is not None and outcome.code is ErrorCode.MOVED and outcome.detail["shard"] == 0
    assert call(registry, 0, "move.done", move)["state"] == "DONE"
    assert call(registry, 0, "manifest.get", {**head, "repo": repo, "via": "moved"})["size"] > 0
    assert error(registry, 1, "manifest.get", {**head, "repo": repo}).code is ErrorCode.MOVED

    other = name_on(1, 2, 1, prefix="late/")
    with registry.client() as c:
        push_image(c, other, "v1")  # through the gateway during the transition: the source still owns it

    async def late_switch() -> RegistryError:
        server = registry.shards[1]
        moving = {"kind": "repo", "name": other, "token": 5}
        await server.dispatch("move.start", {**moving, "peer": 0}, [])
        await server.dispatch("move.fence", {**moving, "budget": 0.8}, [])
        await asyncio.sleep(1.1)  # past the fence's own deadline: the source refuses the switch
        try:
            await server.dispatch("move.switch", moving, [])
        except RegistryError as exc:
            return exc
        raise AssertionError("switched after the fence's deadline")

    assert registry.run(late_switch()).code is ErrorCode.TRYAGAIN


def test_shrink_through_the_admin_routes(registry: InProcessRegistry) -> None:
    repos = [f"shrink/r{i}" for i in range(12)]
    moving = name_on(1, 2, 1, prefix="shrink/upload")
    with registry.client() as c:
        images = {repo: push_image(c, repo, "v1")[1] for repo in repos}
        push_image(c, moving, "v1")
        # an upload in progress (between two PATCHes) when its repository switches owner
        upload = c.post(f"/v2/{moving}/blobs/uploads/").headers["Location"]
        assert c.patch(upload, content=b"x" * 100, headers={"Content-Type": "application/octet-stream"}
                       ).status_code == 202
        assert c.post("/v2/_shardreg/cluster/resize", json={"shards": 0}).status_code == 400
        assert c.post("/v2/_shardreg/cluster/resize", json={"shards": "2"}).status_code == 400
        assert c.post("/v2/_shardreg/cluster/resize", json={"shards": 2, "maxMbps": -1}).status_code == 400
        assert c.post("/v2/_shardreg/cluster/resize", content=b"[").status_code == 400
        assert c.post("/v2/_shardreg/cluster/resize", content=b"[" * 5000).status_code == 400  # not a RecursionError
        same = c.post("/v2/_shardreg/cluster/resize", json={"shards": 2})
        assert same.status_code == 200 and same.json()["resize"] is None
        r = c.post("/v2/_shardreg/cluster/resize/abort")
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "NO_RESIZE"
        r = c.post("/v2/_shardreg/cluster/resize", json={"shards": 1})
        assert r.status_code == 202, r.text
        assert set(r.json()) >= {"epoch", "phase", "shards", "from", "to", "resize", "driver", "progress",
                                 "shardStates", "errors"}
        for _ in range(300):
            status = c.get("/v2/_shardreg/cluster/status").json()
            if status["resize"]["state"] == "done":
                break
            registry.run(asyncio.sleep(0.1))
        assert status["phase"] == "stable" and status["shards"] == 1 and status["epoch"] == 3
        assert status["progress"]["names"]["done"] == sum(shard_for(r, 2) == 1 for r in [*repos, moving])
        for repo, body in images.items():
            r = c.get(f"/v2/{repo}/manifests/v1")
            assert r.status_code == 200 and r.content == body
        assert c.get("/v2/_catalog").json()["repositories"] == sorted([*repos, moving])
        push_image(c, repos[0], "after")  # writes go to the new owner
        # the upload was refused cleanly: 404 BLOB_UPLOAD_UNKNOWN (clients restart that blob), counted
        r = c.patch(upload, content=b"y" * 100, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", r.text
        assert status["progress"]["uploadsRefused"] == 1
        push_image(c, moving, "again")
    assert all(registry.shards[0].routing.lists(r) for r in repos)
    assert not any(registry.shards[1].routing.lists(r) for r in repos)


def test_abort_before_anything_switched_rolls_back(registry: InProcessRegistry) -> None:
    """An abort noticed before any name switched: the old count comes back at a new epoch, every
    repository where it was; a resize can begin again afterwards."""
    repos = [f"abort/r{i}" for i in range(6)]
    with registry.client() as c:
        images = {repo: push_image(c, repo, "v1")[1] for repo in repos}
    begin = {"shards": 1, "max_mbps": None, "id": "rtest"}
    call(registry, 0, "cluster.plan.begin", begin)
    call(registry, 0, "cluster.plan.update", {"token": -1, "changes": {"state": "aborting"}})
    registry.app.state.driver.kick.set()  # type: ignore[attr-defined]
    with registry.client() as c:
        for _ in range(300):
            status = c.get("/v2/_shardreg/cluster/status").json()
            if status["resize"]["state"] == "aborted":
                break
            registry.run(asyncio.sleep(0.1))
        assert status["resize"]["state"] == "aborted" and status["phase"] == "stable"
        assert status["shards"] == 2 and status["epoch"] == 3
        for repo, body in images.items():
            r = c.get(f"/v2/{repo}/manifests/v1")
            assert r.status_code == 200 and r.content == body
        assert c.post("/v2/_shardreg/cluster/resize", json={"shards": 1}).status_code == 202



def test_upload_started_while_the_transition_view_arrives(registry: InProcessRegistry, monkeypatch) -> None:
    """The bench's closing-PUT 404 with ``uploadsRefused`` 0: an upload of a new (absent) moving
    repository, admitted by the source under the stable map, whose record was written after the
    transition view was installed. Installing the view makes the repositories of the uploads it
    finds present (so they move with them); this one was left out, unlisted, and its PUT was ASKed
    to the target, which answered 404. Now its start is refused (TRYAGAIN: the gateway retries and
    is ASKed to the target) and the upload, begun through the gateway at that moment, completes."""
    repo = name_on(1, 2, 1, prefix="race/")  # shrink 2→1: shard 1 drains into shard 0
    blobs = registry.shards[1].service.blobs
    opened = blobs.open_upload

    def slow_open(*args: Any) -> Any:  # the start is admitted, then the view arrives before its record
        time.sleep(0.3)
        return opened(*args)

    for shard in (0, 1):  # the cluster's first map (a gateway's first request installs it)
        call(registry, shard, "cluster.map.put", {"view": ClusterMap.stable(1, 2).to_wire()})
    monkeypatch.setattr(blobs, "open_upload", slow_open)
    view = ClusterMap.stable(1, 2).after(1)

    async def race() -> Any:
        start = asyncio.ensure_future(registry.shards[1].dispatch(
            "upload.start", {"repo": repo, "algorithm": "sha256", "user": "", "epoch": 1}, []))
        await asyncio.sleep(0.05)
        for shard in (0, 1):  # targets first, then sources (as the driver does)
            await registry.shards[shard].dispatch("cluster.map.put", {"view": view.to_wire()}, [])
        try:
            return (await start)[0]
        except RegistryError as exc:
            return exc

    outcome = registry.run(race())
    source = registry.shards[1].service.meta
    present = source.read(lambda txn: source.repo_exists(txn, repo))
    # either refused (the client's retry goes to the target), or left where the move finds it
    assert isinstance(outcome, RegistryError) and outcome.code is ErrorCode.TRYAGAIN or present, outcome
    assert not source.read(lambda txn: [u for _, u in source.uploads(txn) if u["repo"] == repo])
    blob = b"a blob pushed while the map changes"
    with registry.client() as c:
        assert push_blob(c, repo, blob) == sha256_of(blob)  # (the gateway's map is still the old one)
        assert c.head(f"/v2/{repo}/blobs/{sha256_of(blob)}").status_code == 200



def test_upload_begun_before_the_transition_on_a_new_repository(registry: InProcessRegistry) -> None:
    """An upload begun (and recorded) on the source under the old map, for a repository that holds
    nothing yet: installing the transition view makes that repository present there, so the
    upload's PUT is served by the source (no ASK to a target that does not know it)."""
    repo = name_on(1, 2, 1, prefix="fresh/")  # shrink 2→1: shard 1 drains into shard 0
    blob = b"a blob begun before the resize"
    with registry.client() as c:
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        view = ClusterMap.stable(1, 2).after(1)
        for shard in (0, 1):  # targets first, then sources (as the driver does)
            call(registry, shard, "cluster.map.put", {"view": view.to_wire()})
        r = c.put(r.headers["Location"], params={"digest": sha256_of(blob)}, content=blob,
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        assert ["repo", repo] in [e[:2] for e in call(registry, 1, "move.list", {"after": None, "n": 100, "token": 1})["names"]]


def test_bytes_left_per_shard(registry: InProcessRegistry) -> None:
    """The status document's per-shard ``bytesLeft`` (and the top-level ``bytes.left`` in a
    transition) is the linked bytes of the repositories a source still has to move out; they
    become ``moved`` in the shard's backlog (``shardreg_reshard_bytes{state}``) once switched."""
    repo, other = name_on(1, 2, 1, prefix="bytes/"), name_on(1, 2, 1, prefix="bytes2/")
    with registry.client() as c:
        _, body = push_image(c, repo, "v1", layers=2, layer_size=3000)
        push_image(c, other, "v1", layers=1, layer_size=500)
        manifest = json.loads(body)
        size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
        other_size = sum(s for s in call(registry, 1, "move.state", {"kind": "repo", "name": other,
                                                                       "token": 1})["links"].values())
        assert c.get("/v2/_shardreg/cluster/status").json()["shardStates"][1]["bytesLeft"] == 0  # stable
        view = ClusterMap.stable(1, 2).after(1)
        for shard in (0, 1):
            call(registry, shard, "cluster.map.put", {"view": view.to_wire()})
        status = c.get("/v2/_shardreg/cluster/status").json()
        assert [s["bytesLeft"] for s in status["shardStates"]] == [0, size + other_size]
        assert status["progress"]["bytes"]["left"] == size + other_size
        assert registry.shards[1].routing.backlog() == {"names": 2, "left": size + other_size, "moved": 0}
        move = {"kind": "repo", "name": other, "token": 1}
        call(registry, 1, "move.start", {**move, "peer": 0})
        call(registry, 1, "move.fence", {**move, "budget": 0.8})
        call(registry, 1, "move.switch", move)
        assert registry.shards[1].routing.backlog() == {"names": 1, "left": size, "moved": other_size}
        assert c.get("/v2/_shardreg/cluster/status").json()["shardStates"][1]["bytesLeft"] == size
