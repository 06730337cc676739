"""A full disk on a shard, with real files and LMDB under a real file size limit (RLIMIT_FSIZE,
lowered in this process for the length of one block and restored after; Python ignores
SIGXFSZ, so a write past the limit fails with EFBIG as a write on a full disk fails with ENOSPC)."""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.errors import ErrorCode
from shard.diskfull import DiskState, is_storage_full, storage_full
from shard.hooks import Hooks, Pushed
from shard.searchstore import SearchStore


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_full_errors_are_recognised_and_become_507() -> None:
    for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        exc = OSError(code, "x")
        assert is_storage_full(exc)
        error = storage_full(exc)
        assert error.code is ErrorCode.INSUFFICIENT_STORAGE and error.status == 507
        assert "storage is full" in error.message
    assert not is_storage_full(OSError(errno.EACCES, "denied"))
    assert not is_storage_full(ValueError("no"))


def test_lmdb_write_at_the_limit_is_reported_as_storage_full(tmp_path: Path) -> None:
    store = SearchStore(tmp_path / "search")
    size = (tmp_path / "search" / "data.mdb").stat().st_size
    try:
        with file_size_limit(size), pytest.raises(OSError) as caught:
            store.write(lambda txn: [store.put(txn, "stats", f"k{i}".encode(), {"downloads": i, "last": 0.0})
                                     for i in range(2000)])
        assert is_storage_full(caught.value)
    finally:
        store.close()


def test_a_push_hook_on_a_full_disk_fails_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Search metadata is best-effort (shard/hooks.py): the manifest is committed; its summary is not
    recorded, which is logged in one line without a traceback and counted."""
    store = SearchStore(tmp_path / "search")
    size = (tmp_path / "search" / "data.mdb").stat().st_size

    async def record(event: Pushed) -> None:
        await store.write_async(lambda txn: [store.record_push(txn, event.repo, f"sha256:{i:064x}", event.tags,
                                                               0.0, event.pushed_by) for i in range(2000)])

    hooks = Hooks(on_push=[record])
    try:
        with caplog.at_level(logging.WARNING, "shardreg.shard.hooks"), file_size_limit(size):
            asyncio.run(hooks.pushed(Pushed(repo="r", digest="sha256:" + "0" * 64, tags=["v1"], pushed_by="ann")))
    finally:
        store.close()
    assert hooks.failures == 1
    records = [r for r in caplog.records if r.name == "shardreg.shard.hooks"]
    assert len(records) == 1 and "storage full" in records[0].getMessage()
    assert records[0].exc_info is None


def test_disk_state_reports_a_recent_refusal() -> None:
    state = DiskState()
    assert state.recently_full() is None
    state.note_full("File too large")
    assert state.recently_full() == "File too large"
