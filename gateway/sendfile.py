"""A region of a file sent on an asyncio socket transport with ``os.sendfile``.

asyncio's ``loop.sendfile`` unregisters the socket and registers it again at every wake-up: two
``epoll_ctl`` calls and the selector's bookkeeping in Python for every ~1.5 MiB the peer drains,
about forty times per 64 MiB blob. Here a region is offered to the socket once from the event loop
(a small one usually goes whole). What is left, from :data:`THREAD_MIN` on, is sent by one blocking
``sendfile`` in a thread of a small pool: the kernel waits for the peer to drain and goes on by
itself, and the event loop wakes once per region (docs/performance.md, "One sendfile per blob").
A smaller rest, or any rest with every thread busy, goes with the socket registered with the loop's
selector once (one wake-up per drain). Either way a peer that takes nothing for
:data:`STALL_SECONDS` ends the region with ``TimeoutError``. The hand-over of the socket is
asyncio's own (the same steps as its ``_sendfile_native``: the transport leaves the loop's table,
stops reading, and its buffer is drained first); where those internals are missing (another event
loop) ``loop.sendfile`` is used.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

#: Regions sent by a blocking ``sendfile`` at once per worker; more wait on the selector instead.
THREADS = 32
#: What is left of a region after the first call goes to a thread from this size on: below it, a few
#: wake-ups of the loop cost less than handing the region to a thread and back (measured, pull-small).
THREAD_MIN = 4 * 1024 * 1024
#: A region whose peer takes nothing for this long ends with ``TimeoutError``.
STALL_SECONDS = 120
_pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="sendfile")
_in_threads = 0


def _send_blocking(sock: socket.socket, source: int, offset: int, count: int) -> int:
    """Every byte of the region with blocking ``sendfile`` calls, in a pool thread."""
    sent = 0
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", STALL_SECONDS, 0))
    os.set_blocking(sock.fileno(), True)  # the open file's flag: the transport's descriptor too
    try:
        while sent < count:
            try:
                n = os.sendfile(sock.fileno(), source, offset + sent, count - sent)
            except InterruptedError:
                continue
            except BlockingIOError:  # SO_SNDTIMEO ran out with nothing taken
                raise TimeoutError(f"the peer took nothing for {STALL_SECONDS} s") from None
            if n == 0:  # the file ended
                break
            sent += n
        return sent
    finally:
        os.set_blocking(sock.fileno(), False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))


async def _in_thread(loop: asyncio.AbstractEventLoop, fd: int, source: int, offset: int, count: int) -> int:
    global _in_threads
    # The thread works on its own descriptor of the socket: were the transport's closed meanwhile,
    # its number could name another file by the time the thread is done.
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sending = loop.run_in_executor(_pool, _send_blocking, sock, source, offset, count)
    except BaseException:  # e.g. the pool already shut down at exit
        sock.close()
        raise
    _in_threads += 1
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        # The thread must be done with the socket before the transport has it back.
        try:
            sock.shutdown(socket.SHUT_WR)  # a blocked sendfile returns at once
        except OSError:
            pass
        while not sending.done():
            try:
                await asyncio.wait([sending])
            except asyncio.CancelledError:
                continue  # cancelled again: still wait for the thread (shutdown made it brief)
        raise
    finally:  # every way here has waited for the thread
        _in_threads -= 1
        sock.close()


def _usable(loop: asyncio.AbstractEventLoop, transport: asyncio.BaseTransport) -> bool:
    return (hasattr(loop, "_transports") and hasattr(transport, "_make_empty_waiter")
            and hasattr(transport, "_reset_empty_waiter") and transport.get_extra_info("socket") is not None)


async def _on_selector(loop: asyncio.AbstractEventLoop, fd: int, source: int, offset: int, count: int) -> int:
    """The region with non-blocking ``sendfile`` calls, the socket registered once for all of them."""
    done: asyncio.Future[int] = loop.create_future()
    position, sent = offset, 0

    def stalled() -> None:
        if not done.done():
            done.set_exception(TimeoutError(f"the peer took nothing for {STALL_SECONDS} s"))

    watchdog = loop.call_later(STALL_SECONDS, stalled)

    def step() -> None:
        nonlocal position, sent, watchdog
        if done.done():
            return
        try:
            n = os.sendfile(fd, source, position, count - sent)
        except (BlockingIOError, InterruptedError):
            return  # not writable after all: wait for the next wake-up
        except OSError as exc:
            done.set_exception(exc)
            return
        position += n
        sent += n
        if n == 0 or sent >= count:
            done.set_result(sent)
        else:
            watchdog.cancel()
            watchdog = loop.call_later(STALL_SECONDS, stalled)

    try:
        step()
        if not done.done():
            loop.add_writer(fd, step)
        return await done
    finally:
        watchdog.cancel()
        loop.remove_writer(fd)


async def send_region(loop: asyncio.AbstractEventLoop, transport: asyncio.WriteTransport, file: BinaryIO,
                      offset: int, count: int) -> int:
    """Send ``count`` bytes of ``file`` from ``offset`` on the transport's socket; returns how many
    were sent (fewer only if the file ends first). Raises ``OSError`` (e.g. the peer went away;
    ``TimeoutError`` if it takes nothing for :data:`STALL_SECONDS`). The file's own position is
    not used nor moved."""
    if not _usable(loop, transport):
        return await loop.sendfile(transport, file, offset, count)
    sock = transport.get_extra_info("socket")
    fd, source = sock.fileno(), file.fileno()
    table: dict[int, Any] = loop._transports  # type: ignore[attr-defined]
    del table[fd]
    reading = transport.is_reading()  # type: ignore[attr-defined]
    transport.pause_reading()  # type: ignore[attr-defined]
    try:
        await transport._make_empty_waiter()  # type: ignore[attr-defined]  # what was written before goes first
        # A first non-blocking call: a small region usually goes whole into the socket's buffer,
        # and then needs neither a thread nor a wake-up.
        try:
            first = os.sendfile(fd, source, offset, count)
            if first == 0 or first >= count:  # the file ended, or the region went whole
                return first
        except (BlockingIOError, InterruptedError):
            first = 0
        rest = offset + first, count - first
        if rest[1] >= THREAD_MIN and _in_threads < THREADS:
            return first + await _in_thread(loop, fd, source, *rest)
        return first + await _on_selector(loop, fd, source, *rest)
    finally:
        transport._reset_empty_waiter()  # type: ignore[attr-defined]
        if reading:
            transport.resume_reading()  # type: ignore[attr-defined]
        if not transport.is_closing():  # closed meanwhile, its number may be another's already
            table[fd] = transport
