"""Upload bodies from the socket straight into files (plain HTTP/1.1): the server half.

A request with a ``Content-Length`` of at least :data:`TAP_MIN` bytes on a plain-text HTTP/1.1
connection is offered ``scope["extensions"][EXTENSION]``: a :class:`BodyTap`. Its first body
bytes are held (the connection is not read further) until the application decides:

* :meth:`BodyTap.decline` — also implied by the application's first ``receive()`` or ``send()`` —
  lets the body flow as ASGI messages, as for any request;
* :meth:`BodyTap.splice` hands it a :class:`Sink`: the held bytes, what h11 and asyncio's stream
  had already buffered, then the rest of the body straight from the socket with ``splice(2)``
  (socket → pipe → the sink's file) go to the sink, and none of it passes through Python
  objects. Once ``Content-Length`` bytes are in, the connection is read as before and the
  application receives the end of the body as an ordinary ``http.request`` message.

Why: read through asyncio's stream, h11 and ASGI messages, a pushed MB costs the gateway about
1.4 ms of CPU (a fifth of it `memmove` between buffers, by `perf`, and ~16 Python wake-ups per MB);
spliced, about 0.5 (docs/performance.md).
The caller (:func:`gateway.zerocopy_server.install`) uses private parts of asyncio (the selector
loop's ``_add_reader``, the stream's buffer) and of h11 (the body reader's ``_remaining``):
:func:`supported` checks they are there, and without them no tap is offered.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from typing import Any, Protocol

#: Bodies from this size on are offered the tap (smaller ones are cheaper as ASGI messages).
TAP_MIN = 1024 * 1024
EXTENSION = "shardreg.body.tap"
#: Bytes moved per ``splice`` (the pipe is asked to hold this much).
PIPE_SIZE = 1024 * 1024
#: At most this many bytes are moved per thread job (one wake-up of the event loop).
BURST = 4 * PIPE_SIZE
_F_SETPIPE_SZ = 1031


class ClientGone(Exception):
    """The client closed the connection (or it broke) before its body was complete."""


class Sink(Protocol):
    """Where a tapped body goes, in order."""

    async def put(self, data: bytes) -> None:
        """Bytes the server had already read."""

    def file(self) -> int:
        """The descriptor the next bytes are spliced into (written at its current position)."""

    async def moved(self, count: int) -> None:
        """``count`` more bytes are now in :meth:`file`."""

    def wait_limit(self) -> float:
        """Seconds the server may now wait for the next bytes (the body's pace rule)."""

    def note(self, waited: float, received: int) -> None:
        """The server waited ``waited`` seconds, or got ``received`` bytes; raises to give up."""


class BodyTap:
    """One request's offer: decide once, then await :meth:`finished` if splicing."""

    def __init__(self, length: int) -> None:
        self.length = length
        loop = asyncio.get_running_loop()
        self._decision: asyncio.Future[Sink | None] = loop.create_future()
        self._done: asyncio.Future[None] = loop.create_future()

    @property
    def decided(self) -> bool:
        return self._decision.done()

    def decline(self) -> None:
        """Let the body come as ASGI messages (no effect once decided)."""
        if not self._decision.done():
            self._decision.set_result(None)

    def splice(self, sink: Sink) -> None:
        """Send the whole body to ``sink``; then :meth:`finished` tells how it went."""
        if self._decision.done():
            raise RuntimeError("the body tap was already decided")
        self._decision.set_result(sink)

    async def finished(self) -> None:
        """Wait until every body byte is in the sink; raises what stopped it (e.g. ClientGone)."""
        await self._done

    async def decision(self) -> Sink | None:
        return await self._decision

    def end(self, error: BaseException | None = None) -> None:
        if not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)


def supported(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether this loop lets the tap watch a transport's socket itself."""
    return hasattr(loop, "_add_reader") and hasattr(loop, "_remove_reader") and hasattr(os, "splice")


async def splice_body(tap: BodyTap, sink: Sink, first: bytes, connection: Any, reader: asyncio.StreamReader,
                      transport: asyncio.Transport) -> int:
    """Feed the rest of the body to ``sink`` (``first``: the bytes h11 just handed the stream);
    returns how many bytes went from the socket with ``splice``.

    Runs in the connection's reading task, so nothing else reads the socket meanwhile; the
    transport is paused for good measure and resumed at the end, whatever happens.
    """
    body = connection._reader  # h11's ContentLengthReader: its _remaining is what h11 still expects
    spliced = 0
    transport.pause_reading()
    try:
        await sink.put(first)
        while body._remaining:  # what h11 has buffered
            event = body(connection._receive_buffer)
            if event is None:
                break
            await sink.put(bytes(event.data))
        buffered: bytearray = reader._buffer  # type: ignore[attr-defined]
        if body._remaining and buffered:  # what asyncio's stream has buffered
            count = min(len(buffered), body._remaining)
            data = bytes(buffered[:count])
            del buffered[:count]
            body._remaining -= count
            await sink.put(data)
        if body._remaining:
            if reader._eof:  # type: ignore[attr-defined]  # the client closed before sending it all
                raise ClientGone()
            before = body._remaining
            await _from_socket(sink, body, transport)
            spliced = before
    except BaseException as exc:
        tap.end(exc if isinstance(exc, Exception) else ClientGone())
        if not isinstance(exc, Exception):
            raise
        if isinstance(exc, ClientGone):
            transport.abort()
    else:
        tap.end()
    finally:
        reader._paused = False  # type: ignore[attr-defined]
        if not transport.is_closing():
            transport.resume_reading()
    return spliced


async def _from_socket(sink: Sink, body: Any, transport: asyncio.Transport) -> None:
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket").fileno()
    out, into = os.pipe()
    try:
        try:
            fcntl.fcntl(into, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: the default pipe only means more calls
            pass
        while body._remaining:
            # off the event loop: the file write may wait on the disk (dirty-page throttling)
            moved, ended = await loop.run_in_executor(None, _pump, sock, into, out, sink.file(),
                                                      min(body._remaining, BURST))
            if moved:
                sink.note(0.0, moved)
                body._remaining -= moved
                await sink.moved(moved)
            if ended:
                raise ClientGone()
            if not moved and body._remaining:
                started = loop.time()
                try:
                    await _readable(loop, sock, sink.wait_limit())
                except TimeoutError:
                    pass
                sink.note(loop.time() - started, 0)
    finally:
        os.close(out)
        os.close(into)


def _pump(sock: int, into: int, out: int, file: int, limit: int) -> tuple[int, bool]:
    """Splice up to ``limit`` bytes socket → pipe → file, until the socket has no more for now;
    returns the bytes moved and whether the client closed (or broke) the connection."""
    total = 0
    while total < limit:
        try:
            got = os.splice(sock, into, min(limit - total, PIPE_SIZE), flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return total, False
        except OSError:  # reset, broken
            return total, True
        if got == 0:
            return total, True
        left = got
        while left:
            left -= os.splice(out, file, left)
        total += got
    return total, False


async def _readable(loop: Any, fd: int, timeout: float) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop._add_reader(fd, wake)
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await ready
    finally:
        loop._remove_reader(fd)
