"""A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (mTLS to an upstream)."""

from __future__ import annotations

from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.pki import ThrowawayCA


def make_pki(directory: Path) -> dict[str, Path]:
    """ca.crt, server.pem/server.key (127.0.0.1), and a certDir holding ca.crt + client.cert/client.key."""
    ca = ThrowawayCA("sync-test-ca", days=7)
    directory.mkdir(parents=True, exist_ok=True)
    cert_dir = directory / "certs.d"
    cert_dir.mkdir()
    server_cert, server_key = ca.issue("upstream", ips=("127.0.0.1",), usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = ca.issue("shardreg-sync", usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    paths = {"ca": directory / "ca.crt", "server_cert": directory / "server.pem", "server_key": directory / "server.key",
             "cert_dir": cert_dir}
    paths["ca"].write_bytes(ca.pem)
    paths["server_cert"].write_bytes(server_cert)
    paths["server_key"].write_bytes(server_key)
    (cert_dir / "ca.crt").write_bytes(ca.pem)
    (cert_dir / "client.cert").write_bytes(client_cert)
    (cert_dir / "client.key").write_bytes(client_key)
    return paths
