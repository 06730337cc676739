"""Upstream auth (Docker token flow against shardreg's own token service; Basic against Distribution)
and access control of pull-through (nothing an unauthorised caller asks for reaches the upstream)."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests import oci
from tests.cluster import Cluster
from tests.sync.tlscerts import make_pki
from tests.sync.upstreams import Distribution, push_image

USERS = {"pusher": "pusher-Pw-1f3e", "puller": "puller-Pw-77aa", "reader": "reader-Pw-0c0c", "dave": "dave-Pw-5e5e"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()}


def htpasswd(path: Path, users: list[str]) -> Path:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(USERS[u].encode(), bcrypt.gensalt(4)).decode()}\n" for u in users))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sync-auth")
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "signing.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    # upstream 1: shardreg with auth on and its built-in token service (the Docker token flow)
    token_config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd(tmp / "up.htpasswd", ["pusher", "puller"]))},
                                      "bearer": {"service": "upstream", "key": str(tmp / "signing.pem")}},
                             "accessControl": {"repositories": {"**": {"policies": [
                                 {"users": ["puller"], "actions": ["read"]}], "anonymousPolicy": []}},
                                 "adminPolicy": {"users": ["pusher"], "actions": ["read", "create", "update", "delete"]}}}}
    token_upstream = Cluster(tmp / "token-up", shards=1, workers=1, config=token_config).start()
    # upstream 2: Distribution with Basic auth
    basic_upstream = Distribution(htpasswd(tmp / "basic.htpasswd", ["puller"])).start()
    # upstream 3: Distribution on HTTPS requiring a client certificate (mTLS), trusted through certDir
    pki = make_pki(tmp / "pki")
    tls_upstream = Distribution(tls=pki).start()
    credentials = {f"127.0.0.1:{token_upstream.port}": {"username": "puller", "password": USERS["puller"]},
                   f"127.0.0.1:{basic_upstream.port}": {"username": "puller", "password": USERS["puller"]}}
    (tmp / "credentials.json").write_text(json.dumps(credentials))
    config = {
        "http": {"auth": {"htpasswd": {"path": str(htpasswd(tmp / "down.htpasswd", ["reader", "dave"]))}},
                 "accessControl": {"repositories": {
                     "**": {"policies": [{"users": ["reader"], "actions": ["read"]}], "anonymousPolicy": []},
                     "basic/secret/**": {"policies": [], "anonymousPolicy": []}},
                     "adminPolicy": {"users": [], "actions": []}, "metrics": {"users": ["reader"]}}},
        "extensions": {"mgmt": {"enable": True}, "sync": {"credentialsFile": str(tmp / "credentials.json"), "registries": [
            {"urls": [token_upstream.url], "onDemand": True, "content": [{"prefix": "secure/**"}]},
            {"urls": [basic_upstream.url], "onDemand": True, "content": [{"prefix": "basic/**"}]},
            {"urls": [tls_upstream.url], "onDemand": True, "certDir": str(pki["cert_dir"]),
             "content": [{"prefix": "tls/**"}]}]}},
    }
    down = Cluster(tmp / "down", shards=2, workers=1, config=config)
    try:
        down.start()
        yield {"down": down, "token": token_upstream, "basic": basic_upstream, "tls": tls_upstream, "pki": pki}
    finally:
        down.stop()
        token_upstream.stop()
        basic_upstream.close()
        tls_upstream.close()


def pull(url: str, repo: str, tag: str, user: str) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    with httpx.Client(base_url=url, headers=basic(user), timeout=30) as client:
        r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": oci.OCI_MANIFEST})
        assert r.status_code == 200, r.text
        got[r.headers["Docker-Content-Digest"]] = r.content
        for descriptor in [r.json()["config"], *r.json()["layers"]]:
            r = client.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
            assert r.status_code == 200, r.text
            got[descriptor["digest"]] = r.content
    return got


def test_token_flow_upstream(setup: dict[str, Any]) -> None:
    token_upstream: Cluster = setup["token"]
    assert httpx.get(f"{token_upstream.url}/v2/").headers["WWW-Authenticate"].startswith("Bearer realm=")
    with httpx.Client(base_url=token_upstream.url, headers=basic("pusher")) as client:
        digest, body, blobs = push_image(client, "secure/app", "1")
    got = pull(setup["down"].url, "secure/app", "1", "reader")
    assert got[digest] == body and all(got[oci.digest(b)] == b for b in blobs)
    log = token_upstream.log_path.read_text()
    assert "failed login" not in log
    # one token for the repository's scope, cached for the manifest and its 3 blobs
    listing = httpx.get(f"{setup['down'].url}/v2/_zot/ext/mgmt", params={"resource": "sync"}, headers=basic("reader"))
    (entry,) = [r for r in listing.json()["registries"] if r["urls"] == [token_upstream.url]]
    assert entry["tokenRequests"] == 1 and entry["requests"]["blob/200"] == 3 and entry["state"] == "ok"
    assert httpx.get(f"{setup['down'].url}/v2/_zot/ext/mgmt", params={"resource": "sync"},
                     headers=basic("dave")).status_code == 403


def test_basic_upstream(setup: dict[str, Any]) -> None:
    basic_upstream: Distribution = setup["basic"]
    assert httpx.get(f"{basic_upstream.url}/v2/").headers["WWW-Authenticate"].startswith("Basic")
    with httpx.Client(base_url=basic_upstream.url, headers=basic("puller")) as client:
        digest, body, blobs = push_image(client, "basic/app", "1")
    got = pull(setup["down"].url, "basic/app", "1", "reader")
    assert got[digest] == body and all(got[oci.digest(b)] == b for b in blobs)


def test_nothing_an_unauthorised_caller_asks_for_reaches_the_upstream(setup: dict[str, Any]) -> None:
    basic_upstream: Distribution = setup["basic"]
    with httpx.Client(base_url=basic_upstream.url, headers=basic("puller")) as client:
        digest, _, blobs = push_image(client, "basic/secret/app", "1")
    down = setup["down"].url
    mark = basic_upstream.mark()
    paths = ["/v2/basic/secret/app/manifests/1", f"/v2/basic/secret/app/manifests/{digest}",
             f"/v2/basic/secret/app/blobs/{oci.digest(blobs[0])}"]
    for path in paths:
        for method in ("GET", "HEAD"):
            assert httpx.request(method, down + path).status_code == 401  # anonymous
            assert httpx.request(method, down + path, headers=basic("dave")).status_code == 403  # no read
            assert httpx.request(method, down + path, headers=basic("reader")).status_code == 403
    assert "basic/secret" not in basic_upstream.log_path.read_bytes()[mark:].decode(errors="replace")


def test_mtls_upstream_with_cert_dir(setup: dict[str, Any]) -> None:
    tls_upstream: Distribution = setup["tls"]
    pki = setup["pki"]
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with pytest.raises(httpx.HTTPError):  # the upstream wants a client certificate
        httpx.get(f"{tls_upstream.url}/v2/", verify=context)
    context.load_cert_chain(str(pki["cert_dir"] / "client.cert"), str(pki["cert_dir"] / "client.key"))
    with httpx.Client(base_url=tls_upstream.url, verify=context) as client:
        digest, body, blobs = push_image(client, "tls/app", "1")
    got = pull(setup["down"].url, "tls/app", "1", "reader")
    assert got[digest] == body and all(got[oci.digest(b)] == b for b in blobs)
