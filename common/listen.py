"""Listening TCP sockets that no other process can share.

Hypercorn sets ``SO_REUSEPORT`` when it runs several workers, so a second registry started on
the same port binds it too and the kernel splits connections between the two. Here the
process that owns the port (the supervisor, or a standalone gateway) binds it once, without
``SO_REUSEPORT``, and hands the socket to its workers: a port held by anything else fails with
"address already in use". ``SO_REUSEADDR`` only lets a restart reuse a port whose old
connections are in TIME_WAIT; Linux still refuses it while another socket listens there.

A supervisor passes the gateway its socket as an inherited descriptor named by
:data:`LISTEN_FD_ENV`, so the port stays held while the gateway restarts.
"""

from __future__ import annotations

import errno
import os
import socket

#: Environment variable naming an inherited listening socket's descriptor (supervisor → gateway).
LISTEN_FD_ENV = "SHARDREG_LISTEN_FD"
#: Pending connections the kernel may queue for the gateway (capped by net.core.somaxconn):
#: CI fleets open connections in bursts.
DEFAULT_BACKLOG = 2048


class ListenError(Exception):
    """The address cannot be listened on (in use, not local, no permission)."""


def listen_tcp(host: str, port: int, backlog: int, what: str) -> socket.socket:
    """Bind and listen on ``host:port`` exclusively; ``what`` names the setting in errors."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
        raise ListenError(f"{what}: cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def check_free(host: str, port: int, what: str) -> None:
    """Raise :class:`ListenError` if ``host:port`` cannot be listened on now (a start-up check)."""
    listen_tcp(host, port, 1, what).close()


def inherited_socket() -> socket.socket | None:
    """The listening socket a supervisor passed down (see :data:`LISTEN_FD_ENV`), if any."""
    value = os.environ.pop(LISTEN_FD_ENV, "")
    if not value.isdigit():
        return None
    sock = socket.socket(fileno=int(value))
    sock.setblocking(False)
    return sock


__all__ = ["DEFAULT_BACKLOG", "LISTEN_FD_ENV", "ListenError", "check_free", "inherited_socket", "listen_tcp"]
