"""Sign images in the layouts cosign and notation write, with ``cryptography``."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.oci import OCI_MANIFEST, descriptor, digest

EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
COSIGN_LAYER = "application/vnd.dev.cosign.simplesigning.v1+json"
COSIGN_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION_ARTIFACT = "application/vnd.cncf.notary.signature"


def cosign_keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, pem


def cosign_payload(repo: str, image_digest: str) -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": f"localhost/{repo}"},
                                    "image": {"docker-manifest-digest": image_digest},
                                    "type": "cosign container image signature"},
                       "optional": None}, separators=(",", ":")).encode()


def cosign_signature_manifest(key: ec.EllipticCurvePrivateKey, payload: bytes, signed_payload: bytes | None = None,
                              subject: dict | None = None) -> tuple[bytes, list[bytes]]:
    """(manifest bytes, blobs to push). ``signed_payload`` differs from ``payload`` to tamper."""
    signature = key.sign(signed_payload or payload, ec.ECDSA(hashes.SHA256()))
    config = json.dumps({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers",
                        "diff_ids": [digest(payload)]}}).encode()
    doc: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(payload, COSIGN_LAYER, annotations={
            "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()})],
    }
    if subject is not None:
        doc["artifactType"] = COSIGN_ARTIFACT
        doc["config"] = descriptor(b"{}", EMPTY_TYPE)
        doc["subject"] = subject
        return json.dumps(doc).encode(), [b"{}", payload]
    return json.dumps(doc).encode(), [config, payload]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shardreg"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def notation_ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate, rsa.RSAPrivateKey, x509.Certificate]:
    """(CA key, CA cert, leaf key, leaf cert): a notation-style code-signing chain."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (x509.CertificateBuilder().subject_name(_name("signer.example")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return ca_key, ca, leaf_key, leaf


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def notation_envelope(leaf_key: rsa.RSAPrivateKey, chain: list[x509.Certificate], target: dict,
                      tamper: bool = False, signed_at: datetime.datetime | None = None,
                      expiry: datetime.datetime | None = None) -> bytes:
    """A JWS JSON envelope as notation writes it (application/jose+json)."""
    stamp = (signed_at or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    protected = {"alg": "PS256", "crit": ["io.cncf.notary.signingScheme"],
                 "cty": "application/vnd.cncf.notary.payload.v1+json",
                 "io.cncf.notary.signingScheme": "notary.x509",
                 "io.cncf.notary.signingTime": stamp}
    if expiry is not None:
        protected["crit"].append("io.cncf.notary.expiry")
        protected["io.cncf.notary.expiry"] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    payload = {"targetArtifact": target}
    p64 = _b64url(json.dumps(protected, separators=(",", ":")).encode())
    l64 = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    signature = leaf_key.sign(f"{p64}.{l64}".encode(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                              hashes.SHA256())
    if tamper:
        payload["targetArtifact"] = {**target, "size": target["size"] + 1}
        l64 = _b64url(json.dumps(payload, separators=(",", ":")).encode())
    return json.dumps({"payload": l64, "protected": p64,
                       "header": {"x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
                                          for c in chain],
                                  "io.cncf.notary.signingAgent": "notation-go/1.1.0"},
                       "signature": _b64url(signature)}).encode()


def notation_signature_manifest(envelope: bytes, subject: dict) -> tuple[bytes, list[bytes]]:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": NOTATION_ARTIFACT,
           "config": descriptor(b"{}", EMPTY_TYPE),
           "layers": [descriptor(envelope, "application/jose+json")],
           "subject": subject,
           "annotations": {"io.cncf.notary.x509chain.thumbprint#S256": "[]"}}
    return json.dumps(doc).encode(), [b"{}", envelope]


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
