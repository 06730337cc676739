"""A shard server or shard client that is dropped without close() is collected without hanging.

pyzmq's own end of an unclosed context (``destroy`` then ``term``) waits for ever when the context,
its sockets and their owner are garbage in one cycle: the collecting thread hung in the suite once.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path

import zmq

from common.config import Config, StorageConfig
from common.zmqctx import OwnedContext
from gateway.shard_client import ShardClient
from shard.server import ShardServer


def _collect_in_thread(timeout: float = 30.0) -> bool:
    """True if a full collection finished (a hang in ``term()`` blocks the collecting thread for ever;
    the thread is a daemon, so a failing run still ends)."""
    thread = threading.Thread(target=gc.collect, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def _config(root: Path) -> Config:
    return Config(storage=StorageConfig(root_directory=root, commit=False))


def test_an_unclosed_shard_server_in_a_cycle_is_collected_with_its_sockets(tmp_path):
    def drop() -> tuple[weakref.ref, list[weakref.ref]]:
        server = ShardServer(_config(tmp_path), 0)
        server.cycle = server  # type: ignore[attr-defined]  # as bound handlers make anyway
        return weakref.ref(server), [weakref.ref(server.sock)]

    gc.collect()
    gc.disable()
    try:
        ref, sockets = drop()
        assert ref() is not None
        assert _collect_in_thread(), "collecting the server hung (a context ended before its sockets)"
    finally:
        gc.enable()
    assert ref() is None
    assert all(sock() is None or sock().closed for sock in sockets)


def test_an_unclosed_shard_client_in_a_cycle_is_collected_with_its_sockets(tmp_path):
    async def drop() -> tuple[weakref.ref, list[weakref.ref]]:
        client = ShardClient(_config(tmp_path))
        client.cycle = client  # type: ignore[attr-defined]
        await asyncio.sleep(0)  # the watchers make their monitor sockets
        for task in client.readers:
            task.cancel()
        return weakref.ref(client), [weakref.ref(sock) for sock in client.sockets]

    gc.collect()
    gc.disable()
    try:
        ref, sockets = asyncio.run(drop())
        assert sockets
        assert _collect_in_thread(), "collecting the client hung"
    finally:
        gc.enable()
    assert ref() is None
    assert all(sock() is None or sock().closed for sock in sockets)


def test_close_ends_sockets_then_the_context_once():
    class Owner:
        pass

    owner = Owner()
    owned = OwnedContext(owner)
    made = owned.socket(zmq.PAIR)
    other = owned.track(owned.ctx.socket(zmq.PAIR))
    assert not owned.closed
    owned.close()
    assert owned.closed and made.closed and other.closed and owned.ctx.closed
    owned.close()  # a second close does nothing
