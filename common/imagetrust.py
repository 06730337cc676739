"""Image signature verification (cosign and notation) with ``cryptography``.

Signatures are recognised in the layouts the signing tools write:

* **cosign** — a manifest tagged ``sha256-<hex>.sig`` in the image's repository, or (OCI 1.1
  referrers mode) a manifest of artifactType :data:`COSIGN_ARTIFACT_TYPE` whose subject is the
  image. Each layer (:data:`COSIGN_LAYER_TYPE`) is a "simple signing" JSON payload naming the
  image digest at ``critical.image.docker-manifest-digest``; the layer annotation
  :data:`COSIGN_SIGNATURE_ANNOTATION` holds the base64 signature of the payload bytes
  (ECDSA/SHA-256 DER, RSA PKCS#1 v1.5/SHA-256, or Ed25519). Trusted = verified by an uploaded key.
* **notation** — a referrer of artifactType :data:`NOTATION_ARTIFACT_TYPE` whose layer
  (``application/jose+json``) is a JWS JSON envelope: ``{"payload", "protected", "header":
  {"x5c": [...]}, "signature"}``. The protected header names the algorithm (PS256/384/512,
  ES256/384/512); the payload's ``targetArtifact.digest`` names the image. Trusted = the
  signature verifies with the leaf certificate, the chain is consistent, and it ends in (or is
  issued by) a certificate of the uploaded trust store.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from common import boundedjson

COSIGN_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_LAYER_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
NOTATION_ARTIFACT_TYPE = "application/vnd.cncf.notary.signature"
NOTATION_JWS_TYPE = "application/jose+json"
NOTATION_TRUSTSTORE_TYPES = ("ca", "signingAuthority")
#: Uploaded keys and certificates are at most this big (zot's limit).
MAX_TRUST_UPLOAD = 8 * 1024 * 1024

_HASHES: dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


@dataclass(frozen=True)
class Verdict:
    tool: str
    trusted: bool
    author: str = ""

    def summary(self) -> dict[str, Any]:
        """The GraphQL ``SignatureSummary`` of this signature."""
        return {"Tool": self.tool, "IsTrusted": self.trusted, "Author": self.author}


# -- trust material -------------------------------------------------------------------------
#: Tolerated clock difference between signer and registry.
CLOCK_SKEW = timedelta(minutes=5)


def load_public_key(data: bytes) -> Any:
    """A cosign public key (PEM); raises ValueError when it is not one."""
    try:
        key = serialization.load_pem_public_key(data.strip())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("unsupported public key type")
    return key


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from PEM (one or more) or DER bytes; raises ValueError."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an X.509 certificate: {exc}") from None
    if not certs:
        raise ValueError("no certificate found")
    return certs


# -- cosign -----------------------------------------------------------------------------------
def _verify_with_key(key: Any, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                        salt_length=padding.PSS.AUTO), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def cosign_payload_digest(payload: bytes) -> str | None:
    try:
        digest = boundedjson.loads(payload)["critical"]["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def verify_cosign(payload: bytes, signature_b64: str | None, subject: str, keys: list[tuple[str, Any]]) -> Verdict:
    """One cosign layer: ``keys`` are (PEM text, loaded key) pairs of the uploaded keys."""
    if not signature_b64 or cosign_payload_digest(payload) != subject:
        return Verdict("cosign", False)
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return Verdict("cosign", False)
    for pem, key in keys:
        if _verify_with_key(key, signature, payload):
            return Verdict("cosign", True, pem)
    return Verdict("cosign", False)


# -- notation ---------------------------------------------------------------------------------
def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jws_verify(alg: str, key: Any, signature: bytes, data: bytes) -> bool:
    family, bits = alg[:2], alg[2:]
    hash_cls = _HASHES.get(bits)
    if hash_cls is None:
        return False
    try:
        if family == "PS" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size),
                       hash_cls())
        elif family == "ES" and isinstance(key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                       int.from_bytes(signature[half:], "big"))
            key.verify(der, data, ec.ECDSA(hash_cls()))
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _valid_in_time(header: dict[str, Any], chain: list[x509.Certificate]) -> bool:
    """notary.x509: every certificate was valid when the signature was made (its signingTime,
    else now), and the signature's own expiry, if it has one, has not passed."""
    now = datetime.now(UTC)
    signed_at = _rfc3339(header.get("io.cncf.notary.signingTime")) or now
    if signed_at > now + CLOCK_SKEW:
        return False  # signed in the future: not believable
    expiry = header.get("io.cncf.notary.expiry")
    if expiry is not None:
        expires = _rfc3339(expiry)
        if expires is None or expires < now:
            return False
    return all(c.not_valid_before_utc - CLOCK_SKEW <= signed_at <= c.not_valid_after_utc + CLOCK_SKEW
               for c in chain)


def verify_notation(envelope: bytes, subject: str, truststore: list[x509.Certificate]) -> Verdict:
    """A notation JWS envelope signing ``subject``, checked against the trust store."""
    untrusted = Verdict("notation", False)
    try:
        doc = boundedjson.loads(envelope)
        protected_b64, payload_b64 = doc["protected"], doc["payload"]
        header = boundedjson.loads(_b64url(protected_b64))
        payload = boundedjson.loads(_b64url(payload_b64))
        signature = _b64url(doc["signature"])
        chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in doc["header"]["x5c"]]
    except (ValueError, KeyError, TypeError, binascii.Error):
        return untrusted
    if not chain or not isinstance(payload, dict) or not isinstance(header, dict):
        return untrusted
    target = payload.get("targetArtifact")
    if not isinstance(target, dict) or target.get("digest") != subject:
        return untrusted
    signed = f"{protected_b64}.{payload_b64}".encode()
    if not _jws_verify(str(header.get("alg", "")), chain[0].public_key(), signature, signed):
        return untrusted
    for child, parent in zip(chain, chain[1:], strict=False):
        if not _issued_by(child, parent):
            return untrusted
    if not _valid_in_time(header, chain):
        return untrusted
    fingerprints = {c.fingerprint(hashes.SHA256()) for c in truststore}
    anchored = any(c.fingerprint(hashes.SHA256()) in fingerprints for c in chain) or any(
        _issued_by(chain[-1], anchor) for anchor in truststore)
    if not anchored:
        return untrusted
    return Verdict("notation", True, chain[0].subject.rfc4514_string())
