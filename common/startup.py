"""Start-up checks: what would make a process fail at start is found before any process starts.

A child that cannot start would otherwise be restarted in a loop by the supervisor (or by
Kubernetes), printing the same traceback every few seconds. So the supervisor (and a standalone
``shardreg gateway`` or ``shard``) checks first, before writing anything to the data directory:
every file the config names can be read and holds what it should, and every port the cluster
will listen on is free. Each failure is a :class:`StartupError` naming the key at fault; the
command line prints it once and exits with code 2.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from common.config import Config
from common.config.identity import check_identity_files
from common.listen import ListenError, check_free

#: How to make the built-in token issuer's key (``http.auth.bearer.key``), for error messages and docs.
BEARER_KEY_HINT = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {path}"


class StartupError(Exception):
    """The configuration names a file or port this process cannot use."""


def _read(key: str, path: str, hint: str = "") -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        extra = f" (create it: {hint.format(path=path)})" if hint and isinstance(exc, FileNotFoundError) else ""
        raise StartupError(f"{key}: cannot read {path}: {exc.strerror}{extra}") from None


def _check_private_key(key: str, path: str) -> None:
    data = _read(key, path, BEARER_KEY_HINT)
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise StartupError(f"{key}: {path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
                      | ed448.Ed448PrivateKey):
        raise StartupError(f"{key}: {path}: use an RSA, EC or Ed25519 key, not {type(private).__name__}")


def _check_public_key(key: str, path: str) -> None:
    data = _read(key, path)
    try:
        if b"CERTIFICATE" in data:
            x509.load_pem_x509_certificate(data)
        else:
            serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise StartupError(f"{key}: {path} is not a PEM certificate or public key ({exc})") from None


def _check_session_keys(key: str, path: str) -> None:
    try:
        json.loads(_read(key, path))
    except ValueError:
        raise StartupError(f"{key}: {path} is not JSON") from None


def _check_tls(config: Config) -> None:
    tls = config.http.tls
    if tls is None:
        return
    _read("http.tls.cert", tls.cert)
    _read("http.tls.key", tls.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as exc:
        raise StartupError(f"http.tls.cert/key: {tls.cert} and {tls.key} are not a matching PEM "
                           f"certificate and key ({exc})") from None
    if tls.cacert:
        _read("http.tls.cacert", tls.cacert)
        try:
            context.load_verify_locations(tls.cacert)
        except (ssl.SSLError, OSError) as exc:
            raise StartupError(f"http.tls.cacert: {tls.cacert} holds no PEM certificate ({exc})") from None


def check_files(config: Config) -> None:
    """Every file the gateway will read at start exists and holds what it should."""
    auth = config.http.auth
    if auth.htpasswd is not None:
        path = auth.htpasswd
        if not Path(path).is_file():
            raise StartupError(f"http.auth.htpasswd.path: {path} does not exist (create it and add a user: "
                               f"shardreg user add NAME --htpasswd {path})")
        _read("http.auth.htpasswd.path", path)
    if auth.bearer is not None:
        if auth.bearer.key:
            _check_private_key("http.auth.bearer.key", auth.bearer.key)
        if auth.bearer.cert:
            _check_public_key("http.auth.bearer.cert", auth.bearer.cert)
    if auth.session_keys_file:
        _check_session_keys("http.auth.sessionKeysFile", auth.session_keys_file)
    check_identity_files(auth.ldap, auth.openid, auth.workload)  # LDAP, OpenID, workload identity
    _check_tls(config)
    sync = config.extensions.sync  # read by the shards (issue 13)
    if sync.active and sync.credentials_file:
        _check_session_keys("extensions.sync.credentialsFile", sync.credentials_file)
    for i, registry in enumerate(sync.registries if sync.active else ()):
        if registry.cert_dir and not Path(registry.cert_dir).is_dir():
            raise StartupError(f"extensions.sync.registries[{i}].certDir: {registry.cert_dir} is not a directory")


def shard_metrics_port(config: Config, index: int) -> int:
    """Shard ``index``'s health/metrics port: ``cluster.shardMetricsPort`` plus the index when the
    shards share a host (the embedded cluster), the port itself when each has its own (endpoints)."""
    base = config.cluster.shard_metrics_port
    if not base or config.cluster.endpoints:
        return base
    return base + index


def shard_metrics_host(config: Config) -> str:
    """Embedded shards listen where the gateway does; a shard pod on every interface (for probes)."""
    return config.http.address if not config.cluster.endpoints else "0.0.0.0"


def check_shard_ports(config: Config, indexes: range | list[int]) -> None:
    """The health/metrics ports of these shards are free (and in range)."""
    for index in indexes:
        port = shard_metrics_port(config, index)
        if not port:
            continue
        what = "cluster.shardMetricsPort" + (f" (+{index} for shard {index})" if port != config.cluster.shard_metrics_port else "")
        if not 0 < port <= 65535:
            raise StartupError(f"{what}: {port} is not a TCP port (1..65535)")
        try:
            check_free(shard_metrics_host(config), port, what)
        except ListenError as exc:
            raise StartupError(str(exc)) from None


__all__ = ["BEARER_KEY_HINT", "StartupError", "check_files", "check_shard_ports", "shard_metrics_host",
           "shard_metrics_port"]
