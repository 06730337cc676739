"""Docker token authentication: the built-in token service and tokens from an external issuer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.auth.conftest import USERS, basic, remember
from tests.auth.helpers import MATRIX, REPOS, Seeded, expected
from tests.cluster import Cluster

SERVICE = "shardreg-test"
ISSUER = "test-issuer"


def get_token(cluster: Cluster, scopes: list[str], headers: dict[str, str] | None = None) -> str:
    r = httpx.get(f"{cluster.url}/auth/token", params=[("service", SERVICE), *(("scope", s) for s in scopes)],
                  headers=headers or {})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] >= 60 and body["issued_at"]
    remember(body["token"])
    return body["token"]


def granted(token: str) -> dict[str, list[str]]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return {f'{a["type"]}:{a["name"]}': a["actions"] for a in claims["access"]}


def external_token(auth_dir: Path, key: str = "external.key", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "ci-robot", "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
              "jti": uuid.uuid4().hex,
              "access": [{"type": "repository", "name": "private/db", "actions": ["pull"]},
                         {"type": "registry", "name": "catalog", "actions": ["*"]}]}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = jwt.encode(claims, (auth_dir / key).read_bytes(), algorithm="RS256")
    remember(token)
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def seeded(token_cluster: Cluster) -> Iterator[Seeded]:
    admin = bearer(get_token(token_cluster, [f"repository:{r}:pull,push,delete" for r in REPOS], basic("root")))
    with httpx.Client(base_url=token_cluster.url, timeout=30) as c:
        yield Seeded(c, admin, REPOS)


def test_challenges(token_cluster: Cluster) -> None:
    realm = f'realm="{token_cluster.url}/auth/token",service="{SERVICE}"'
    r = httpx.get(f"{token_cluster.url}/v2/")
    assert r.status_code == 401 and r.headers["www-authenticate"] == f"Bearer {realm}"
    r = httpx.get(f"{token_cluster.url}/v2/team-a/app/manifests/v1")
    assert r.headers["www-authenticate"] == f'Bearer {realm},scope="repository:team-a/app:pull"'
    r = httpx.post(f"{token_cluster.url}/v2/team-a/app/blobs/uploads/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == f'Bearer {realm},scope="repository:team-a/app:pull,push"'


def test_token_endpoint_narrows_to_policy(token_cluster: Cluster) -> None:
    scopes = ["repository:team-a/app:pull,push", "repository:private/db:pull", "registry:catalog:*"]
    assert granted(get_token(token_cluster, scopes, basic("bob"))) == {
        "repository:team-a/app": ["pull", "push"], "repository:private/db": [], "registry:catalog": ["*"]}
    assert granted(get_token(token_cluster, scopes, basic("alice"))) == {
        "repository:team-a/app": [], "repository:private/db": [], "registry:catalog": ["*"]}
    assert granted(get_token(token_cluster, ["repository:public/app:pull,push"])) == {
        "repository:public/app": ["pull"]}  # anonymous
    r = httpx.get(f"{token_cluster.url}/auth/token", params={"service": SERVICE, "scope": scopes[0]},
                  headers=basic("bob", "wrong"))
    assert r.status_code == 401
    r = httpx.get(f"{token_cluster.url}/auth/token", params={"service": "elsewhere"}, headers=basic("bob"))
    assert r.status_code == 400
    # OAuth2 password grant (POST form), as docker's newer clients use
    r = httpx.post(f"{token_cluster.url}/auth/token",
                   data={"grant_type": "password", "username": "bob", "password": USERS["bob"],
                         "service": SERVICE, "scope": "repository:team-a/app:pull"})
    assert r.status_code == 200 and granted(r.json()["access_token"]) == {"repository:team-a/app": ["pull"]}
    remember(r.json()["access_token"])


@pytest.mark.parametrize(("user", "repo", "action", "allowed"), MATRIX)
def test_matrix_bearer(token_cluster: Cluster, seeded: Seeded, user: str, repo: str, action: str,
                       allowed: bool) -> None:
    def headers(repo: str, action: str) -> dict[str, str]:
        return bearer(get_token(token_cluster, [f"repository:{repo}:pull,push,delete"], basic(user)))

    status = seeded.do(action, repo, headers)
    if allowed:
        assert status == expected(action, True)
    else:
        assert status in (401, 403)  # 401 insufficient_scope when the token lacks it, 403 when the policy denies


def test_api_key_through_token_service(token_cluster: Cluster, seeded: Seeded) -> None:
    r = httpx.post(f"{token_cluster.url}/zot/auth/apikey", headers=basic("carol"),
                   json={"label": "ci", "scopes": ["team-a/app"]})
    assert r.status_code == 201
    key = r.json()["apiKey"]
    remember(key)
    token = get_token(token_cluster, ["repository:team-a/app:pull", "repository:private/db:pull",
                                      "registry:catalog:*"], basic("carol", key))
    assert granted(token)["repository:private/db"] == []  # scope escape refused at issuance
    assert seeded.do("read", "team-a/app", bearer(token)) == 200
    r = httpx.get(f"{token_cluster.url}/v2/_catalog", headers=bearer(token))
    assert set(r.json()["repositories"]) == {"team-a/app"}
    # a forged access claim cannot widen it: carol's own token for private/db read is fine, the key's is not
    r = httpx.get(f"{token_cluster.url}/v2/private/db/manifests/v1", headers=bearer(token))
    assert r.status_code in (401, 403)


def test_insufficient_scope_and_denied(token_cluster: Cluster, seeded: Seeded) -> None:
    token = get_token(token_cluster, ["repository:team-a/app:pull"], basic("bob"))
    r = httpx.post(f"{token_cluster.url}/v2/team-a/app/blobs/uploads/", headers=bearer(token))
    assert r.status_code == 401  # bob may push, but this token does not say so: fetch another one
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert 'scope="repository:team-a/app:pull,push"' in r.headers["www-authenticate"]
    token = get_token(token_cluster, ["repository:private/db:pull"], basic("alice"))
    r = httpx.get(f"{token_cluster.url}/v2/private/db/manifests/v1", headers=bearer(token))
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"  # a new token would not help


def test_external_tokens(token_cluster: Cluster, auth_dir: Path, seeded: Seeded) -> None:
    url = f"{token_cluster.url}/v2/private/db/manifests/v1"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert httpx.get(url, headers={**accept, **bearer(external_token(auth_dir))}).status_code == 200
    r = httpx.get(f"{token_cluster.url}/v2/_catalog", headers=bearer(external_token(auth_dir)))
    assert r.status_code == 200 and set(REPOS) <= set(r.json()["repositories"])
    now = int(time.time())
    bad = {
        "forged": external_token(auth_dir, key="forger.key"),
        "expired": external_token(auth_dir, exp=now - 60, iat=now - 600, nbf=now - 600),
        "not yet valid": external_token(auth_dir, nbf=now + 600),
        "wrong audience": external_token(auth_dir, aud="another-registry"),
        "wrong issuer": external_token(auth_dir, iss="evil"),
        "no expiry": external_token(auth_dir, exp=None),
        "alg none": jwt.encode({"iss": ISSUER, "aud": SERVICE, "exp": now + 60, "sub": "x",
                                "access": [{"type": "repository", "name": "private/db", "actions": ["pull"]}]},
                               None, algorithm="none"),
        "garbage": "not.a.token",
    }
    for why, token in bad.items():
        r = httpx.get(url, headers={**accept, **bearer(token)})
        assert r.status_code == 401, why
        assert 'error="invalid_token"' in r.headers["www-authenticate"], why
        assert token not in r.text
    # HS256 signed with the public certificate as the secret (algorithm confusion)
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(
        {"iss": ISSUER, "aud": SERVICE, "exp": now + 60, "sub": "x",
         "access": [{"type": "repository", "name": "private/db", "actions": ["pull"]}]}).encode())
    mac = hmac.new((auth_dir / "external.crt").read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64(mac)}"
    assert httpx.get(url, headers={**accept, **bearer(confused)}).status_code == 401
    # the token's grants bound it: pull on private/db does not allow pull elsewhere
    r = httpx.get(f"{token_cluster.url}/v2/team-a/app/manifests/v1", headers={**accept,
                                                                              **bearer(external_token(auth_dir))})
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_basic_auth_still_works_with_tokens(token_cluster: Cluster, seeded: Seeded) -> None:
    assert seeded.do("read", "team-a/app", basic("bob")) == 200
    assert seeded.do("read", "private/db", basic("bob")) == 403


def test_sessions_with_keys_file(token_cluster: Cluster) -> None:
    r = httpx.post(f"{token_cluster.url}/zot/auth/login", headers=basic("carol"))
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    remember(cookie.split("=", 1)[1])
    for _ in range(8):
        with httpx.Client(base_url=token_cluster.url) as c:
            assert c.get("/v2/private/db/tags/list", headers={"Cookie": cookie}).status_code == 200


def test_failed_logins_are_rate_limited(token_cluster: Cluster) -> None:
    # another loopback address, so that the rest of the suite (127.0.0.1) is not blocked
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=token_cluster.url, transport=transport) as c:
        statuses = [c.get("/v2/", headers=basic("bob", f"wrong-{i}")).status_code for i in range(12)]
        assert statuses[0] == 401 and 429 in statuses
        assert c.get("/v2/", headers=basic("bob")).status_code in (200, 429)
        blocked = c.get("/v2/", headers=basic("bob", "wrong-again"))
        assert blocked.status_code == 429 and blocked.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert httpx.get(f"{token_cluster.url}/v2/", headers=basic("bob")).status_code == 200
