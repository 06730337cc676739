"""Uploads in progress are capped per user and per shard (429), and hold a descriptor only while written.

Issue 10, item 10 (the real-process half, with a low descriptor limit, is
tests/integration/test_upload_descriptors.py).
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator

import httpx
import pytest

from common.errors import ErrorCode, RegistryError
from shard.ops.uploads import UploadOps
from shard.service import ShardService
from tests.credentials import basic_header, write_htpasswd
from tests.inprocess import InProcessRegistry
from tests.oci import digest

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "carol": "carol-pw-3"}
PER_USER, PER_SHARD = 3, 7


def basic(user: str) -> dict[str, str]:
    return basic_header(user, USERS[user])


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    htpasswd = tmp_path_factory.mktemp("caps") / "htpasswd"
    write_htpasswd(htpasswd, USERS)
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}},
                       "accessControl": {"repositories": {"**": {
                           "policies": [{"users": list(USERS), "actions": ["read", "create", "update", "delete"]}],
                           "anonymousPolicy": ["read", "create"]}}}},
              "storage": {"maxUploads": PER_SHARD, "maxUploadsPerUser": PER_USER}}
    with InProcessRegistry(shards=1, config=config) as registry:
        yield registry


def _start(client: httpx.Client, repo: str) -> httpx.Response:
    return client.post(f"/v2/{repo}/blobs/uploads/")


def test_uploads_are_capped_per_user_and_per_shard(capped):
    clients = {u: capped.client(headers=basic(u)) for u in USERS}
    anonymous = capped.client()
    try:
        alice = [_start(clients["alice"], "caps/a") for _ in range(PER_USER)]
        assert [r.status_code for r in alice] == [202] * PER_USER
        r = _start(clients["alice"], "caps/a")
        assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS", r.text
        assert r.headers.get("Retry-After")
        # another user is not held back by alice's uploads
        assert [_start(clients["bob"], "caps/b").status_code for _ in range(PER_USER)] == [202] * PER_USER
        # anonymous uploads count against the shard's cap only
        assert _start(anonymous, "caps/anon").status_code == 202
        assert len({r.headers["Location"] for r in alice}) == PER_USER
        # the shard is full now (3 + 3 + 1): even carol, who has none, waits
        r = _start(clients["carol"], "caps/c")
        assert r.status_code == 429, r.text
        # a finished upload (committed) and a cancelled one give their places back
        data = os.urandom(1000)
        r = clients["alice"].put(alice[0].headers["Location"], params={"digest": digest(data)}, content=data)
        assert r.status_code == 201, r.text
        assert clients["alice"].delete(alice[1].headers["Location"]).status_code == 204
        assert _start(clients["carol"], "caps/c").status_code == 202
        assert _start(clients["alice"], "caps/a").status_code == 202
        # a monolithic push of a blob needs a place too, and gets it back at once
        r = clients["carol"].post("/v2/caps/c/blobs/uploads/", params={"digest": digest(b"m")}, content=b"m")
        assert r.status_code == 429, r.text
        assert clients["bob"].get("/v2/caps/b/blobs/uploads/" + alice[2].headers["Location"].rsplit("/", 1)[1]
                                  ).status_code == 404  # not bob's repository's upload
    finally:
        for c in (*clients.values(), anonymous):
            c.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_upload_holds_a_descriptor_only_while_a_patch_writes_it(tmp_path):
    async def scenario() -> None:
        service = ShardService(tmp_path, 0, 1, durable=False)
        ops = UploadOps(service)
        before = _fds()
        uuids = []
        for i in range(50):
            uuid = (await ops.start({"repo": "r", "algorithm": "sha256", "user": "u"}, []))[0]["uuid"]
            await ops.begin({"repo": "r", "uuid": uuid, "start": 0}, [])
            done: list = []
            service.uploads.enqueue_write({"repo": "r", "uuid": uuid, "offset": 0}, [b"part %d" % i], done.append)
            await ops.end({"repo": "r", "uuid": uuid, "length": len(b"part %d" % i)}, [])
            assert isinstance(done[0], tuple), done
            uuids.append(uuid)
        assert _fds() - before < 5, "50 idle uploads must not hold 50 descriptors"
        # one PATCH of many chunks opens the file once and keeps it until the PATCH ends
        uuid = uuids[0]
        session = service.uploads.get(uuid)
        assert session is not None and not session.file.is_open
        await ops.begin({"repo": "r", "uuid": uuid, "start": 6}, [])
        replies: list = []
        offset, chunk = 6, os.urandom(1024 * 1024)
        fds_seen = set()
        for _ in range(5):
            service.uploads.enqueue_write({"repo": "r", "uuid": uuid, "offset": offset}, [chunk], replies.append)
            offset += len(chunk)
            await service.uploads.drain(session)
            fds_seen.add(session.file.fd)
        assert len(fds_seen) == 1 and session.file.is_open
        await ops.end({"repo": "r", "uuid": uuid, "length": 5 * len(chunk)}, [])
        assert not session.file.is_open
        assert all(isinstance(r, tuple) for r in replies)
        result = (await ops.commit({"repo": "r", "uuid": uuid, "digest": digest(b"part 0" + chunk * 5)}, []))[0]
        assert result["size"] == 6 + 5 * len(chunk)
        service.close()

    asyncio.run(scenario())


def test_too_many_patches_writing_at_once_get_429(tmp_path):
    """At most half the descriptor limit of PATCHes may write at once (each may hold a file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = max(_fds() + 64, 256)

    async def scenario() -> None:
        service = ShardService(tmp_path, 0, 1, durable=False)
        ops = UploadOps(service)
        uuids = [(await ops.start({"repo": "r", "algorithm": "sha256", "user": ""}, []))[0]["uuid"]
                 for _ in range(limit // 2 + 1)]
        for uuid in uuids[:-1]:
            await ops.begin({"repo": "r", "uuid": uuid, "start": 0}, [])
        with pytest.raises(RegistryError) as refused:
            await ops.begin({"repo": "r", "uuid": uuids[-1], "start": 0}, [])
        assert refused.value.code == ErrorCode.TOOMANYREQUESTS
        await ops.end({"repo": "r", "uuid": uuids[0], "length": 0}, [])  # one ends: the next may write
        await ops.begin({"repo": "r", "uuid": uuids[-1], "start": 0}, [])
        service.close()

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        asyncio.run(scenario())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
