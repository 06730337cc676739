"""CURVE key pairs for the internal wire: generate, write, load, and pick them from the config.

Shards are CURVE servers (each has a key pair; gateways know its public key), gateways are
CURVE clients (a key pair; shards admit only the configured gateway public keys, see
:mod:`shard.zap`). A key file is text in ZeroMQ's certificate layout::

    public-key = "<40 Z85 characters>"
    secret-key = "<40 Z85 characters>"     (absent from a public-only file)

A file may also hold just a secret key, as 32 raw bytes, 40 Z85 characters or 44 base64
characters (what the Helm chart's ``randBytes 32`` gives): the public key is derived from it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.utils import z85

from common.config import Config, ConfigError

log = logging.getLogger("shardreg.keys")
_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]{40})"\s*$')


@dataclass(frozen=True)
class KeyPair:
    public: bytes  #: Z85, 40 bytes
    secret: bytes | None = None  #: Z85, 40 bytes; None for a public-only file


def generate() -> KeyPair:
    public, secret = zmq.curve_keypair()
    return KeyPair(public, secret)


def write_pair(path: Path, pair: KeyPair) -> None:
    """Write a key file owner-only (0600), atomically."""
    lines = ["# shardreg CURVE key (ZeroMQ Z85)", f'public-key = "{pair.public.decode()}"']
    if pair.secret is not None:
        lines.append(f'secret-key = "{pair.secret.decode()}"')
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def write_set(directory: Path, name: str) -> KeyPair:
    """``<name>.key_secret`` (the pair) and ``<name>.key`` (the public key) in ``directory``."""
    pair = generate()
    write_pair(directory / f"{name}.key_secret", pair)
    write_pair(directory / f"{name}.key", KeyPair(pair.public))
    return pair


def _bare_secret(data: bytes) -> bytes | None:
    """A secret key given alone: 32 raw bytes, 40 Z85 or 44 base64 characters, as Z85."""
    text = data.strip()
    if len(data) == 32:  # shorter than any key file: raw bytes (a Kubernetes Secret's randBytes)
        encoded: bytes = z85.encode(data)
        return encoded
    if len(text) == 40:
        try:
            if len(z85.decode(text)) == 32:
                return text
        except (ValueError, KeyError):
            pass
    if len(text) == 44:
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) == 32:
            encoded = z85.encode(raw)
            return encoded
    return None


def load(path: str | Path) -> KeyPair:
    """Read a key file (any of the layouts above); raises :class:`ConfigError` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read CURVE key file {path}: {exc.strerror}") from exc
    secret = _bare_secret(data)
    if secret is not None:
        return KeyPair(zmq.curve_public(secret), secret)
    found: dict[str, bytes] = {}
    for line in data.decode(errors="replace").splitlines():
        match = _LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2).encode()
    if "secret" in found:
        try:
            derived = zmq.curve_public(found["secret"])
        except (ValueError, zmq.ZMQError) as exc:
            raise ConfigError(f"{path}: the secret key is not valid Z85") from exc
        if found.get("public", derived) != derived:
            raise ConfigError(f"{path}: the public key does not belong to the secret key")
        return KeyPair(derived, found["secret"])
    if "public" in found:
        return KeyPair(found["public"])
    raise ConfigError(f"{path}: not a CURVE key file (expected public-key/secret-key lines or a bare secret key)")


def uses_tcp(config: Config) -> bool:
    return any(ep.startswith("tcp://") for ep in config.cluster.endpoints)


def _shard_key_path(config: Config, index: int) -> str | None:
    path = config.cluster.shard_key
    return path.replace("{index}", str(index)) if path else None


def _require_keys(config: Config, role: str) -> bool:
    """Whether this process must use CURVE; refuses tcp without keys unless ``insecure``."""
    c = config.cluster
    if c.shard_key and c.gateway_key:
        return True
    if c.shard_key or c.gateway_key:
        raise ConfigError("cluster.shardKey and cluster.gatewayKey must be set together")
    if not uses_tcp(config):
        return False
    if not c.insecure:
        raise ConfigError(f"the {role} uses tcp endpoints without CURVE keys: anyone on the network could send "
                          "it ops. Set cluster.shardKey and cluster.gatewayKey (shardreg keys generate writes "
                          "a set), or cluster.insecure: true to accept that")
    log.warning("cluster.insecure: the %s's tcp wire is neither authenticated nor encrypted", role)
    return False


@dataclass(frozen=True)
class ServerKeys:
    pair: KeyPair
    #: Gateway public keys (Z85) the shard's ZAP handler admits.
    admitted: frozenset[bytes]


def server_keys(config: Config, index: int) -> ServerKeys | None:
    """The keys shard ``index`` serves with, or None for a plain (ipc or insecure) socket."""
    if not _require_keys(config, "shard"):
        return None
    path = _shard_key_path(config, index)
    assert path is not None and config.cluster.gateway_key is not None
    pair = load(path)
    if pair.secret is None:
        raise ConfigError(f"cluster.shardKey {path}: the shard needs the secret key")
    admitted = {load(config.cluster.gateway_key).public}
    admitted.update(load(p).public for p in config.cluster.authorized_gateway_keys)
    return ServerKeys(pair, frozenset(admitted))


@dataclass(frozen=True)
class ClientKeys:
    pair: KeyPair
    #: The public key of each shard, by index.
    servers: tuple[bytes, ...]


def client_keys(config: Config) -> ClientKeys | None:
    """The keys a gateway connects with, or None for plain sockets."""
    if not _require_keys(config, "gateway"):
        return None
    assert config.cluster.gateway_key is not None
    pair = load(config.cluster.gateway_key)
    if pair.secret is None:
        raise ConfigError(f"cluster.gatewayKey {config.cluster.gateway_key}: the gateway needs the secret key")
    servers = tuple(load(p).public for p in (_shard_key_path(config, i) for i in range(config.cluster.shards)) if p)
    return ClientKeys(pair, servers)


def ensure_embedded(config: Config, directory: Path) -> tuple[str, str] | None:
    """The embedded cluster's own key files in ``directory`` (created once, 0600 in a 0700
    directory), when its endpoints are tcp and the config names no keys; else None."""
    c = config.cluster
    if c.shard_key or c.gateway_key or c.insecure or not uses_tcp(config):
        return None
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("shard", "gateway"):
        if not (directory / f"{name}.key_secret").exists():
            write_set(directory, name)
    return str(directory / "shard.key_secret"), str(directory / "gateway.key_secret")
