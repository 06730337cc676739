"""TLS served by Hypercorn (http.tls), with Basic auth and a Secure session cookie."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth.conftest import basic, remember, write_rsa_cert
from tests.cluster import Cluster


class TLSCluster(Cluster):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.url = f"https://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(self.logs())
            try:
                if httpx.get(f"{self.url}/readyz", verify=False, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(self.logs())


@pytest.fixture(scope="module")
def tls_cluster(auth_dir: Path) -> Iterator[TLSCluster]:
    write_rsa_cert(auth_dir / "server.key", auth_dir / "server.crt", "localhost")
    config = {"http": {"tls": {"cert": str(auth_dir / "server.crt"), "key": str(auth_dir / "server.key")},
                       "auth": {"htpasswd": {"path": str(auth_dir / "htpasswd")}}}}
    with TLSCluster(auth_dir / "tls", config=config, shards=1, workers=1) as c:
        yield c


def test_tls_basic_auth_and_secure_cookie(tls_cluster: TLSCluster, auth_dir: Path) -> None:
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
