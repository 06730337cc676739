"""TLS served by Hypercorn (http.tls), with Basic auth and a Secure session cookie."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import basic, remember, write_rsa_cert
from tests.cluster import Cluster


@pytest.fixture(scope="module")
def tls_cluster(auth_dir: Path) -> Iterator[Cluster]:
    write_rsa_cert(auth_dir / "server.key", auth_dir / "server.crt", "localhost")
    config = {"http": {"tls": {"cert": str(auth_dir / "server.crt"), "key": str(auth_dir / "server.key")},
                       "auth": {"htpasswd": {"path": str(auth_dir / "htpasswd")}}}}
    with Cluster(auth_dir / "tls", config=config, shards=1, workers=1) as c:
        yield c


def test_tls_basic_auth_and_secure_cookie(tls_cluster: Cluster, auth_dir: Path) -> None:
    with httpx.Client(base_url=tls_cluster.url, verify=ssl.create_default_context(cafile=str(auth_dir / "server.crt"))) as c:
        assert c.get("/v2/").status_code == 401
        assert c.get("/v2/", headers=basic("alice")).status_code == 200
        r = c.post("/zot/auth/login", headers=basic("alice"))
        assert r.status_code == 200
        cookie = r.headers["set-cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie
        remember(cookie.split(";", 1)[0].split("=", 1)[1])
        # the client's cookie jar sends the Secure cookie back over https
        assert c.get("/v2/_catalog").status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_cluster.url.replace("https", "http") + "/v2/", timeout=3)
