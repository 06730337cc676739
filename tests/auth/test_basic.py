"""htpasswd, API keys and sessions against a real cluster (2 shards, 2 gateway workers)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import USERS, basic, remember
from tests.auth.helpers import MATRIX, REPOS, Seeded, expected
from tests.cluster import ROOT, Cluster


@pytest.fixture(scope="module")
def seeded(basic_cluster: Cluster) -> Iterator[Seeded]:
    with httpx.Client(base_url=basic_cluster.url, timeout=30) as c:
        yield Seeded(c, basic("root"), REPOS)


def fresh_get(cluster: Cluster, path: str, **kw: object) -> httpx.Response:
    """One request on a new connection (so that both gateway workers get some)."""
    with httpx.Client(base_url=cluster.url, timeout=30) as c:
        return c.get(path, **kw)  # type: ignore[arg-type]


def new_key(cluster: Cluster, user: str, **body: object) -> dict:
    r = httpx.post(f"{cluster.url}/zot/auth/apikey", headers=basic(user), json=body)
    assert r.status_code == 201, r.text
    remember(r.json()["apiKey"])
    return r.json()


def login(cluster: Cluster, user: str) -> str:
    r = httpx.post(f"{cluster.url}/zot/auth/login", headers=basic(user))
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    remember(value)
    return value


# -- the matrix ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("user", "repo", "action", "allowed"), MATRIX)
def test_matrix_htpasswd(seeded: Seeded, user: str, repo: str, action: str, allowed: bool) -> None:
    assert seeded.do(action, repo, basic(user)) == expected(action, allowed)


@pytest.fixture(scope="module")
def user_keys(basic_cluster: Cluster) -> dict[str, str]:
    return {user: new_key(basic_cluster, user, label=f"{user}-ci")["apiKey"] for user in USERS}


@pytest.mark.parametrize(("user", "repo", "action", "allowed"), MATRIX)
def test_matrix_api_key(seeded: Seeded, user_keys: dict[str, str], user: str, repo: str, action: str,
                        allowed: bool) -> None:
    assert seeded.do(action, repo, basic(user, user_keys[user])) == expected(action, allowed)


@pytest.fixture(scope="module")
def user_sessions(basic_cluster: Cluster) -> dict[str, str]:
    return {user: login(basic_cluster, user) for user in USERS}


@pytest.mark.parametrize(("user", "repo", "action", "allowed"), MATRIX)
def test_matrix_session(seeded: Seeded, user_sessions: dict[str, str], user: str, repo: str, action: str,
                        allowed: bool) -> None:
    assert seeded.do(action, repo, {"Cookie": f"session={user_sessions[user]}"}) == expected(action, allowed)


@pytest.mark.parametrize(("repo", "action", "status"), [
    ("public/app", "read", 200), ("other/x", "read", 401), ("private/db", "read", 401),
    ("public/app", "create", 401), ("public/app", "update", 401), ("public/app", "delete", 401),
])
def test_anonymous(seeded: Seeded, repo: str, action: str, status: int) -> None:
    assert seeded.do(action, repo, {}) == status


def test_challenge_and_error_body(basic_cluster: Cluster, seeded: Seeded) -> None:
    r = fresh_get(basic_cluster, "/v2/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="shardreg-test"'
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert fresh_get(basic_cluster, "/v2/", headers=basic("dave")).status_code == 200
    r = fresh_get(basic_cluster, "/v2/private/db/manifests/v1", headers=basic("dave"))
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    r = fresh_get(basic_cluster, "/v2/private/db/tags/list")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    r = fresh_get(basic_cluster, "/v2/", headers=basic("alice", "not-" + USERS["alice"]))
    assert r.status_code == 401 and USERS["alice"] not in r.text
    r = fresh_get(basic_cluster, "/v2/", headers={"Authorization": "Basic %%%garbage"})
    assert r.status_code == 401
    r = fresh_get(basic_cluster, "/v2/", headers={"Authorization": "Bearer abc.def.ghi"})
    assert r.status_code == 401  # no token auth configured here


def test_fail_delay(basic_cluster: Cluster) -> None:
    started = time.monotonic()
    assert fresh_get(basic_cluster, "/v2/", headers=basic("bob", "wrong")).status_code == 401
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert fresh_get(basic_cluster, "/v2/", headers=basic("bob")).status_code == 200


def test_catalog_filter(basic_cluster: Cluster, seeded: Seeded, user_keys: dict[str, str]) -> None:
    def names(headers: dict[str, str]) -> set[str]:
        r = fresh_get(basic_cluster, "/v2/_catalog", headers=headers)
        assert r.status_code == 200, r.text
        return set(r.json()["repositories"])

    assert names(basic("root")) >= set(REPOS)
    assert names(basic("alice")) & set(REPOS) == {"public/app", "other/x"}
    assert names(basic("bob")) & set(REPOS) == {"public/app", "other/x", "team-a/app", "team-a/updater"}
    assert names(basic("carol")) & set(REPOS) == set(REPOS) - {"team-a/updater"}  # only bob is named there
    assert names({}) & set(REPOS) == {"public/app"}  # anonymous: only what anonymousPolicy opens
    assert names(basic("bob", user_keys["bob"])) & set(REPOS) == names(basic("bob")) & set(REPOS)


def test_cross_repo_mount_needs_read_on_source(basic_cluster: Cluster, seeded: Seeded) -> None:
    # carol may create in team-a/** and read private/db; alice may create in public/** but not read private/db
    with httpx.Client(base_url=basic_cluster.url, timeout=30) as c:
        layer = __import__("json").loads(seeded.manifests["private/db"]["v1"])["layers"][0]["digest"]
        r = c.post("/v2/public/mounted/blobs/uploads/", params={"mount": layer, "from": "private/db"},
                   headers=basic("alice"))
        assert r.status_code == 403
        r = c.post("/v2/team-a/mounted/blobs/uploads/", params={"mount": layer, "from": "private/db"},
                   headers=basic("carol"))
        assert r.status_code == 201, r.text


# -- API keys: the zot document's commands -------------------------------------------------------
def test_apikey_lifecycle_as_documented(basic_cluster: Cluster, seeded: Seeded) -> None:
    url = basic_cluster.url
    expiry = (datetime.now(UTC) + timedelta(days=30)).astimezone().replace(microsecond=0).isoformat()
    # curl -u user:password -X POST http://localhost:8080/zot/auth/apikey -d '{"label": ..., "scopes": [...], ...}'
    r = httpx.post(f"{url}/zot/auth/apikey", headers={**basic("carol"), "User-Agent": "curl/8.5.0"},
                   content=f'{{"label": "myAPIKEY", "scopes": ["team-a/app", "repo2"], "expirationDate": "{expiry}"}}')
    assert r.status_code == 201, r.text
    created = r.json()
    remember(created["apiKey"])
    assert set(created) == {"createdAt", "expirationDate", "isExpired", "creatorUa", "generatedBy", "lastUsed",
                            "label", "scopes", "uuid", "apiKey"}
    assert re.fullmatch(r"zak_[0-9a-f]{32}", created["apiKey"])
    assert created["isExpired"] is False and created["generatedBy"] == "manual"
    assert created["creatorUa"] == "curl/8.5.0" and created["lastUsed"] == "0001-01-01T00:00:00Z"
    assert created["scopes"] == ["team-a/app", "repo2"] and created["label"] == "myAPIKEY"
    assert datetime.fromisoformat(created["expirationDate"]) == datetime.fromisoformat(expiry)
    key = created["apiKey"]
    # curl -u user:zak_... http://localhost:8080/v2/_catalog  (scoped: only team-a/app is visible)
    r = fresh_get(basic_cluster, "/v2/_catalog", headers=basic("carol", key))
    assert r.status_code == 200 and set(r.json()["repositories"]) == {"team-a/app"}
    # scope escape: carol may read private/db, the key may not
    assert fresh_get(basic_cluster, "/v2/private/db/manifests/v1", headers=basic("carol", key)).status_code == 403
    assert fresh_get(basic_cluster, "/v2/private/db/manifests/v1", headers=basic("carol")).status_code == 200
    assert seeded.do("read", "team-a/app", basic("carol", key)) == 200
    # the key belongs to carol: with another user name it is just a wrong password
    assert fresh_get(basic_cluster, "/v2/", headers=basic("bob", key)).status_code == 401
    # a key cannot manage keys
    assert httpx.get(f"{url}/zot/auth/apikey", headers=basic("carol", key)).status_code == 401
    # curl -u user:password -X GET http://localhost:8080/zot/auth/apikey
    time.sleep(2.6)  # lastUsed is written in batches
    r = httpx.get(f"{url}/zot/auth/apikey", headers=basic("carol"))
    assert r.status_code == 200
    listed = {k["uuid"]: k for k in r.json()["apiKeys"]}
    assert "apiKey" not in listed[created["uuid"]]
    assert listed[created["uuid"]]["lastUsed"] != "0001-01-01T00:00:00Z"
    # curl -u user:password -X DELETE http://localhost:8080/v2/zot/auth/apikey?id=$uuid
    r = httpx.delete(f"{url}/v2/zot/auth/apikey?id={created['uuid']}", headers=basic("carol"))
    assert r.status_code == 200, r.text
    assert httpx.delete(f"{url}/zot/auth/apikey?id={created['uuid']}", headers=basic("carol")).status_code == 404
    time.sleep(3.5)  # revocation reaches every worker within the cache TTL
    for _ in range(8):
        assert fresh_get(basic_cluster, "/v2/_catalog", headers=basic("carol", key)).status_code == 401
    r = httpx.get(f"{url}/zot/auth/apikey", headers=basic("carol"))
    assert created["uuid"] not in {k["uuid"] for k in r.json()["apiKeys"]}


def test_apikey_expiry_and_validation(basic_cluster: Cluster) -> None:
    url = basic_cluster.url
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    key = new_key(basic_cluster, "dave", label="short", expirationDate=soon)["apiKey"]
    assert fresh_get(basic_cluster, "/v2/", headers=basic("dave", key)).status_code == 200
    past = "2023-08-28T17:10:05+03:00"
    r = httpx.post(f"{url}/zot/auth/apikey", headers=basic("dave"), json={"label": "x", "expirationDate": past})
    assert r.status_code == 400
    assert httpx.post(f"{url}/zot/auth/apikey", headers=basic("dave"), content=b"{nope").status_code == 400
    assert httpx.post(f"{url}/zot/auth/apikey", headers=basic("dave"),
                      json={"scopes": "not-a-list"}).status_code == 400
    assert httpx.post(f"{url}/zot/auth/apikey", json={"label": "anon"}).status_code == 401
    assert httpx.post(f"{url}/zot/auth/apikey", headers=basic("dave"),
                      content=b"x" * 9000).status_code == 413
    assert httpx.delete(f"{url}/zot/auth/apikey", headers=basic("dave")).status_code == 400
    # other users' keys are invisible and cannot be deleted
    dave_ids = [k["uuid"] for k in httpx.get(f"{url}/zot/auth/apikey", headers=basic("dave")).json()["apiKeys"]]
    alice_ids = [k["uuid"] for k in httpx.get(f"{url}/zot/auth/apikey", headers=basic("alice")).json()["apiKeys"]]
    assert not set(dave_ids) & set(alice_ids)
    assert httpx.delete(f"{url}/zot/auth/apikey?id={dave_ids[0]}", headers=basic("alice")).status_code == 404
    time.sleep(2.2)
    for _ in range(6):
        assert fresh_get(basic_cluster, "/v2/", headers=basic("dave", key)).status_code == 401
    listed = httpx.get(f"{url}/zot/auth/apikey", headers=basic("dave")).json()["apiKeys"]
    assert any(k["isExpired"] for k in listed)


def test_apikeys_survive_restart_of_a_shard(basic_cluster: Cluster) -> None:
    key = new_key(basic_cluster, "bob", label="durable")["apiKey"]
    for shard in ("shard-0", "shard-1"):
        old = basic_cluster.kill_child(shard)
        basic_cluster.wait_restarted(shard, old)
    time.sleep(3.2)  # past the worker caches: the lookups go to the restarted shards
    deadline = time.monotonic() + 10
    while fresh_get(basic_cluster, "/v2/", headers=basic("bob", key)).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)


# -- sessions ----------------------------------------------------------------------------------
def test_sessions_across_workers(basic_cluster: Cluster) -> None:
    cookie = login(basic_cluster, "bob")
    headers = {"Cookie": f"session={cookie}"}
    for _ in range(16):  # new connections land on both gateway workers
        assert fresh_get(basic_cluster, "/v2/team-a/app/tags/list", headers=headers).status_code == 200
    forged = "YWxpY2U" + cookie[cookie.index("."):]  # alice's name with bob's session and signature
    assert fresh_get(basic_cluster, "/v2/", headers={"Cookie": f"session={forged}"}).status_code == 401
    assert fresh_get(basic_cluster, "/v2/", headers={"Cookie": "session=garbage"}).status_code == 401
    r = httpx.post(f"{basic_cluster.url}/zot/auth/logout", headers=headers)
    assert r.status_code == 200 and "Max-Age=0" in r.headers["set-cookie"]
    time.sleep(3.5)
    for _ in range(8):
        assert fresh_get(basic_cluster, "/v2/", headers=headers).status_code == 401
    assert httpx.post(f"{basic_cluster.url}/zot/auth/logout", headers=headers).status_code == 401
    assert httpx.post(f"{basic_cluster.url}/zot/auth/login", headers=basic("bob", "wrong")).status_code == 401


def test_session_manages_api_keys(basic_cluster: Cluster) -> None:
    headers = {"Cookie": f"session={login(basic_cluster, 'alice')}"}
    r = httpx.post(f"{basic_cluster.url}/zot/auth/apikey", headers=headers, json={"label": "from-session"})
    assert r.status_code == 201
    remember(r.json()["apiKey"])
    assert r.json()["label"] == "from-session"


# -- htpasswd management -----------------------------------------------------------------------
def test_user_cli_and_reload(basic_cluster: Cluster, auth_dir: Path) -> None:
    htpasswd = auth_dir / "htpasswd"
    password = "erin-Pw-2f9c"
    remember(password)

    def user(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "common.cli", "user", *argv, "--htpasswd", str(htpasswd)],
                              cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=30)

    assert fresh_get(basic_cluster, "/v2/", headers=basic("erin", password)).status_code == 401
    result = user("add", "erin", "--password-stdin", "--cost", "4", stdin=password + "\n")
    assert result.returncode == 0, result.stderr
    assert "erin" in user("list").stdout.split()
    assert oct(htpasswd.stat().st_mode & 0o777) == "0o600"
    assert re.search(r"^erin:\$2[aby]\$04\$", htpasswd.read_text(), re.M)
    deadline = time.monotonic() + 5
    while fresh_get(basic_cluster, "/v2/", headers=basic("erin", password)).status_code != 200:
        assert time.monotonic() < deadline, "the new user was not picked up"
        time.sleep(0.2)
    assert user("remove", "erin").returncode == 0
    assert user("remove", "erin").returncode == 1
    time.sleep(1.5)
    for _ in range(6):
        assert fresh_get(basic_cluster, "/v2/", headers=basic("erin", password)).status_code == 401
