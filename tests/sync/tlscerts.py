"""A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (mTLS to an upstream)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(directory: Path) -> dict[str, Path]:
    """ca.crt, server.pem/server.key (127.0.0.1), and a certDir holding ca.crt + client.cert/client.key."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sync-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, usage: x509.ObjectIdentifier, san: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM), _key_pem(key)

    directory.mkdir(parents=True, exist_ok=True)
    cert_dir = directory / "certs.d"
    cert_dir.mkdir()
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    server_cert, server_key = leaf("upstream", ExtendedKeyUsageOID.SERVER_AUTH, True)
    client_cert, client_key = leaf("shardreg-sync", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    paths = {"ca": directory / "ca.crt", "server_cert": directory / "server.pem", "server_key": directory / "server.key",
             "cert_dir": cert_dir}
    paths["ca"].write_bytes(ca_pem)
    paths["server_cert"].write_bytes(server_cert)
    paths["server_key"].write_bytes(server_key)
    (cert_dir / "ca.crt").write_bytes(ca_pem)
    (cert_dir / "client.cert").write_bytes(client_cert)
    (cert_dir / "client.key").write_bytes(client_key)
    return paths
