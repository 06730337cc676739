"""The client certificate of a TLS connection, made visible to each request on it (mTLS identity).

Why this module exists: with ``http.tls.cacert`` Hypercorn's SSL context verifies the client
certificate during the handshake (``ca_certs`` + ``CERT_OPTIONAL``: no certificate is fine, one
not signed by ``cacert`` fails the handshake), but Hypercorn 0.18 never tells the application
which certificate it got: the ASGI scope has no ``extensions["tls"]``. The certificate is only
reachable from the connection's asyncio stream (``writer.get_extra_info("ssl_object")``), which
Hypercorn's ``TCPServer`` holds and the application never sees.

:func:`install` (called in each gateway worker process before Hypercorn serves) replaces the
``TCPServer`` class that Hypercorn's asyncio worker instantiates for every accepted connection
(``hypercorn.asyncio.run.TCPServer``) with a subclass. For a TLS connection that subclass reads
the peer certificate once and wraps the application for that connection only, so that every
HTTP/WebSocket request on it

* carries the ASGI TLS extension, ``scope["extensions"]["tls"] = {"client_cert_chain": [PEM],
  "client_cert_name": RFC 4514 subject, "client_cert_error": None, "tls_version": 0x0304, ...}``
  (Python's ``ssl`` module before 3.13 exposes only the leaf certificate, so the chain has one
  entry); and
* runs with the connection's :class:`PeerCertificate` in a context variable:
  :func:`client_certificate` answers it anywhere in the request's task (the auth code sees only
  headers, and blob uploads never build a Quart request).

Plain-HTTP connections and HTTP/2 are handled alike (the wrapper sits at the application
boundary, below every protocol); nothing else in Hypercorn is changed. If a Hypercorn upgrade
removes ``TCPServer`` from ``hypercorn.asyncio.run``, :func:`install` raises instead of silently
serving without identities.
"""

from __future__ import annotations

import contextvars
import ssl
from functools import cached_property
from typing import Any

from cryptography import x509

_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class PeerCertificate:
    """The verified client certificate of one TLS connection (parsed on first use)."""

    def __init__(self, der: bytes) -> None:
        self.der = der

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @cached_property
    def pem(self) -> str:
        return ssl.DER_cert_to_PEM_cert(self.der)


_current: contextvars.ContextVar[PeerCertificate | None] = contextvars.ContextVar("shardreg_peer_cert",
                                                                                  default=None)


def client_certificate() -> x509.Certificate | None:
    """The verified client certificate of the connection serving the current request, if any."""
    peer = _current.get()
    return peer.certificate if peer is not None else None


def tls_extension(ssl_object: Any, peer: PeerCertificate | None) -> dict[str, Any]:
    """The ASGI TLS extension (``scope["extensions"]["tls"]``) for one connection."""
    name = None
    if peer is not None:
        try:
            name = peer.certificate.subject.rfc4514_string()
        except ValueError:  # a certificate OpenSSL accepted but cryptography cannot parse
            name = None
    return {"server_cert": None, "client_cert_chain": [peer.pem] if peer is not None else [],
            "client_cert_name": name, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""), "cipher_suite": None}


class _WithPeerCertificate:
    """Hypercorn's app wrapper for one TLS connection: adds the TLS extension and the context."""

    def __init__(self, app: Any, peer: PeerCertificate | None, extension: dict[str, Any]) -> None:
        self.app, self.peer, self.extension = app, peer, extension

    async def __call__(self, scope: dict[str, Any], *args: Any) -> Any:
        if scope.get("type") not in ("http", "websocket"):
            return await self.app(scope, *args)
        scope.setdefault("extensions", {})["tls"] = dict(self.extension)
        token = _current.set(self.peer)
        try:
            return await self.app(scope, *args)
        finally:
            _current.reset(token)


def _peer_certificate(ssl_object: Any) -> PeerCertificate | None:
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):  # handshake not done: no certificate to speak of
        return None
    return PeerCertificate(der) if der else None


def install() -> None:
    """Make Hypercorn's asyncio worker serve every connection through :class:`_TCPServer`."""
    import hypercorn.asyncio.run as hypercorn_run

    base = getattr(hypercorn_run, "TCPServer", None)
    if base is None or not hasattr(base, "run"):
        raise RuntimeError("hypercorn.asyncio.run.TCPServer not found: cannot expose client certificates")
    if getattr(base, "_shardreg_peer_cert", False):
        return  # already installed

    class _TCPServer(base):  # type: ignore[misc, valid-type]
        """Hypercorn's TCPServer; for TLS connections the app sees the client certificate."""

        _shardreg_peer_cert = True
        app: Any
        writer: Any

        async def run(self) -> None:
            ssl_object = self.writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                peer = _peer_certificate(ssl_object)
                self.app = _WithPeerCertificate(self.app, peer, tls_extension(ssl_object, peer))
            await super().run()

    hypercorn_run.TCPServer = _TCPServer  # type: ignore[misc]
