"""OpenID Connect login (``http.auth.openid``) with a real provider (npm oidc-provider on loopback).

The browser is an HTTP client: it follows the registry's redirect to the provider, submits the
provider's login and consent forms, and follows the provider's redirect back to
``/zot/auth/callback/oidc`` (the registry runs in process at http://registry.test). Then: the
session works, groups from the ID token feed accessControl, the user creates an API key; and
each refusal: forged, swapped and replayed state, a wrong nonce, an expired code, an ID token
from another issuer or for another audience, an unsafe callback_ui.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import parse_config
from gateway.auth.oidc_login import STARTS_PER_MINUTE, LoginError, OpenIDLogin
from gateway.extensions.mgmt import stripped_auth
from tests.auth.conftest import basic, write_htpasswd
from tests.auth.helpers import try_push
from tests.auth.oidc_provider import OidcProvider, browser_login, rsa_jwk
from tests.inprocess import BASE_URL, InProcessRegistry

CALLBACK = f"{BASE_URL}/zot/auth/callback/oidc"
CLIENT = {"client_id": "shardreg-ui", "client_secret": "ui-client-secret-93d1", "grant_types": ["authorization_code"],
          "response_types": ["code"], "redirect_uris": [CALLBACK]}
CODE_TTL = 3
ACCESS: dict[str, Any] = {"repositories": {
    "platform/**": {"policies": [{"groups": ["platform"], "actions": ["read", "create"]}]},
    "olga/**": {"policies": [{"users": ["olga"], "actions": ["read", "create"]}]},
}}


def openid_config(provider: OidcProvider, d: Path) -> dict[str, Any]:
    creds = d / "oidc-credentials.json"
    creds.write_text(json.dumps({"clientid": CLIENT["client_id"], "clientsecret": CLIENT["client_secret"]}))
    return {"http": {"externalUrl": BASE_URL, "accessControl": ACCESS, "auth": {
        "htpasswd": {"path": str(write_htpasswd(d / "htpasswd"))}, "apikey": True,
        "sessionSecret": "0123456789abcdef-openid", "failLimit": 1000,
        "openid": {"callbackAllowOrigins": ["http://127.0.0.1:3000"], "providers": {"oidc": {
            "name": "Test SSO", "issuer": provider.issuer, "credentialsFile": str(creds),
            "scopes": ["openid", "profile", "email", "groups"],
            "claimMapping": {"username": "preferred_username", "groups": "groups"}}}}}},
        "extensions": {"search": {"enable": True}, "mgmt": {"enable": True}}}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc-login"), [CLIENT], code_ttl=CODE_TTL) as p:
        yield p


@pytest.fixture(scope="module")
def registry(provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    with InProcessRegistry(config=openid_config(provider, tmp_path_factory.mktemp("openid-reg"))) as r:
        yield r


@pytest.fixture()
def browser(registry: InProcessRegistry) -> Iterator[httpx.Client]:
    """The browser's registry side (its cookie jar holds the state and session cookies)."""
    with registry.client() as c:
        yield c


@pytest.fixture()
def idp(provider: OidcProvider) -> Iterator[httpx.Client]:
    """The browser's provider side (the provider's own login cookies)."""
    with httpx.Client(base_url=provider.issuer, timeout=30) as c:
        yield c


def start(browser: httpx.Client, callback_ui: str = "/home") -> str:
    r = browser.get("/zot/auth/login", params={"provider": "oidc", "callback_ui": callback_ui})
    assert r.status_code == 302, r.text
    assert "oidc_state" in r.cookies
    return r.headers["location"]


def back(browser: httpx.Client, location: str) -> httpx.Response:
    assert location.startswith(CALLBACK), location
    return browser.get(location[len(BASE_URL):])


def login(browser: httpx.Client, idp: httpx.Client, user: str = "olga") -> httpx.Response:
    return back(browser, browser_login(idp, start(browser), user))


def test_full_login_session_groups_and_api_key(browser: httpx.Client, idp: httpx.Client) -> None:
    authorize = start(browser)
    params = httpx.URL(authorize).params
    assert params["code_challenge_method"] == "S256" and params["code_challenge"] and params["nonce"]
    assert params["redirect_uri"] == CALLBACK and params["scope"] == "openid profile email groups"
    r = back(browser, browser_login(idp, authorize, "olga"))
    assert r.status_code == 302 and r.headers["location"] == "/home"
    assert "session" in r.cookies
    assert browser.get("/v2/").status_code == 200                           # the session cookie
    assert try_push(browser, "olga/app", "v1", {}) == 201                   # policy by user name
    assert try_push(browser, "platform/app", "v1", {}) == 201               # group from the ID token
    # an API key for the command line, with the same user and groups
    r = browser.post("/zot/auth/apikey", json={"label": "laptop"})
    assert r.status_code == 201, r.text
    key = r.json()["apiKey"]
    with httpx.Client(base_url=str(browser.base_url), transport=browser._transport) as cli:
        assert try_push(cli, "platform/app", "v2", basic("olga", key)) == 201
        assert try_push(cli, "olga/app", "v2", basic("piet", key)) == 401   # the key is olga's only
    # piet (group readers only) cannot push to platform/**
    with httpx.Client(base_url=str(browser.base_url), transport=browser._transport) as other, \
            httpx.Client(base_url=str(idp.base_url)) as other_idp:
        assert login(other, other_idp, "piet").status_code == 302
        assert try_push(other, "platform/app", "v3", {}) == 403


def test_replayed_forged_and_swapped_state_are_refused(browser: httpx.Client, idp: httpx.Client) -> None:
    location = browser_login(idp, start(browser), "olga")
    assert back(browser, location).status_code == 302
    browser.cookies.delete("session")
    # the same callback again (the state cookie is restored, as an attacker replaying would)
    r = browser.get("/zot/auth/login", params={"provider": "oidc"})   # a fresh cookie of the same shape
    replay = back(browser, location)
    assert replay.status_code == 400 and "state" in replay.text
    # forged state: not the one this browser's cookie holds
    cb = httpx.URL(browser_login(idp, start(browser), "olga"))
    forged = browser.get("/zot/auth/callback/oidc", params={"code": cb.params["code"], "state": "forged-state"})
    assert forged.status_code == 400 and "state does not match" in forged.text
    # no state cookie at all (a callback delivered to another browser)
    with httpx.Client(base_url=str(browser.base_url), transport=browser._transport) as stranger:
        r = stranger.get(str(cb)[len(BASE_URL):])
        assert r.status_code == 400 and "state cookie missing" in r.text
    assert r.status_code == 400


def test_replay_of_a_completed_login_is_refused(browser: httpx.Client, idp: httpx.Client) -> None:
    authorize = start(browser)
    state_cookie = browser.cookies["oidc_state"]
    location = browser_login(idp, authorize, "olga")
    assert back(browser, location).status_code == 302
    browser.cookies.set("oidc_state", state_cookie, domain="registry.test", path="/zot/auth/callback")
    r = back(browser, location)
    assert r.status_code == 400 and "already completed" in r.text


def test_wrong_nonce_is_refused(browser: httpx.Client, idp: httpx.Client) -> None:
    authorize = httpx.URL(start(browser))
    tampered = authorize.copy_set_param("nonce", "attacker-chosen-nonce")
    r = back(browser, browser_login(idp, str(tampered), "olga"))
    assert r.status_code == 401 and "nonce" in r.text
    assert browser.get("/v2/").status_code == 401


def test_expired_code_is_refused(browser: httpx.Client, idp: httpx.Client) -> None:
    location = browser_login(idp, start(browser), "olga")
    time.sleep(CODE_TTL + 1)
    r = back(browser, location)
    assert r.status_code == 401 and "refused the authorization code" in r.text


def test_provider_error_and_bad_requests(browser: httpx.Client) -> None:
    r = browser.get("/zot/auth/callback/oidc", params={"error": "access_denied", "state": "x"})
    assert r.status_code == 401 and "access_denied" in r.text
    assert browser.get("/zot/auth/callback/oidc").status_code == 400
    assert browser.get("/zot/auth/login", params={"provider": "nope"}).status_code == 404
    assert browser.get("/zot/auth/callback/nope", params={"code": "c", "state": "s"}).status_code == 400


@pytest.mark.parametrize("callback_ui, ok", [
    ("/", True), ("/v2/", True), ("http://127.0.0.1:3000/after", True), (f"{BASE_URL}/x", True),
    ("https://evil.example/", False), ("//evil.example/", False), ("/\\evil.example", False),
    ("javascript:alert(1)", False),
])
def test_callback_ui_must_be_allowed(browser: httpx.Client, callback_ui: str, ok: bool) -> None:
    r = browser.get("/zot/auth/login", params={"provider": "oidc", "callback_ui": callback_ui})
    assert (r.status_code == 302) is ok, r.text
    if not ok:
        assert r.status_code == 400 and "callback_ui" in r.text


def test_id_tokens_of_another_issuer_or_audience_are_refused(provider: OidcProvider, tmp_path: Path) -> None:
    """The callback's ID token check, with tokens signed by the provider's own published key."""
    config = parse_config(openid_config(provider, tmp_path))
    assert config.http.auth.openid is not None
    login = OpenIDLogin(config.http.auth.openid, BASE_URL)
    oidc = login.provider("oidc")

    async def verify(token: str, nonce: str = "n-1") -> str:
        try:
            await oidc.verify_id_token(token, nonce)
            return "accepted"
        except LoginError as exc:
            return str(exc)

    def mint(**claims: Any) -> str:
        return provider.mint(**{"aud": "shardreg-ui", "nonce": "n-1", **claims})

    async def run() -> list[str]:
        return [await verify(mint()), await verify(mint(aud="another-client")),
                await verify(mint(iss="https://accounts.google.com")),
                await verify(mint(exp=int(time.time()) - 600, iat=int(time.time()) - 1200)),
                await verify(mint(), nonce="n-2"), await verify(mint(key=rsa_jwk("x")[0], kid="x"))]

    results = asyncio.run(run())
    assert results[0] == "accepted"
    assert "audience" in results[1] and "another issuer" in results[2] and "expired" in results[3]
    assert "nonce" in results[4] and "unknown key" in results[5]


def test_providers_listed_for_the_web_ui(browser: httpx.Client, provider: OidcProvider, tmp_path: Path) -> None:
    r = browser.get("/v2/_zot/ext/mgmt", params={"resource": "config"})
    assert r.status_code == 200
    assert r.json()["http"]["auth"]["openid"] == {"providers": {"oidc": {"name": "Test SSO"}}}
    assert "ui-client-secret" not in r.text
    config = parse_config(openid_config(provider, tmp_path))
    assert stripped_auth(config)["openid"] == {"providers": {"oidc": {"name": "Test SSO"}}}


def test_a_cross_site_browser_continues_on_this_site(browser: httpx.Client, idp: httpx.Client) -> None:
    """Coming back from the provider's site, a browser would not send the SameSite=Strict session
    cookie along a redirect: it gets a page that navigates on (same site), with the session set."""
    location = browser_login(idp, start(browser, "/ui/explore?q=a&b=1"), "olga")
    r = browser.get(location[len(BASE_URL):], headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"})
    assert r.status_code == 200 and "session" in r.cookies
    assert '<meta http-equiv="refresh" content="0;url=/ui/explore?q=a&amp;b=1">' in r.text
    assert r.headers["Referrer-Policy"] == "no-referrer" and r.headers["Cache-Control"] == "no-store"
    assert browser.get("/v2/").status_code == 200


def test_login_starts_are_rate_limited_per_client(browser: httpx.Client) -> None:
    """Each start writes a state record: a client cannot start logins without bound (last test here:
    it empties this client's bucket)."""
    statuses = [browser.get("/zot/auth/login", params={"provider": "oidc"}).status_code for _ in range(40)]
    assert statuses[0] == 302 and statuses[-1] == 429
    assert statuses.count(302) <= STARTS_PER_MINUTE
