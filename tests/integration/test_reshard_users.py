"""Issue 12: users' records and repositories' search data move with their names.

Users whose owner (``shard_for(user)``) changes in 2→3 keep, after the resize: every API key
(it authenticates, ``GET /zot/auth/apikey`` lists the same keys), every login session cookie,
and their stars and bookmarks of repositories that moved too, with the download counts. A
cosign-signed image that moves to the new shard still reads as trusted (the trust material is
copied to new shards before they become targets). The
resize is run by the CLI with an admin's credentials (``--user --password-stdin``); the admin
routes refuse anyone else.
"""

from __future__ import annotations

import base64

import bcrypt
import httpx
import pytest

from common.ring import shard_for
from tests.cluster import Cluster
from tests.extensions import signing
from tests.extensions.fixtures import put_manifest
from tests.oci import push_blob, push_image

pytestmark = pytest.mark.timeout(300)
ADMIN = ("root", "root-Pw-31c9")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def signature_info(c: httpx.Client, repo: str, headers: dict[str, str] | None = None) -> list[dict]:
    query = f'{{ Image(image: "{repo}:v1") {{ IsSigned SignatureInfo {{ Tool IsTrusted }} }} }}'
    r = c.post("/v2/_zot/ext/search", json={"query": query}, headers=headers)
    assert r.status_code == 200, r.text
    image = r.json()["data"]["Image"]
    assert image["IsSigned"] is True, image
    return list(image["SignatureInfo"])


def test_users_keys_sessions_and_stars_follow_their_owner(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHARDREG_RESHARD_WATCH", "1")
    monkeypatch.setenv("SHARDREG_RESHARD_CLEANUP_DELAY", "1")
    users = {f"user{i}": f"pw-{i}-a8" for i in range(12)}
    moving = [u for u in users if shard_for(u, 2) != shard_for(u, 3)]
    staying = [u for u in users if u not in moving]
    assert len(moving) >= 3 and staying
    repos = [f"pub/app{i}" for i in range(12)]
    assert any(shard_for(r, 2) != shard_for(r, 3) for r in repos)
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in {**users, ADMIN[0]: ADMIN[1]}.items()))
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}, "apikey": True},
                       "accessControl": {"repositories": {"**": {"defaultPolicy": ["read", "create"]}},
                                         "adminPolicy": {"users": [ADMIN[0]], "actions": ["read", "create"]}}},
              "extensions": {"search": {"enable": True}, "ui": {"enable": True},
                             "trust": {"enable": True, "cosign": True, "notation": True}}}
    signed = next(r for r in repos if shard_for(r, 2) != shard_for(r, 3))
    with Cluster(tmp_path / "data", shards=2, workers=2, config=config) as cluster:
        c = httpx.Client(base_url=cluster.url, timeout=60)
        admin = basic(*ADMIN)
        for repo in repos:
            c.headers.update(admin)
            push_image(c, repo, "v1")
        # a cosign-signed image on a repository that moves to the new shard, its key uploaded before
        key, pem = signing.cosign_keypair()
        c.headers.update(admin)
        image = c.get(f"/v2/{signed}/manifests/v1").headers["Docker-Content-Digest"]
        sig, blobs = signing.cosign_signature_manifest(key, signing.cosign_payload(signed, image))
        for blob in blobs:
            push_blob(c, signed, blob)
        put_manifest(c, signed, image.replace(":", "-") + ".sig", sig)
        assert c.post("/v2/_zot/ext/cosign", content=pem).status_code == 200
        assert signature_info(c, signed) == [{"Tool": "cosign", "IsTrusted": True}]
        c.headers.clear()
        keys, cookies = {}, {}
        for user, password in users.items():
            r = c.post("/zot/auth/apikey", headers=basic(user, password), json={"label": "ci"})
            assert r.status_code == 201, r.text
            keys[user] = (r.json()["apiKey"], None)
            r = c.post("/zot/auth/login", headers=basic(user, password))
            assert r.status_code == 200, r.text
            cookies[user] = r.headers["set-cookie"].split(";", 1)[0]
            for repo in repos[:4]:
                r = c.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": repo},
                          headers=basic(user, password))
                assert r.status_code == 200, r.text
            r = c.put("/v2/_zot/ext/userprefs", params={"action": "toggleBookmark", "repo": repos[-1]},
                      headers=basic(user, password))
            assert r.status_code == 200, r.text
        def key_list(user: str, password: str) -> list[tuple[str, str, str]]:
            r = c.get("/zot/auth/apikey", headers=basic(user, password))
            assert r.status_code == 200, r.text
            return sorted((k.get("uuid") or k.get("id"), k["label"], k["createdAt"]) for k in r.json()["apiKeys"])

        listed = {u: key_list(u, p) for u, p in users.items()}
        assert all(len(v) == 1 for v in listed.values())
        for repo in repos:
            assert c.get(f"/v2/{repo}/manifests/v1", headers=admin).status_code == 200

        # the admin routes: admins only
        assert httpx.get(f"{cluster.url}/v2/_shardreg/cluster/status").status_code == 401
        r = httpx.get(f"{cluster.url}/v2/_shardreg/cluster/status", headers=basic("user0", users["user0"]))
        assert r.status_code == 403
        denied = cluster.cli("resize", "--shards", "3", "--user", "user0", "--password-stdin", stdin=users["user0"])
        assert denied.returncode != 0 and "403" in denied.stderr
        done = cluster.cli("resize", "--shards", "3", "--user", ADMIN[0], "--password-stdin", stdin=ADMIN[1] + "\n")
        assert done.returncode == 0, done.stdout + done.stderr + cluster.logs()
        status = cluster.status(headers=admin)
        assert status["shards"] == 3 and status["progress"]["names"]["done"] >= len(moving)

        for user, password in users.items():
            key, _ = keys[user]
            assert c.get("/v2/", headers=basic(user, key)).status_code == 200, user
            assert c.get("/v2/", headers={"Cookie": cookies[user]}).status_code == 200, user
            assert key_list(user, password) == listed[user], user
            query = "{ StarredRepos { Results { Name StarCount } } BookmarkedRepos { Results { Name } } }"
            r = c.post("/v2/_zot/ext/search", json={"query": query}, headers=basic(user, password))
            data = r.json()["data"]
            assert sorted(x["Name"] for x in data["StarredRepos"]["Results"]) == sorted(repos[:4]), user
            assert {x["StarCount"] for x in data["StarredRepos"]["Results"]} == {len(users)}
            assert [x["Name"] for x in data["BookmarkedRepos"]["Results"]] == [repos[-1]]
        assert signature_info(c, signed, admin) == [{"Tool": "cosign", "IsTrusted": True}]
        query = '{ ImageList(repo: "%s") { Results { DownloadCount } } }'
        for repo in repos:
            r = c.post("/v2/_zot/ext/search", json={"query": query % repo}, headers=admin)
            assert r.json()["data"]["ImageList"]["Results"][0]["DownloadCount"] >= 1, repo
        # a key created and a session closed after the move act on the new owner
        user = moving[0]
        r = c.post("/zot/auth/logout", headers={"Cookie": cookies[user]})
        assert r.status_code in (200, 204)
        assert c.get("/v2/", headers={"Cookie": cookies[user]}).status_code == 401
