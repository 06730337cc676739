"""``upload.chunk``: a small body sent whole with its PATCH or PUT — begin, write, end and (given a
digest) commit in one op, each step with the checks its own op makes (issue 17: round trips per
small blob 4 → 1). On a real shard service with real files, and through the real gateway app."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from shard.ops.uploads import UploadOps
from shard.service import ShardService
from tests.inprocess import InProcessRegistry
from tests.oci import push_image


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_with_upload(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        service = ShardService(tmp_path, 0, 1, durable=False)
        ops = UploadOps(service)
        uuid = (await ops.start({"repo": "r"}, []))[0]["uuid"]
        try:
            await scenario(service, ops, uuid)
        finally:
            service.close()

    asyncio.run(main())


def test_a_whole_body_with_its_digest_is_stored_and_linked(tmp_path: Path) -> None:
    async def scenario(service: ShardService, ops: UploadOps, uuid: str) -> None:
        data = os.urandom(300_000)
        answer = await ops.chunk({"repo": "r", "uuid": uuid, "start": None, "digest": sha(data)}, [data])
        assert answer[0]["offset"] == len(data)
        assert service.blobs.path(sha(data)).read_bytes() == data
        assert service.meta.read(lambda txn: service.meta.is_linked(txn, "r", sha(data)))
        assert service.uploads.get(uuid) is None  # committed: the upload is gone

    run_with_upload(tmp_path, scenario)


def test_chunks_without_a_digest_append_and_a_later_commit_sees_them_all(tmp_path: Path) -> None:
    async def scenario(service: ShardService, ops: UploadOps, uuid: str) -> None:
        first, second = os.urandom(1000), os.urandom(2000)
        assert (await ops.chunk({"repo": "r", "uuid": uuid, "start": 0}, [first]))[0]["offset"] == 1000
        assert (await ops.chunk({"repo": "r", "uuid": uuid, "start": 1000}, [second]))[0]["offset"] == 3000
        assert (await ops.chunk({"repo": "r", "uuid": uuid, "start": None}, []))[0]["offset"] == 3000
        await ops.commit({"repo": "r", "uuid": uuid, "digest": sha(first + second)}, [])
        assert service.blobs.path(sha(first + second)).read_bytes() == first + second

    run_with_upload(tmp_path, scenario)


def test_a_refused_chunk_leaves_the_upload_as_it_was(tmp_path: Path) -> None:
    async def scenario(service: ShardService, ops: UploadOps, uuid: str) -> None:
        kept = os.urandom(500)
        await ops.chunk({"repo": "r", "uuid": uuid, "start": 0}, [kept])
        with pytest.raises(RegistryError) as wrong_start:
            await ops.chunk({"repo": "r", "uuid": uuid, "start": 0}, [b"again"])
        assert wrong_start.value.code is ErrorCode.RANGE_INVALID
        data = os.urandom(100)
        with pytest.raises(RegistryError) as wrong_digest:
            await ops.chunk({"repo": "r", "uuid": uuid, "start": 500, "digest": sha(b"something else")}, [data])
        assert wrong_digest.value.code is ErrorCode.DIGEST_INVALID
        # as after a PUT whose digest is wrong: the bytes are in, the upload is still there, idle
        status = (await ops.status({"repo": "r", "uuid": uuid}, []))[0]
        assert status["offset"] == 600 and not service.uploads.get(uuid).busy  # type: ignore[union-attr]
        # and recorded so (a restart keeps the upload where the client was told it is)
        assert service.meta.read(lambda txn: service.meta.get_upload(txn, uuid))["offset"] == 600
        await ops.commit({"repo": "r", "uuid": uuid, "digest": sha(kept + data)}, [])

    run_with_upload(tmp_path, scenario)


def test_a_failed_write_undoes_the_chunk(tmp_path: Path) -> None:
    async def scenario(service: ShardService, ops: UploadOps, uuid: str) -> None:
        await ops.chunk({"repo": "r", "uuid": uuid, "start": 0}, [b"x" * 100])
        session: Any = service.uploads.get(uuid)
        writing = session.file.write

        def full_disk(*args: Any) -> Any:
            raise OSError(28, "No space left on device")

        session.file.write = full_disk
        with pytest.raises(RegistryError):
            await ops.chunk({"repo": "r", "uuid": uuid, "start": 100}, [b"y" * 100])
        session.file.write = writing
        assert (await ops.status({"repo": "r", "uuid": uuid}, []))[0]["offset"] == 100
        assert (await ops.chunk({"repo": "r", "uuid": uuid, "start": 100}, [b"z" * 10]))[0]["offset"] == 110

    run_with_upload(tmp_path, scenario)


def test_a_push_of_small_blobs_sends_one_op_per_closing_request() -> None:
    with InProcessRegistry(shards=1) as reg, reg.client() as c:
        seen: Counter[str] = Counter()
        server: Any = reg.shards[0]
        original_dispatch = server.dispatch

        async def counting(op: str, args: Any, frames: Any) -> Any:
            seen[op] += 1
            return await original_dispatch(op, args, frames)

        server.dispatch = counting
        try:
            push_image(c, "chunk/app", "v1", layers=2, layer_size=200_000)  # config + 2 layers: POST + PUT each
        finally:
            server.dispatch = original_dispatch
        assert seen[Op.UPLOAD_CHUNK.value] == 3
        assert seen[Op.UPLOAD_BEGIN.value] == seen[Op.UPLOAD_END.value] == seen[Op.UPLOAD_COMMIT.value] == 0
