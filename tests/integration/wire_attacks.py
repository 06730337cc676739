"""What an attacker on the host or on the network tries against the internal wire and the data directory.

Used by test_private_wire.py: a ZeroMQ client that sends one op (with or without CURVE keys), and a
child process that drops to an unprivileged uid (``nobody``) before it tries anything.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from common.protocol import OK, pack

NOBODY = 65534


def ping(endpoint: str, *, server_key: bytes | None = None, client_pair: tuple[bytes, bytes] | None = None,
         timeout: float = 1.5) -> bool:
    """Send the ``ping`` op as a gateway would; True if the shard answered it."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if server_key is not None and client_pair is not None:
        sock.curve_serverkey = server_key
        sock.curve_publickey, sock.curve_secretkey = client_pair
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"rid-attack", b"ping", pack({})])
        if not sock.poll(int(timeout * 1000)):
            return False
        reply = sock.recv_multipart()
        return reply[0] == b"rid-attack" and reply[1] == OK
    finally:
        sock.close(0)
        ctx.term()


def unix_sockets(pids: list[int]) -> list[str]:
    """The names of the Unix sockets these processes hold, from /proc/net/unix (abstract ones start
    with ``@``): what a local user sees there, narrowed to this cluster's shards (other clusters may
    run on the machine)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    names = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[6] in inodes:
            names.append(parts[7])
    return sorted(set(names))


def try_everything(sockets: list[str], files: list[Path]) -> dict[str, Any]:
    """Connect to each socket (and send an op), read each file; what succeeded."""
    out: dict[str, Any] = {"connected": [], "answered": [], "read": [], "errors": []}
    for name in sockets:
        address = "\0" + name[1:] if name.startswith("@") else name
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(address)
            out["connected"].append(name)
        except OSError as exc:
            out["errors"].append(f"{name}: {exc.strerror}")
        finally:
            s.close()
        if ping(f"ipc://{name}", timeout=1.0):
            out["answered"].append(name)
    for path in files:
        try:
            path.read_bytes()
            out["read"].append(str(path))
        except OSError as exc:
            out["errors"].append(f"{path}: {exc.strerror}")
    return out


def as_nobody(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``fn`` in a forked child that has become uid/gid ``nobody`` (no supplementary groups)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            assert os.geteuid() == NOBODY
            result = fn()
            with os.fdopen(write_end, "w") as fh:
                json.dump(result, fh)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    result: dict[str, Any] = json.loads(data)
    return result
