"""The shard's ZAP handler (ZeroMQ RFC 27): admit only CURVE clients with a configured gateway key.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` in the socket's context about every
new connection to a CURVE server socket; without a handler it would admit every client that
knows the shard's public key. So the handler is bound before the shard socket, and the socket
sets ``ZAP_ENFORCE_DOMAIN`` so that a missing handler refuses instead of admitting.
"""

from __future__ import annotations

import asyncio
import logging
import time

import zmq
import zmq.asyncio
import zmq.utils.z85

log = logging.getLogger("shardreg.shard.zap")
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: The ZAP domain the shard socket sets (ZAP_ENFORCE_DOMAIN needs a non-empty one).
DOMAIN = b"shardreg"
#: Refused connections are logged at most this often (with a count).
LOG_INTERVAL = 10.0


class ZapHandler:
    def __init__(self, sock: zmq.asyncio.Socket, admitted: frozenset[bytes]) -> None:
        """``sock``: a REP socket of the shard socket's context (closed by ``close``)."""
        self.admitted = frozenset(zmq.utils.z85.decode(key) for key in admitted)
        self.refused = 0
        self.last_log = -LOG_INTERVAL
        self.sock = sock
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)
        self.task = asyncio.get_running_loop().create_task(self._serve())

    def decide(self, frames: list[bytes]) -> tuple[bytes, bytes, bytes]:
        """Status code, text and user id for one request (frames after version and request id)."""
        domain, address, _identity, mechanism, *credentials = frames
        if domain != DOMAIN or mechanism != b"CURVE" or len(credentials) != 1:
            return b"400", b"CURVE required", b""
        if credentials[0] not in self.admitted:
            self.refused += 1
            now = time.monotonic()
            if now - self.last_log >= LOG_INTERVAL:  # a client retrying (or a flood) must not fill the log
                log.warning("refused a connection from %s: unknown client key (%d refused since the last message)",
                            address.decode(errors="replace"), self.refused)
                self.last_log, self.refused = now, 0
            return b"400", b"unknown client key", b""
        return b"200", b"OK", b"gateway"

    async def _serve(self) -> None:
        while True:
            try:
                request = await self.sock.recv_multipart()
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            version, request_id, *rest = request + [b""] * max(0, 2 - len(request))
            if version != b"1.0" or len(rest) < 5:
                status = (b"500", b"bad ZAP request", b"")
            else:
                status = self.decide(rest)
            await self.sock.send_multipart([b"1.0", request_id, *status, b""])

    def close(self) -> None:
        self.task.cancel()
        self.sock.close(0)
