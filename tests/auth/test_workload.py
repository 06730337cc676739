"""OIDC workload identity (``http.auth.bearer.oidc``) with a real OIDC provider (npm oidc-provider).

Tokens: ID tokens the provider issues in a real authorization code flow, and tokens minted
with the provider's own signing key (the key its JWKS publishes) for the refusal cases. Used
as ``Authorization: Bearer``, as a Basic password, through the built-in ``/auth/token``, and
by skopeo (``--creds x:<id token>``) against a real cluster.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from gateway.auth import jwks
from tests.auth.conftest import basic, write_ec_key, write_htpasswd
from tests.auth.helpers import try_push
from tests.auth.oidc_provider import OidcProvider, browser_login, rsa_jwk
from tests.inprocess import InProcessRegistry
from tests.ui.support import csrf_of

CI_SUB = "repo:acme/app:ref:refs/heads/main"
CLIENT = {"client_id": "shardreg", "client_secret": "wl-client-secret-7f2a", "grant_types": ["authorization_code"],
          "response_types": ["code"], "redirect_uris": ["http://127.0.0.1:9/ci-callback"]}
ACCESS: dict[str, Any] = {"repositories": {
    "ci/**": {"policies": [{"users": [CI_SUB], "actions": ["read", "create", "update"]}]},
    "platform/**": {"policies": [{"groups": ["platform"], "actions": ["read", "create"]}]},
}}


def workload_config(provider: OidcProvider, d: Path, *, key: bool = True) -> dict[str, Any]:
    bearer: dict[str, Any] = {"realm": "zot", "service": "shardreg-wl", "oidc": [{
        "issuer": provider.issuer, "audiences": ["shardreg", "https://registry.example"],
        "claimMapping": {"username": "claims.sub", "groups": "has(claims.groups) ? claims.groups : []",
                         "validations": [{"expression": "!claims.sub.startsWith('repo:evil/')",
                                          "message": "repository not allowed"}]}}]}
    if key:
        bearer.pop("realm")
        bearer["key"] = str(write_ec_key(d / "signing.pem"))
    return {"http": {"auth": {"htpasswd": {"path": str(write_htpasswd(d / "htpasswd"))}, "bearer": bearer,
                              "failLimit": 1000}, "accessControl": ACCESS}}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc-wl"), [CLIENT]) as p:
        yield p


@pytest.fixture(scope="module")
def registry(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    with InProcessRegistry(config=workload_config(provider, tmp_path_factory.mktemp("wl-reg"))) as r:
        yield r


@pytest.fixture()
def client(registry: InProcessRegistry) -> Iterator[httpx.Client]:
    with registry.client() as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ci:{token}".encode()).decode()}


def provider_id_token(provider: OidcProvider, user: str) -> str:
    """An ID token the provider issues to the client in a real authorization code flow."""
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"client_id": CLIENT["client_id"], "redirect_uri": CLIENT["redirect_uris"][0], "response_type": "code",
              "scope": "openid email profile groups", "state": "s", "nonce": "n", "code_challenge": challenge,
              "code_challenge_method": "S256"}
    with httpx.Client(base_url=provider.issuer, timeout=30) as browser:
        back = browser_login(browser, f"{provider.issuer}/auth?{httpx.QueryParams(params)}", user)
    r = httpx.post(f"{provider.issuer}/token", auth=(CLIENT["client_id"], CLIENT["client_secret"]), data={
        "grant_type": "authorization_code", "code": httpx.URL(back).params["code"],
        "redirect_uri": CLIENT["redirect_uris"][0], "code_verifier": verifier})
    assert r.status_code == 200, r.text
    token: str = r.json()["id_token"]
    return token


def test_minted_id_token_as_bearer_and_as_password(client: httpx.Client, provider: OidcProvider) -> None:
    token = provider.mint()
    assert client.get("/v2/", headers=bearer(token)).status_code == 200
    assert try_push(client, "ci/app", "v1", bearer(token)) == 201
    assert try_push(client, "ci/app", "v2", password(token)) == 201       # docker login --password <id token>
    assert try_push(client, "platform/app", "v1", bearer(token)) == 403   # not in group platform
    # a second accepted audience
    assert client.get("/v2/", headers=bearer(provider.mint(aud="https://registry.example"))).status_code == 200


def test_provider_issued_id_token_maps_user_and_groups(client: httpx.Client, provider: OidcProvider) -> None:
    token = provider_id_token(provider, "olga")
    assert jwt.decode(token, options={"verify_signature": False})["groups"] == ["platform", "readers"]
    assert try_push(client, "platform/app", "v1", bearer(token)) == 201   # groups claim → accessControl
    assert try_push(client, "ci/app", "v3", bearer(token)) == 403         # user olga has no policy there


def test_exchanged_at_the_token_endpoint(client: httpx.Client, provider: OidcProvider) -> None:
    r = client.get("/auth/token", params={"service": "shardreg-wl", "scope": "repository:ci/app:pull,push"},
                   headers=password(provider.mint()))
    assert r.status_code == 200, r.text
    registry_token = r.json()["token"]
    claims = jwt.decode(registry_token, options={"verify_signature": False})
    assert claims["sub"] == CI_SUB and claims["access"][0]["actions"] == ["pull", "push"]
    assert try_push(client, "ci/app", "v4", bearer(registry_token)) == 201
    # an ID token cannot become a session or an API key
    assert client.post("/zot/auth/login", headers=password(provider.mint())).status_code in (403, 404)


@pytest.mark.parametrize("case, expected", [
    ("wrong audience", "audience"), ("wrong issuer", "issuer"), ("expired", "expired"),
    ("unknown kid", "unknown key"), ("foreign key, known kid", "invalid token"), ("validation", "not allowed"),
    ("hmac", "algorithm"), ("no exp", "invalid token"),
])
def test_refused_tokens(client: httpx.Client, provider: OidcProvider, case: str, expected: str) -> None:
    foreign, _ = rsa_jwk("rogue")
    token = {
        "wrong audience": lambda: provider.mint(aud="someone-else"),
        "wrong issuer": lambda: provider.mint(iss="https://token.actions.githubusercontent.com"),
        "expired": lambda: provider.mint(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200),
        "unknown kid": lambda: provider.mint(key=foreign, kid="rogue"),
        "foreign key, known kid": lambda: provider.mint(key=foreign),
        "validation": lambda: provider.mint(sub="repo:evil/app:ref:refs/heads/main"),
        "hmac": lambda: jwt.encode({"iss": provider.issuer, "aud": "shardreg", "sub": CI_SUB,
                                    "exp": int(time.time()) + 60}, "secret" * 8, algorithm="HS256"),
        "no exp": lambda: provider.mint(exp=None),
    }[case]()
    r = client.get("/v2/", headers=bearer(token))
    assert r.status_code == 401 and expected in r.text, r.text
    assert client.get("/v2/", headers=password(token)).status_code == 401
    assert basic("alice")  # htpasswd users are unaffected
    assert client.get("/v2/", headers=basic("alice")).status_code == 200


def test_keys_refreshed_on_unknown_kid_after_rotation(
        provider: OidcProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwks, "MIN_REFRESH", 0.2)
    rotating = OidcProvider(tmp_path / "rot", [CLIENT]).start()
    try:
        with InProcessRegistry(config=workload_config(rotating, tmp_path)) as registry, registry.client() as c:
            assert c.get("/v2/", headers=bearer(rotating.mint())).status_code == 200  # keys fetched, cached
            # the provider restarts with a new signing key (same issuer and port)
            new_key, new_jwk = rsa_jwk("test-key-2")
            rotating.stop()
            config = __import__("json").loads(rotating.config_path.read_text())
            config["jwks"] = {"keys": [new_jwk]}
            rotating.config_path.write_text(__import__("json").dumps(config))
            rotating.start()
            token = rotating.mint(key=new_key, kid="test-key-2")
            time.sleep(0.3)
            assert c.get("/v2/", headers=bearer(token)).status_code == 200   # unknown kid → keys refetched
            # the old key is gone from the published set: its tokens are refused now
            assert c.get("/v2/", headers=bearer(rotating.mint())).status_code == 401
            rotating.stop()   # the issuer is down: known keys still verify, unknown ones cannot be fetched
            assert c.get("/v2/", headers=bearer(token)).status_code == 200
            time.sleep(0.3)
            r = c.get("/v2/", headers=bearer(rotating.mint(key=rsa_jwk("k3")[0], kid="k3")))
            assert r.status_code == 503
    finally:
        rotating.stop()


def test_the_ui_login_form_opens_no_session_for_an_id_token(provider: OidcProvider, tmp_path: Path) -> None:
    """As ``/zot/auth/login``: a CI job's short-lived ID token as the password of the web UI's form
    does not turn into a long-lived session."""
    config = {**workload_config(provider, tmp_path), "extensions": {"search": {"enable": True}, "ui": {"enable": True}}}
    with InProcessRegistry(config=config) as registry, registry.client() as c:
        form = c.get("/ui/login")
        r = c.post("/ui/login", data={"csrf": csrf_of(form.text), "username": "ci", "password": provider.mint(),
                                      "next": "/"})
        assert r.status_code == 401 and "Invalid username or password." in r.text
        assert "session" not in c.cookies
        assert c.get("/v2/", headers=password(provider.mint())).status_code == 200  # the token itself still works
