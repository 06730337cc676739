"""HTTP/2 over TLS (ALPN h2): the same API, streamed uploads included."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cluster import Cluster
from tests.oci import OCI_MANIFEST, digest, push_image


def _self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "tls.crt", directory / "tls.key"


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("h2")
    cert, key = _self_signed(directory)
    config = {"http": {"tls": {"cert": str(cert), "key": str(key)}}}
    with Cluster(directory / "data", config=config) as c:
        yield c, cert


def test_http2_push_and_pull(tls):
    cluster, cert = tls
    ctx = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=cluster.url, verify=ctx, http2=True, timeout=60) as client:
        r = client.get("/v2/")
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        data = os.urandom(5 * 1024 * 1024 + 3)
        loc = client.post("/v2/h2/app/blobs/uploads/").headers["Location"]
        r = client.patch(loc, content=iter([data[i:i + 100_000] for i in range(0, len(data), 100_000)]))
        assert r.status_code == 202 and r.http_version == "HTTP/2"
        assert client.put(r.headers["Location"], params={"digest": digest(data)}).status_code == 201
        r = client.get(f"/v2/h2/app/blobs/{digest(data)}")
        assert r.content == data and r.http_version == "HTTP/2"
        md, body = push_image(client, "h2/app", "v1")
        assert client.get("/v2/h2/app/manifests/v1", headers={"Accept": OCI_MANIFEST}).content == body
