"""``gateway.sendfile.send_region``: a file region sent on a real loopback TCP connection by one
blocking ``sendfile`` in a pool thread (no selector registration at all), or, with every thread
busy, with the socket registered with the selector once however many times the slow peer drains
it; either way the transport reads and writes again afterwards, a peer that leaves is an error, a
short file a short count; a peer that takes nothing ends the region, and so does cancelling it."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway import sendfile
from gateway.sendfile import send_region

MiB = 1 << 20


@asynccontextmanager
async def connection() -> AsyncIterator[tuple[asyncio.StreamWriter, asyncio.StreamReader, socket.socket]]:
    """(the server side's writer and reader, a blocking client socket with a small receive buffer)."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # the peer drains it in small bites
    client.connect(server.sockets[0].getsockname())
    reader, writer = await accepted.get()
    try:
        yield writer, reader, client
    finally:
        client.close()
        writer.close()
        server.close()
        await server.wait_closed()


def in_a_loop(test: Callable[..., Coroutine[None, None, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no async plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


#: Both ways a region goes: a pool thread, or (every thread busy) the selector.
WAYS = pytest.mark.parametrize("threads", [sendfile.THREADS, 0], ids=["thread", "selector"], indirect=True)


@pytest.fixture
def threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sendfile, "THREADS", request.param)
    return int(request.param)


def read_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        piece = sock.recv(min(256 << 10, n - len(data)))
        if not piece:
            break
        data += piece
    return bytes(data)


@asynccontextmanager
async def region_under_way(tmp_path: Path) -> AsyncIterator[tuple[asyncio.StreamWriter, socket.socket, asyncio.Future[int],
                                                                Path]]:
    """A 32 MiB region being sent, of which the peer has read 1 MiB and then reads no more:
    (the server side's writer, the peer, the send, the file)."""
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(32 * MiB))
    loop = asyncio.get_running_loop()
    async with connection() as (writer, _reader, client):
        with open(blob, "rb", 0) as f:
            sending = asyncio.ensure_future(send_region(loop, writer.transport, f, 0, 32 * MiB))
            await asyncio.to_thread(read_exactly, client, 1 * MiB)
            try:
                yield writer, client, sending, blob
            finally:
                writer.transport.abort()  # the transport is the caller's to end (the server aborts the connection)


async def send_and_receive(writer: asyncio.StreamWriter, client: socket.socket, path: Path, size: int) -> bytes:
    """A new file of ``size`` random bytes sent whole as one region; what the peer received."""
    path.write_bytes(os.urandom(size))
    with open(path, "rb", 0) as f:
        receiving = asyncio.ensure_future(asyncio.to_thread(read_exactly, client, size))
        assert await send_region(asyncio.get_running_loop(), writer.transport, f, 0, size) == size
        got = await receiving
    assert got == path.read_bytes()
    return got


@WAYS
@in_a_loop
async def test_a_region_is_sent_whole_and_the_transport_works_after(tmp_path: Path, threads: int) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(24 * MiB))
    loop = asyncio.get_running_loop()
    registrations = 0
    add_writer = loop.add_writer

    def counting_add_writer(*args: object) -> None:
        nonlocal registrations
        registrations += 1
        add_writer(*args)  # type: ignore[arg-type]

    async with connection() as (writer, reader, client):
        writer.write(b"HEAD\n")  # written before the region: must go first
        setattr(loop, "add_writer", counting_add_writer)  # noqa: B010 - counted for this test
        try:
            with open(blob, "rb", 0) as f:
                receiving = asyncio.ensure_future(asyncio.to_thread(read_exactly, client, 5 + 20 * MiB))
                sent = await send_region(loop, writer.transport, f, 3 * MiB, 20 * MiB)
                position = f.tell()
            got = await receiving
        finally:
            setattr(loop, "add_writer", add_writer)  # noqa: B010
        assert sent == 20 * MiB
        want = blob.read_bytes()[3 * MiB:23 * MiB]
        assert got[:5] == b"HEAD\n" and hashlib.sha256(got[5:]).digest() == hashlib.sha256(want).digest()
        # in a thread none; on the selector one registration for the whole region, though a 64 KiB
        # receive buffer needed many wake-ups (asyncio's loop.sendfile registers again at each of them)
        assert registrations == (0 if threads else 1)
        assert position == 0  # the file's own position is left alone
        sock = writer.transport.get_extra_info("socket")
        assert not os.get_blocking(sock.fileno()) and sendfile._in_threads == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) == bytes(16)
        writer.write(b"after")  # the transport writes again ...
        await writer.drain()
        assert await asyncio.to_thread(read_exactly, client, 5) == b"after"
        client.sendall(b"ping\n")  # ... and reads again
        assert await asyncio.wait_for(reader.readline(), 5) == b"ping\n"


@WAYS
@in_a_loop
async def test_a_peer_that_leaves_mid_region_is_an_error(tmp_path: Path, threads: int) -> None:
    async with region_under_way(tmp_path) as (_writer, client, sending, _blob):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()  # a reset, with most of the region unsent
        with pytest.raises(OSError):
            await asyncio.wait_for(sending, 10)


@WAYS
@in_a_loop
async def test_a_file_shorter_than_the_region_gives_a_short_count(tmp_path: Path, threads: int) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 1000)
    loop = asyncio.get_running_loop()
    async with connection() as (writer, _reader, client):
        with open(blob, "rb", 0) as f:
            sent = await send_region(loop, writer.transport, f, 200, 5000)
        assert sent == 800
        assert await asyncio.to_thread(read_exactly, client, 800) == b"x" * 800


@WAYS
@in_a_loop
async def test_a_peer_that_takes_nothing_ends_the_region(tmp_path: Path, threads: int,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sendfile, "STALL_SECONDS", 1)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(32 * MiB))
    loop = asyncio.get_running_loop()
    async with connection() as (writer, _reader, _client):  # the client never reads
        with open(blob, "rb", 0) as f:
            with pytest.raises(TimeoutError, match="took nothing for 1 s"):
                await asyncio.wait_for(send_region(loop, writer.transport, f, 0, 32 * MiB), 10)
        assert sendfile._in_threads == 0
        writer.transport.abort()


@WAYS
@in_a_loop
async def test_a_cancelled_region_ends_before_the_transport_is_handed_back(tmp_path: Path, threads: int) -> None:
    async with region_under_way(tmp_path) as (writer, _client, sending, _blob):
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(sending, 10)
        fd = writer.transport.get_extra_info("socket").fileno()
        loop = asyncio.get_running_loop()
        assert sendfile._in_threads == 0 and loop._transports[fd] is writer.transport  # type: ignore[attr-defined]
        assert not os.get_blocking(fd)


@in_a_loop
async def test_a_transport_closed_mid_region_leaves_a_reused_descriptor_alone(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sendfile, "STALL_SECONDS", 1)
    async with region_under_way(tmp_path) as (writer, _client, sending, blob):
        fd = writer.transport.get_extra_info("socket").fileno()
        writer.transport.abort()  # e.g. the server going down: the descriptor is closed ...
        await asyncio.sleep(0.1)
        reused = os.open(blob, os.O_RDONLY)  # ... and its number taken by the next file opened
        try:
            assert reused == fd
            with pytest.raises(OSError):
                await asyncio.wait_for(sending, 10)
            assert os.get_blocking(reused)  # not made non-blocking by the region's end
            assert asyncio.get_running_loop()._transports.get(fd) is None  # type: ignore[attr-defined]
        finally:
            os.close(reused)


@in_a_loop
async def test_only_a_large_rest_of_a_region_goes_to_a_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[int] = []

    async def counting_in_thread(*args: Any) -> int:
        handed.append(1)
        return await in_thread(*args)

    in_thread = sendfile._in_thread
    monkeypatch.setattr(sendfile, "_in_thread", counting_in_thread)
    async with connection() as (writer, _reader, client):
        await send_and_receive(writer, client, tmp_path / "small", 8192)  # goes whole at once
        assert handed == []
        await send_and_receive(writer, client, tmp_path / "middle", 2 * MiB)  # a rest below THREAD_MIN
        assert handed == []
        await send_and_receive(writer, client, tmp_path / "big", 16 * MiB)  # the thread takes a large rest
        assert handed == [1]
