"""The shard's side of spooled PATCH bodies (issue 17, push-large): a real shard service, real files.

A gateway on the shard's filesystem writes a PATCH body to ``spool/<uuid>.<start>`` and announces
it in pieces (``upload.write`` with ``spooled``). The shard hashes each piece, adopts the file at
the PATCH's end when the PATCH starts the upload, or copies it in otherwise; whatever is wrong
with the file (missing, short, longer than announced, a link, a FIFO) fails that PATCH and leaves
the upload as it was. The end-to-end paths are in tests/integration/test_upload_spool.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest

from common.errors import ErrorCode, RegistryError
from shard.blobstore import BlobStore, SpoolError
from shard.ops.uploads import UploadOps
from shard.service import ShardService


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Patch:
    """One PATCH sent the spool way, as the gateway sends it."""

    def __init__(self, service: ShardService, repo: str, uuid: str) -> None:
        self.service, self.ops, self.repo, self.uuid = service, UploadOps(service), repo, uuid
        self.answers: list[Any] = []

    async def begin(self) -> int:
        self.start = (await self.ops.begin({"repo": self.repo, "uuid": self.uuid, "start": None}, []))[0]["offset"]
        self.offset = self.start
        self.path = self.service.blobs.spool_path(self.uuid, self.start)
        return self.start

    def write_file(self, data: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(data)

    def announce(self, length: int, frames: list[bytes] | None = None) -> None:
        self.service.uploads.enqueue_write({"repo": self.repo, "uuid": self.uuid, "offset": self.offset,
                                            "spooled": length}, frames or [], self.answers.append)
        self.offset += length

    async def end(self, length: int) -> int:
        return (await self.ops.end({"repo": self.repo, "uuid": self.uuid, "length": length}, []))[0]["offset"]


async def _start(service: ShardService, repo: str) -> str:
    return (await UploadOps(service).start({"repo": repo}, []))[0]["uuid"]


async def _new_upload(root: Path) -> tuple[ShardService, str]:
    """A shard service and an upload of repository ``r`` on it."""
    service = ShardService(root, 0, 1, durable=False)
    return service, await _start(service, "r")


async def _begun(service: ShardService, uuid: str) -> Patch:
    """A PATCH of that upload, begun."""
    patch = Patch(service, "r", uuid)
    await patch.begin()
    return patch


def test_a_first_patch_is_adopted_a_later_one_copied(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path)
        first, second = os.urandom(3_000_000), os.urandom(1_500_001)
        patch = await _begun(service, uuid)
        assert patch.start == 0
        patch.write_file(first[:2_000_000])
        patch.announce(2_000_000)  # announced while the gateway still writes the rest
        patch.write_file(first[2_000_000:])
        patch.announce(1_000_000)
        inode = os.stat(patch.path).st_ino
        assert await patch.end(len(first)) == len(first)
        assert all(isinstance(a, tuple) for a in patch.answers)
        upload = service.blobs.upload_path(uuid)
        assert os.stat(upload).st_ino == inode and not patch.path.exists()  # adopted: renamed, not copied
        patch = await _begun(service, uuid)
        assert patch.start == len(first)
        patch.write_file(second)
        patch.announce(len(second))
        assert await patch.end(len(second)) == len(first) + len(second)
        assert os.stat(upload).st_ino == inode and not patch.path.exists()  # copied in, spool file removed
        assert upload.read_bytes() == first + second
        result = (await UploadOps(service).commit({"repo": "r", "uuid": uuid, "digest": sha(first + second)}, []))[0]
        assert result["size"] == len(first) + len(second)
        assert service.blobs.path(sha(first + second)).read_bytes() == first + second
        service.close()

    asyncio.run(scenario())


def _plant_link(patch: Patch, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 100)
    patch.path.symlink_to(secret)


def _plant_fifo(patch: Patch, tmp_path: Path) -> None:
    os.mkfifo(patch.path)


@pytest.mark.parametrize("damage", ["missing", "short", "longer", "link", "fifo"])
def test_a_spool_file_that_is_not_what_was_announced_fails_the_patch(tmp_path: Path, damage: str) -> None:
    """The PATCH answers an error, the upload stays at its old size and digest, no file stays behind."""
    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path / "shard")
        before = os.urandom(1000)
        patch = await _begun(service, uuid)
        patch.write_file(before)
        patch.announce(len(before))
        await patch.end(len(before))
        patch = await _begun(service, uuid)
        started = time.monotonic()
        if damage == "short":
            patch.write_file(b"x" * 50)
        elif damage == "longer":
            patch.write_file(b"x" * 150)
        elif damage == "link":
            _plant_link(patch, tmp_path)
        elif damage == "fifo":
            _plant_fifo(patch, tmp_path)
        patch.announce(100)
        with pytest.raises(RegistryError) as info:
            await patch.end(100)
        assert time.monotonic() - started < 5  # a FIFO is not waited on
        if damage == "longer":  # the bytes announced were there: only the adopt/copy end can tell
            assert info.value.code in (ErrorCode.BLOB_UPLOAD_INVALID, ErrorCode.SIZE_INVALID)
        else:
            assert info.value.code is ErrorCode.BLOB_UPLOAD_INVALID
            assert isinstance(patch.answers[0], RegistryError)
        status = (await UploadOps(service).status({"repo": "r", "uuid": uuid}, []))[0]
        assert status["offset"] == len(before)
        assert service.blobs.upload_path(uuid).read_bytes() == before
        assert not os.path.lexists(patch.path)
        if damage == "link":
            assert (tmp_path / "secret").read_bytes() == b"s" * 100
        # and the upload goes on
        patch = await _begun(service, uuid)
        patch.write_file(b"after")
        patch.announce(5)
        await patch.end(5)
        await UploadOps(service).commit({"repo": "r", "uuid": uuid, "digest": sha(before + b"after")}, [])
        service.close()

    asyncio.run(scenario())


def test_a_patch_sends_its_bytes_one_way(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path)
        patch = await _begun(service, uuid)
        written: list[Any] = []
        service.uploads.enqueue_write({"repo": "r", "uuid": uuid, "offset": 0}, [b"abc"], written.append)
        patch.offset = 3
        patch.announce(10)  # spooled after frames in one PATCH: refused
        patch.offset = 3
        patch.announce(0)  # and a spooled piece must have a length, and no frames
        service.uploads.enqueue_write({"repo": "r", "uuid": uuid, "offset": 3, "spooled": 5}, [b"x"],
                                      patch.answers.append)
        await service.uploads.drain(service.uploads.sessions[uuid])
        assert isinstance(written[0], tuple)
        assert [a.code for a in patch.answers] == [ErrorCode.BLOB_UPLOAD_INVALID] * 3
        assert await patch.end(3) == 3
        service.close()

    asyncio.run(scenario())


def test_an_undone_patch_removes_its_spool_file_and_stale_ones_are_swept(tmp_path: Path) -> None:
    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path)
        patch = await _begun(service, uuid)
        patch.write_file(b"y" * 1000)
        patch.announce(1000)
        await UploadOps(service).abort({"repo": "r", "uuid": uuid}, [])
        assert not patch.path.exists()
        assert (await UploadOps(service).status({"repo": "r", "uuid": uuid}, []))[0]["offset"] == 0
        service.close()

    asyncio.run(scenario())
    store = BlobStore(tmp_path / "other")
    old, fresh = store.spool_path("a", 0), store.spool_path("b", 0)
    old.write_bytes(b"1")
    fresh.write_bytes(b"2")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert store.sweep_spool() == 1
    assert not old.exists() and fresh.exists()


def test_adopt_refuses_a_file_of_another_size(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    upload = store.open_upload("u", "sha256")
    spool = store.spool_path("u", 0)
    spool.write_bytes(b"z" * 10)
    assert upload.take_spooled(spool, 0, 8, copy=False) == 8
    with pytest.raises(SpoolError):
        upload.adopt(spool)
    assert spool.exists() and store.upload_path("u").read_bytes() == b""


def test_a_dead_patchs_spool_file_does_not_block_the_next_one(tmp_path: Path) -> None:
    """A gateway killed before announcing anything leaves its spool file; the next PATCH from the
    same offset (which must create that file) finds it removed by its upload.begin."""
    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path)
        service.blobs.spool_path(uuid, 0).write_bytes(b"half a body from a dead gateway")
        patch = await _begun(service, uuid)
        assert not patch.path.exists()
        with open(os.open(patch.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            fh.write(b"whole")
        patch.announce(5)
        assert await patch.end(5) == 5
        await UploadOps(service).commit({"repo": "r", "uuid": uuid, "digest": sha(b"whole")}, [])
        service.close()

    asyncio.run(scenario())


def test_two_patches_beginning_at_once_do_not_both_begin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's retry and its dead PATCH (whose gateway has not noticed yet) may begin together;
    ``upload.begin`` awaits the disk (the dead PATCH's spool file) after its checks, so without the
    claim before that await both began, and the dead one's abort undid the retry's bytes."""
    monkeypatch.setattr("shard.ops.uploads.BUSY_WAIT", 0.2)

    async def scenario() -> None:
        service, uuid = await _new_upload(tmp_path)
        removing = service.blobs.remove_spool

        def slow_remove(*args: Any) -> Any:
            time.sleep(0.05)  # in the I/O pool: the other begin runs meanwhile
            return removing(*args)

        service.blobs.remove_spool = slow_remove  # type: ignore[method-assign]
        first, second = Patch(service, "r", uuid), Patch(service, "r", uuid)
        outcomes = await asyncio.gather(first.begin(), second.begin(), return_exceptions=True)
        assert outcomes[0] == 0
        assert isinstance(outcomes[1], RegistryError) and outcomes[1].code is ErrorCode.RANGE_INVALID
        first.write_file(b"x" * 2_000_000)
        first.announce(2_000_000)
        assert await first.end(2_000_000) == 2_000_000
        service.close()

    asyncio.run(scenario())
