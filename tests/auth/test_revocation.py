"""Revocation at once, on every worker of every gateway (issue 10 items 3 and 4).

Two gateways of two workers each, as real processes against the same two shards: the embedded
cluster (``shardreg serve``: shards + gateway A) and a second ``shardreg gateway`` process
(gateway B) with the same configuration on another port. Every check opens a new connection per
request, so that the requests spread over the workers of each gateway.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.auth.conftest import remember
from tests.cluster import ROOT, Cluster, free_port
from tests.oci import push_image

USERS = {"root": "root-rv-51ac", "owner": "owner-rv-9e07", "temp": "temp-rv-2b64"}
SERVICE = "shardreg-revocation"
#: Requests per gateway for each check (new connections: they reach both workers).
SPREAD = 10


def basic(user: str, password: str | None = None) -> dict[str, str]:
    secret = USERS[user] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


@dataclass
class TwoGateways:
    cluster: Cluster
    second: subprocess.Popen[bytes]
    second_url: str
    second_log: Path
    htpasswd: Path

    @property
    def urls(self) -> list[str]:
        return [self.cluster.url, self.second_url]

    def logs(self) -> str:
        """Both gateways' whole logs (one access-log line per request: a tail would miss events)."""
        return self.cluster.log_path.read_text(errors="replace") + self.second_log.read_text(errors="replace")


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, input=stdin, text=True,
                          capture_output=True, timeout=60, check=True)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoGateways]:
    tmp = tmp_path_factory.mktemp("revocation")
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in USERS.items()))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "signing.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    config: dict[str, Any] = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}, "apikey": True,
                                                "failLimit": 1000,
                                                "bearer": {"service": SERVICE, "key": str(tmp / "signing.pem")}}},
                              "log": {"level": "info"}}
    data = tmp / "data"
    with Cluster(data, shards=2, workers=2, config=config) as cluster:
        port = free_port()
        second_config = json.loads(json.dumps(config))
        second_config["storage"] = {"rootDirectory": str(data)}
        second_config["cluster"] = {"shards": 2}
        second_config["http"].update({"address": "127.0.0.1", "port": port})
        config_path = tmp / "gateway-b.json"
        config_path.write_text(json.dumps(second_config))
        log_path = tmp / "gateway-b.log"
        with log_path.open("ab") as log:
            second = subprocess.Popen([sys.executable, "-m", "common.cli", "gateway", "--config", str(config_path),
                                       "--workers", "2"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        setup = TwoGateways(cluster, second, f"http://127.0.0.1:{port}", log_path, htpasswd)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert second.poll() is None, setup.logs()
                try:
                    if httpx.get(f"{setup.second_url}/v2/", headers=basic("root"), timeout=3).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, setup.logs()
                time.sleep(0.2)
            yield setup
        finally:
            second.terminate()
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()


def statuses(setup: TwoGateways, path: str, headers: dict[str, str]) -> list[int]:
    """The status of ``SPREAD`` requests on each gateway, each on a new connection."""
    return [httpx.get(url + path, headers=headers, timeout=30).status_code
            for url in setup.urls for _ in range(SPREAD)]


def api_key(url: str, user: str) -> str:
    r = httpx.post(f"{url}/zot/auth/apikey", headers=basic(user), json={"label": "revocation"})
    assert r.status_code == 201, r.text
    key = str(r.json()["apiKey"])
    remember(key)
    return key


def login(url: str, user: str) -> str:
    r = httpx.post(f"{url}/zot/auth/login", headers=basic(user))
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"].split(";", 1)[0]
    remember(cookie.split("=", 1)[1])
    return cookie


def test_logout_and_key_deletion_take_effect_everywhere_at_once(gateways: TwoGateways) -> None:
    first, second = gateways.urls
    key = api_key(first, "owner")
    with_key = basic("owner", key)
    assert set(statuses(gateways, "/v2/", with_key)) == {200}  # every worker has seen the key
    uuid = httpx.get(f"{first}/zot/auth/apikey", headers=basic("owner")).json()["apiKeys"][0]["uuid"]
    assert httpx.delete(f"{second}/zot/auth/apikey", params={"id": uuid}, headers=basic("owner")).status_code == 200
    assert set(statuses(gateways, "/v2/", with_key)) == {401}

    cookie = {"Cookie": login(second, "owner")}
    assert set(statuses(gateways, "/v2/", cookie)) == {200}
    assert httpx.post(f"{first}/zot/auth/logout", headers=cookie).status_code == 200
    assert set(statuses(gateways, "/v2/", cookie)) == {401}


def test_removed_user_is_refused_everywhere_and_their_records_deleted(gateways: TwoGateways) -> None:
    first, second = gateways.urls
    with httpx.Client(base_url=first, headers=basic("root"), timeout=30) as root:
        push_image(root, "temp/app", "v1")
    key = api_key(first, "temp")
    cookie = login(second, "temp")
    r = httpx.get(f"{first}/auth/token", params={"service": SERVICE, "scope": "repository:temp/app:pull"},
                  headers=basic("temp"))
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    remember(token)
    credentials = {"key": basic("temp", key), "session": {"Cookie": cookie},
                   "token": {"Authorization": f"Bearer {token}"}}
    for kind, headers in credentials.items():
        assert set(statuses(gateways, "/v2/temp/app/tags/list", headers)) == {200}, kind

    _cli("user", "remove", "temp", "--htpasswd", str(gateways.htpasswd))
    for kind, headers in credentials.items():
        assert set(statuses(gateways, "/v2/temp/app/tags/list", headers)) == {401}, kind
        assert set(statuses(gateways, "/v2/", headers)) == {401}, kind
    for url in gateways.urls:  # the session cannot mint a key either
        assert httpx.post(f"{url}/zot/auth/apikey", headers={"Cookie": cookie}, json={}).status_code == 401

    # the gateways delete temp's key and session on the shard ...
    deadline = time.monotonic() + 20
    while "is no longer in htpasswd: deleted 1 API keys and 1 sessions" not in gateways.logs():
        assert time.monotonic() < deadline, gateways.logs()
        time.sleep(0.2)
    # ... so a new user of the same name does not inherit them
    _cli("user", "add", "temp", "--htpasswd", str(gateways.htpasswd), "--password-stdin", "--cost", "4",
         stdin=USERS["temp"] + "\n")
    assert set(statuses(gateways, "/v2/", basic("temp"))) == {200}
    assert set(statuses(gateways, "/v2/", credentials["key"])) == {401}
    assert set(statuses(gateways, "/v2/", credentials["session"])) == {401}
