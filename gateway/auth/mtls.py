"""Client-certificate identities (mTLS), as zot derives them.

With ``http.tls.cacert`` the TLS handshake has already verified a client certificate against
the CA (:mod:`gateway.auth.tls` hands it to the request); here it becomes a user name.
``http.auth.mtls.identityAttributes`` is a fallback chain (default ``["CommonName"]``), the
first attribute that yields a non-empty name wins:

``CommonName``/``CN``   the subject's CN
``Subject``/``DN``      the whole subject, RFC 4514 (``CN=alice,O=Example``)
``Email``/``rfc822name`` the ``emailSanIndex``-th e-mail SAN
``URI``/``URL``         the ``uriSanIndex``-th URI SAN; with ``uriSanPattern`` (a regular
                        expression that must match the *whole* SAN, anchored as in zot) its
                        first capture group, e.g. ``spiffe://example.org/workload/(.*)`` — so
                        ``spiffe://evil.example/x/spiffe://example.org/workload/a`` names nobody
``DNSName``/``DNS``     the ``dnsSanIndex``-th DNS SAN
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from common.config import MtlsSettings


def _san(cert: x509.Certificate, kind: type[x509.GeneralName], index: int) -> str | None:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    values = names.get_values_for_type(kind)  # type: ignore[arg-type]
    return str(values[index]) if index < len(values) else None


def _attribute(cert: x509.Certificate, attribute: str, settings: MtlsSettings) -> str | None:
    if attribute == "cn":
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(cns[0].value) if cns else None
    if attribute == "dn":
        return cert.subject.rfc4514_string()
    if attribute == "email":
        return _san(cert, x509.RFC822Name, settings.email_index)
    if attribute == "dns":
        return _san(cert, x509.DNSName, settings.dns_index)
    if attribute == "uri":
        uri = _san(cert, x509.UniformResourceIdentifier, settings.uri_index)
        if uri is None or settings.uri_pattern is None:
            return uri
        match = settings.uri_pattern.fullmatch(uri)
        return match.group(1) if match else None
    return None


def certificate_identity(cert: x509.Certificate, settings: MtlsSettings) -> str | None:
    """The user name ``cert`` stands for, or None when no configured attribute yields one."""
    for attribute in settings.attributes:
        try:
            name = _attribute(cert, attribute, settings)
        except ValueError:  # a malformed extension or name: try the next attribute
            name = None
        if name:
            return name
    return None
