"""mTLS: a client certificate signed by ``http.tls.cacert`` is an identity (zot's CommonName default).

One cluster with TLS + cacert + htpasswd + an access policy where only group ``team-a``
(alice) may push to ``team-a/**``. httpx presents alice's CA-signed certificate, no
certificate, a self-signed certificate with the same CN, and a certificate plus Basic
credentials of another user.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from common.config import MtlsSettings
from gateway.auth import tls as tls_identity
from gateway.auth.mtls import certificate_identity
from tests.auth.conftest import basic, write_htpasswd
from tests.auth.helpers import try_push
from tests.cluster import Cluster, free_port
from tests.oci import OCI_MANIFEST

ACCESS = {
    "groups": {"team-a": {"users": ["alice"]}},
    "repositories": {
        "**": {"policies": [], "defaultPolicy": [], "anonymousPolicy": []},
        "team-a/**": {"policies": [{"groups": ["team-a"], "actions": ["read", "create"]}]},
    },
}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shardreg-test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          san: list[x509.GeneralName] | None = None, client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=7))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(d: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    (d / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                      serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    return str(d / f"{stem}.crt"), str(d / f"{stem}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mtls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shardreg test CA")])
    _write(d, "ca", _cert(ca_name, ca_key, ca_name, ca_key, ca=True), ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(d, "server", _cert(_name("127.0.0.1"), server_key, ca_name, ca_key,
                              san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), server_key)
    alice_key = ec.generate_private_key(ec.SECP256R1())
    _write(d, "alice", _cert(_name("alice"), alice_key, ca_name, ca_key, client=True), alice_key)
    forged_key = ec.generate_private_key(ec.SECP256R1())  # same CN, but self-signed
    _write(d, "forged", _cert(_name("alice"), forged_key, _name("alice"), forged_key, client=True), forged_key)
    write_htpasswd(d / "htpasswd")
    return d


@pytest.fixture(scope="module")
def cluster(pki: Path) -> Iterator[Cluster]:
    config = {"http": {"tls": {"cert": str(pki / "server.crt"), "key": str(pki / "server.key"),
                               "cacert": str(pki / "ca.crt")},
                       "auth": {"htpasswd": {"path": str(pki / "htpasswd")},
                                "mtls": {"identityAttributes": ["CommonName"]}},
                       "accessControl": ACCESS}}
    with Cluster(pki / "cluster", config=config, shards=1, workers=2) as c:
        yield c


def client(cluster: Cluster, pki: Path, cert: str | None = None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    return httpx.Client(base_url=cluster.url, verify=ctx, timeout=30)


def test_certificate_user_is_subject_to_the_policy(cluster: Cluster, pki: Path) -> None:
    with client(cluster, pki, "alice") as c:
        assert c.get("/v2/").status_code == 200
        assert try_push(c, "team-a/app", "v1", {}) == 201
        r = c.get("/v2/team-a/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert c.get("/v2/team-a/app/tags/list").json()["tags"] == ["v1"]
        assert try_push(c, "other/app", "v1", {}) == 403
        r = c.get("/v2/other/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert c.get("/v2/_catalog").json()["repositories"] == ["team-a/app"]
        # a certificate is no password: API keys are managed with a password or a session only
        assert c.post("/zot/auth/apikey", json={"label": "x"}).status_code in (403, 404)


def test_no_certificate_is_anonymous(cluster: Cluster, pki: Path) -> None:
    with client(cluster, pki) as c:
        r = c.get("/v2/")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert c.get("/v2/team-a/app/tags/list").status_code == 401
        assert try_push(c, "team-a/app", "anon", {}) == 401
        # Basic credentials still work without a certificate
        assert c.get("/v2/", headers=basic("bob")).status_code == 200


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_certificate_not_signed_by_cacert_fails_the_handshake(cluster: Cluster, pki: Path,
                                                              version: ssl.TLSVersion) -> None:
    def get(cert: str) -> httpx.Response:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
        ctx.maximum_version = version
        with httpx.Client(base_url=cluster.url, verify=ctx, timeout=10) as c:
            return c.get("/v2/")

    assert get("alice").status_code == 200  # the same client settings with the CA's certificate
    # TLS 1.2: the server refuses during the handshake. TLS 1.3: the client's handshake ends before
    # the server has checked its certificate, then the server drops the connection unanswered.
    expected = httpx.ConnectError if version == ssl.TLSVersion.TLSv1_2 else httpx.TransportError
    with pytest.raises(expected):
        get("forged")


def test_credentials_in_headers_take_precedence(cluster: Cluster, pki: Path) -> None:
    with client(cluster, pki, "alice") as c:
        # bob (no policy on team-a/**) authenticates with Basic over alice's certificate: bob decides
        assert try_push(c, "team-a/app", "bob", basic("bob")) == 403
        r = c.get("/v2/team-a/app/manifests/v1", headers={**basic("bob"), "Accept": OCI_MANIFEST})
        assert r.status_code == 403
        # wrong Basic credentials are refused, not replaced by the certificate
        assert c.get("/v2/team-a/app/tags/list", headers=basic("bob", "wrong")).status_code == 401
        assert c.get("/v2/team-a/app/tags/list").status_code == 200


def test_mtls_config_is_known(cluster: Cluster) -> None:
    logs = cluster.log_path.read_text(errors="replace")
    assert "http.auth.mtls" not in logs and "unknown option" not in logs, logs[-2000:]


async def _serve_echo(pki: Path, port: int, cert: str | None) -> dict:
    """Hypercorn in-process with :func:`tls_identity.install`: what a request sees."""
    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        peer = tls_identity.client_certificate()
        body = json.dumps({"tls": scope["extensions"].get("tls"),
                           "cn": peer.subject.rfc4514_string() if peer else None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": body})  # type: ignore[operator]

    tls_identity.install()
    hc = HypercornConfig()
    hc.bind = [f"127.0.0.1:{port}"]
    hc.certfile, hc.keyfile, hc.ca_certs = str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt")
    hc.verify_mode = ssl.CERT_OPTIONAL
    hc.accesslog = hc.errorlog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, hc, shutdown_trigger=stop.wait, mode="asgi"))  # type: ignore[arg-type]
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))
    try:
        async with httpx.AsyncClient(verify=ctx) as c:
            for _ in range(100):
                try:
                    return (await c.get(f"https://127.0.0.1:{port}/")).json()
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            raise AssertionError("in-process Hypercorn did not answer")
    finally:
        stop.set()
        await server


def test_asgi_tls_extension(pki: Path) -> None:
    seen = asyncio.run(_serve_echo(pki, free_port(), "alice"))
    tls = seen["tls"]
    assert seen["cn"] == "CN=alice,O=shardreg-test" == tls["client_cert_name"]
    assert len(tls["client_cert_chain"]) == 1
    assert x509.load_pem_x509_certificate(tls["client_cert_chain"][0].encode()) == \
        x509.load_pem_x509_certificate((pki / "alice.crt").read_bytes())
    assert tls["tls_version"] in (0x0303, 0x0304) and tls["client_cert_error"] is None
    seen = asyncio.run(_serve_echo(pki, free_port(), None))
    assert seen["cn"] is None and seen["tls"]["client_cert_chain"] == []


def test_identity_attributes() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(_name("alice"), key, _name("alice"), key,
                 san=[x509.UniformResourceIdentifier("spiffe://example.org/workload/robot-7"),
                      x509.DNSName("ci.example.org"), x509.RFC822Name("alice@example.org")])
    assert certificate_identity(cert, MtlsSettings()) == "alice"
    assert certificate_identity(cert, MtlsSettings(attributes=("dn",))) == "CN=alice,O=shardreg-test"
    assert certificate_identity(cert, MtlsSettings(attributes=("dns",))) == "ci.example.org"
    assert certificate_identity(cert, MtlsSettings(attributes=("email",))) == "alice@example.org"
    assert certificate_identity(cert, MtlsSettings(attributes=("uri",))) == "spiffe://example.org/workload/robot-7"
    spiffe = re.compile(r"spiffe://example.org/workload/(.*)")
    assert certificate_identity(cert, MtlsSettings(attributes=("uri", "cn"), uri_pattern=spiffe)) == "robot-7"
    other = re.compile(r"spiffe://other.org/(.*)")
    assert certificate_identity(cert, MtlsSettings(attributes=("uri", "cn"), uri_pattern=other)) == "alice"
    assert certificate_identity(cert, MtlsSettings(attributes=("uri",), uri_pattern=other)) is None
    assert certificate_identity(cert, MtlsSettings(attributes=("dns",), dns_index=1)) is None


def test_token_service_issues_tokens_to_certificate_users(pki: Path) -> None:
    """With the built-in token service, a certificate user (no Authorization header) gets a token
    carrying their own grants, and that token works on its own."""
    import jwt

    signing = ec.generate_private_key(ec.SECP256R1())
    (pki / "token.pem").write_bytes(signing.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    config = {"http": {"tls": {"cert": str(pki / "server.crt"), "key": str(pki / "server.key"),
                               "cacert": str(pki / "ca.crt")},
                       "auth": {"htpasswd": {"path": str(pki / "htpasswd")},
                                "mtls": {"identityAttributes": ["CommonName"]},
                                "bearer": {"service": "shardreg", "key": str(pki / "token.pem")}},
                       "accessControl": ACCESS}}
    with Cluster(pki / "token-cluster", config=config, shards=1, workers=1) as cluster:
        with client(cluster, pki, "alice") as c:
            r = c.get("/auth/token", params={"service": "shardreg", "scope": "repository:team-a/app:pull,push"})
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            claims = jwt.decode(token, options={"verify_signature": False})
            assert claims["sub"] == "alice"
            assert {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]} in [
                dict(a, actions=sorted(a["actions"])) for a in claims["access"]]
        with client(cluster, pki) as anonymous:  # no certificate: the token alone is enough
            bearer = {"Authorization": f"Bearer {token}"}
            assert try_push(anonymous, "team-a/app", "tok", bearer) == 201
            r = anonymous.get("/auth/token", params={"service": "shardreg",
                                                     "scope": "repository:team-a/app:pull"})
            assert r.status_code == 200
            claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
            assert all(not a["actions"] for a in claims.get("access") or [])  # anonymous: nothing on team-a/**
