"""The in-process registry (tests/inprocess.py) is a whole registry and starts no process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tests.inprocess import InProcessRegistry
from tests.oci import digest


def child_processes() -> set[int]:
    return {int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()}


def test_starts_no_process_and_serves_streamed_uploads() -> None:
    before = child_processes()
    with InProcessRegistry(shards=2) as registry, registry.client() as client:
        assert child_processes() == before
        assert all((registry.root / "data" / f"shard-{i}").is_dir() for i in range(2))  # real shard data

        data = os.urandom(300_000)

        def chunks() -> Iterator[bytes]:  # no Content-Length: a chunked request body
            for start in range(0, len(data), 65536):
                yield data[start:start + 65536]

        location = client.post("/v2/inprocess/app/blobs/uploads/").headers["Location"]
        r = client.patch(location, content=chunks())
        assert r.status_code == 202, r.text
        r = client.put(r.headers["Location"], params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        head = client.head(f"/v2/inprocess/app/blobs/{digest(data)}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["Content-Length"] == str(len(data))
        assert client.get(f"/v2/inprocess/app/blobs/{digest(data)}").content == data
    assert not registry.root.exists()  # the temporary directory is removed
