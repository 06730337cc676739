"""Identity rules at the decision point, in process (issue 10 items 5, 6, 8, 14, 15).

* every way to present a password goes through one check (limit per client and user, failDelay,
  a log line without the secret, bcrypt spent for unknown users too);
* a token issued without credentials is anonymous;
* a scoped credential (scoped API key, any bearer token) is never admin;
* a state-changing request authenticated only by the session cookie from another site is refused;
* ``uriSanPattern`` matches the whole SAN.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from common.config import MtlsSettings
from gateway.auth.mtls import certificate_identity
from tests.extensions.fixtures import FULL_EXTENSIONS
from tests.inprocess import BASE_URL, InProcessRegistry
from tests.oci import push_image

USERS = {"root": "root-pw-8f1d", "alice": "alice-pw-c3b9", "mallory": "mallory-pw-77aa"}
ACCESS: dict[str, Any] = {
    "repositories": {"**": {"policies": [{"users": ["alice", "mallory"], "actions": ["read", "create"]}],
                            "defaultPolicy": [], "anonymousPolicy": []},
                     "public/**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]}},
    "adminPolicy": {"users": ["root"], "actions": ["read", "create", "update", "delete"]},
}
FAIL_LIMIT = 2
FAIL_DELAY = 0.2
SERVICE = "shardreg-identity"


def basic(user: str, password: str | None = None) -> dict[str, str]:
    secret = USERS[user] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def _setup(tmp: Path) -> tuple[Path, Path]:
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in USERS.items()))
    key = ec.generate_private_key(ec.SECP256R1())
    signing = tmp / "signing.pem"
    signing.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return htpasswd, signing


def _auth(htpasswd: Path, signing: Path, fail_limit: int = 1000, fail_delay: float = 0.0) -> dict[str, Any]:
    return {"htpasswd": {"path": str(htpasswd)}, "apikey": True, "failDelay": fail_delay,
            "failLimit": fail_limit, "bearer": {"service": SERVICE, "key": str(signing)}}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    htpasswd, signing = _setup(tmp_path_factory.mktemp("identity"))
    config = {"http": {"auth": _auth(htpasswd, signing), "accessControl": ACCESS},
              "extensions": {**FULL_EXTENSIONS, "search": {"enable": True}}}
    with InProcessRegistry(shards=2, config=config) as reg:
        with reg.client(headers=basic("root")) as root:
            push_image(root, "public/app", "v1")
            push_image(root, "eve/app", "v1")
        yield reg


@pytest.fixture()
def limited(tmp_path: Path) -> Iterator[InProcessRegistry]:
    """A registry of its own: these tests get the test client's address blocked."""
    htpasswd, signing = _setup(tmp_path)
    config = {"http": {"auth": _auth(htpasswd, signing, FAIL_LIMIT, FAIL_DELAY), "accessControl": ACCESS}}
    with InProcessRegistry(shards=1, config=config) as reg:
        yield reg


@pytest.fixture(scope="module")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    """Auth without ``accessControl``: every authenticated user may read everything, /metrics included."""
    htpasswd, signing = _setup(tmp_path_factory.mktemp("identity-open"))
    config = {"http": {"auth": _auth(htpasswd, signing)},
              "extensions": {**FULL_EXTENSIONS, "search": {"enable": True}, "metrics": {"enable": True}}}
    with InProcessRegistry(shards=2, config=config) as reg:
        with reg.client(headers=basic("root")) as root:
            push_image(root, "secret/app", "v1")
        yield reg


def token(client: httpx.Client, *scopes: str, headers: dict[str, str] | None = None) -> str:
    r = client.get("/auth/token", params=[("service", SERVICE), *(("scope", s) for s in scopes)],
                   headers=headers or {})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def api_key(client: httpx.Client, user: str, scopes: list[str] | None = None) -> str:
    body: dict[str, Any] = {"label": "t"}
    if scopes is not None:
        body["scopes"] = scopes
    r = client.post("/zot/auth/apikey", headers=basic(user), json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["apiKey"])


def session(client: httpx.Client, user: str) -> str:
    r = client.post("/zot/auth/login", headers=basic(user))
    assert r.status_code == 200, r.text
    return r.headers["set-cookie"].split(";", 1)[0]


# -- item 5: one password check ---------------------------------------------------------------
def test_token_endpoint_counts_failures_delays_and_logs(limited: InProcessRegistry,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """POST /auth/token used to answer wrong passwords at once, forever, silently."""
    form = {"grant_type": "password", "service": SERVICE, "username": "alice", "password": "guess-0"}
    caplog.set_level(logging.INFO, logger="shardreg.auth")
    with limited.client() as c:
        started = time.monotonic()
        r = c.post("/auth/token", data=form)
        assert r.status_code == 401
        assert time.monotonic() - started >= FAIL_DELAY  # failDelay applies to the token endpoint
        statuses = [c.post("/auth/token", data={**form, "password": f"guess-{i}"}).status_code
                    for i in range(1, FAIL_LIMIT + 2)]
        assert statuses[-1] == 429, statuses  # the failed-login limit applies too
        # ... to every other way of presenting a password from that client as well
        assert c.get("/v2/", headers=basic("alice")).status_code == 429
        assert c.post("/zot/auth/login", headers=basic("alice")).status_code == 429
    logged = caplog.text
    assert "failed login (token)" in logged and "'alice'" in logged
    assert "guess-" not in logged  # never the secret


def test_failures_are_counted_per_user_across_clients(limited: InProcessRegistry) -> None:
    """Guessing one user's password from many addresses is limited too."""
    access = limited.app.state.access
    user_limit = access.passwords.users.buckets.capacity
    clients = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(int(user_limit) + 2)]
    statuses = [limited.run(_token_post(access, "mallory", f"g-{i}", client)) for i, client in enumerate(clients)]
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    assert limited.run(_token_post(access, "alice", "another-user", "10.9.200.1")) == 401


async def _token_post(access: Any, user: str, password: str, client: str) -> int:
    from common.errors import RegistryError
    try:
        identity = await access.passwords.verify(user, password, client, how="token")
    except RegistryError as exc:
        return exc.status
    return 200 if identity is not None else 401


def test_unknown_user_costs_a_bcrypt_check(registry: InProcessRegistry) -> None:
    """No timing oracle: an unknown user's password is checked against a dummy hash."""
    htpasswd = registry.app.state.access.htpasswd
    for headers in (basic("nobody-here", "pw-1"), basic("alice", "wrong-pw")):
        before = htpasswd.bcrypt_checks
        assert registry.run(_basic(registry, headers, "10.7.0.1")) == 401
        assert htpasswd.bcrypt_checks == before + 1
    with registry.client() as c:  # the token endpoint takes the same path
        form = {"grant_type": "password", "username": "ghost", "password": "x", "service": SERVICE}
        before = htpasswd.bcrypt_checks
        assert c.post("/auth/token", data=form).status_code == 401
        assert htpasswd.bcrypt_checks == before + 1


async def _basic(registry: InProcessRegistry, headers: dict[str, str], client: str) -> int:
    from common.errors import RegistryError
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        await registry.app.state.access.authenticate(lower, client)
    except RegistryError as exc:
        return exc.status
    return 200


# -- item 6: anonymous tokens ------------------------------------------------------------------
def test_anonymous_token_is_anonymous(open_registry: InProcessRegistry) -> None:
    with open_registry.client() as c:
        anonymous = token(c, "repository:secret/app:pull", "registry:catalog:*")
        for path in ("/v2/", "/v2/_oci/ext/discover", "/metrics", "/v2/_catalog",
                     "/v2/secret/app/tags/list"):
            plain = c.get(path).status_code
            with_token = c.get(path, headers=bearer(anonymous)).status_code
            assert plain == 401, (path, plain)
            assert with_token == plain, (path, with_token)
        query = {"query": "{ RepoListWithNewestImage { Results { Name } } }"}
        r = c.post("/v2/_zot/ext/search", json=query, headers=bearer(anonymous))
        assert r.status_code == c.post("/v2/_zot/ext/search", json=query).status_code == 401
        # a user's token still works
        mine = token(c, "repository:secret/app:pull", headers=basic("alice"))
        assert c.get("/v2/", headers=bearer(mine)).status_code == 200
        assert c.get("/v2/secret/app/tags/list", headers=bearer(mine)).status_code == 200


# -- item 8: scoped credentials are never admin ------------------------------------------------
def test_scoped_credentials_are_not_admin(registry: InProcessRegistry, open_registry: InProcessRegistry) -> None:
    cosign = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    with registry.client() as c:
        scoped = api_key(c, "root", ["eve/**"])
        unscoped = api_key(c, "root")
        pull_token = token(c, "repository:eve/app:pull", headers=basic("root"))
        for headers in (basic("root"), basic("root", unscoped)):
            assert c.get("/v2/_zot/pprof/", headers=headers).status_code == 200
        for headers in (basic("root", scoped), bearer(pull_token)):
            assert c.get("/v2/_zot/pprof/", headers=headers).status_code == 403
            assert c.post("/v2/_zot/ext/cosign", content=cosign, headers=headers).status_code == 403
        # the scoped key still works where its scope applies
        assert c.get("/v2/eve/app/tags/list", headers=basic("root", scoped)).status_code == 200
    with open_registry.client() as c:
        scoped = api_key(c, "root", ["eve/**"])
        assert c.get("/metrics", headers=basic("root")).status_code == 200
        r = c.get("/metrics", headers=basic("root", scoped))
        assert r.status_code == 403 and "secret/app" not in r.text
        assert c.get("/metrics", headers=bearer(token(c, headers=basic("root")))).status_code == 403


# -- item 14: CSRF -----------------------------------------------------------------------------
def test_cookie_requests_from_other_sites_are_refused(registry: InProcessRegistry) -> None:
    host = BASE_URL.split("://", 1)[1]
    with registry.client() as c:
        cookie = {"Cookie": session(c, "alice")}

        def create(extra: dict[str, str], auth: dict[str, str] = cookie) -> int:
            return c.post("/zot/auth/apikey", json={"label": "csrf"}, headers={**auth, **extra}).status_code

        assert create({"Origin": "http://evil.example", "Content-Type": "text/plain"}) == 403
        assert create({"Origin": "null"}) == 403
        assert create({"Origin": f"http://{host}.evil.example"}) == 403
        assert create({"Sec-Fetch-Site": "cross-site"}) == 403
        assert create({"Sec-Fetch-Site": "same-site"}) == 403
        assert c.post("/v2/alice/x/blobs/uploads/", headers={**cookie, "Origin": "https://evil.example"}
                      ).status_code == 403
        assert c.post("/v2/alice/x/blobs/uploads/", headers={**cookie, "Sec-Fetch-Site": "cross-site"}
                      ).status_code == 403
        assert c.post("/v2/alice/x/blobs/uploads/", headers={**cookie, "Origin": BASE_URL}).status_code == 202
        # same origin, a user-typed navigation, or no browser headers at all: allowed
        assert create({"Origin": BASE_URL}) == 201
        assert create({"Sec-Fetch-Site": "same-origin"}) == 201
        assert create({"Sec-Fetch-Site": "none"}) == 201
        assert create({}) == 201
        # safe methods are not state-changing; other credentials are not sent by browsers on their own
        assert c.get("/v2/public/app/tags/list", headers={**cookie, "Origin": "http://evil.example"}
                     ).status_code == 200
        assert create({"Origin": "http://evil.example"}, auth=basic("alice")) == 201
        # logging out is state-changing too
        assert c.post("/zot/auth/logout", headers={**cookie, "Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert c.post("/zot/auth/logout", headers={**cookie, "Origin": BASE_URL}).status_code == 200


# -- item 15: uriSanPattern is anchored ---------------------------------------------------------
def test_uri_san_pattern_matches_the_whole_san() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fallback")])

    def cert(uri: str) -> x509.Certificate:
        now = __import__("datetime").datetime.now(__import__("datetime").UTC)
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + __import__("datetime").timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
                .sign(key, hashes.SHA256()))

    settings = MtlsSettings(attributes=("uri",), uri_pattern=re.compile(r"spiffe://example\.org/workload/(.*)"))
    assert certificate_identity(cert("spiffe://example.org/workload/robot-7"), settings) == "robot-7"
    # the trusted prefix inside a foreign URI, or a longer URI than the pattern: nobody
    assert certificate_identity(cert("spiffe://evil.example/spiffe://example.org/workload/root"), settings) is None
    prefix = MtlsSettings(attributes=("uri",), uri_pattern=re.compile(r"spiffe://example\.org/([a-z]+)"))
    assert certificate_identity(cert("spiffe://example.org/root/extra"), prefix) is None
    assert certificate_identity(cert("spiffe://example.org/root"), prefix) == "root"


def test_deeply_nested_apikey_body_is_a_clear_400(registry: InProcessRegistry) -> None:
    """Issue 10 item 13: a JSON body nested thousands deep is refused, never a RecursionError 500."""
    with registry.client(headers=basic("root")) as c:
        r = c.post("/zot/auth/apikey", content=b'{"label": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert c.post("/zot/auth/apikey", json={"label": "ok"}).status_code == 201
