"""Logs an operator can use (issue 11 items 6, 7, 8), from real processes: an access line per
request with its request id (text by default, JSON with ``log.format: json``), ``X-Request-Id`` in
every answer, the audit file (``log.audit``) with one JSON line per state-changing request and who
made it, one "listening on" line at start and one at stop, each config warning once, no failed
login for an anonymous request, no secret anywhere."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import bcrypt
import httpx
import pytest

from tests.cluster import Cluster
from tests.oci import OCI_MANIFEST, push_image

PASSWORD = "s3cret-Passw0rd"


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A cluster with JSON logs, an audit file, htpasswd and API keys, driven through pushes,
    deletes and logins, then stopped: its log and audit file."""
    root = tmp_path_factory.mktemp("logs")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"alice:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    audit = root / "audit.log"
    config = {"log": {"format": "json", "audit": str(audit)},
              "http": {"auth": {"htpasswd": {"path": str(htpasswd)}, "apikey": True}},
              # an unknown key: a config warning (the UI itself no longer warns, issue 15)
              "extensions": {"search": {"enable": True}, "ui": {"enable": True, "theme": "dark"}}}
    cluster = Cluster(root / "data", shards=2, workers=2, config=config)
    out: dict[str, Any] = {"port": cluster.port, "data": cluster.data}
    with cluster, httpx.Client(base_url=cluster.url, timeout=30, headers=basic("alice")) as client:
        anonymous = httpx.get(f"{cluster.url}/v2/", headers={"X-Request-Id": "anon-probe-1"})
        assert anonymous.status_code == 401
        out["anonymous_id"] = anonymous.headers["x-request-id"]
        wrong = httpx.get(f"{cluster.url}/v2/", headers=basic("alice", "wrong-password"))
        assert wrong.status_code == 401
        digest, _ = push_image(client, "audited/app", "v1")
        pulled = client.get("/v2/audited/app/manifests/v1", headers={"Accept": OCI_MANIFEST,
                                                                    "X-Request-Id": "pull-req-42"})
        assert pulled.status_code == 200
        out["pull_id"] = pulled.headers["x-request-id"]
        out["generated_id"] = client.get("/v2/").headers["x-request-id"]
        assert client.get("/v2/audited/app/manifests/nope").status_code == 404
        deleted = client.delete(f"/v2/audited/app/manifests/{digest}")
        assert deleted.status_code == 202
        out["delete_id"] = deleted.headers["x-request-id"]
        key = client.post("/zot/auth/apikey", json={"label": "ci"})
        assert key.status_code == 201, key.text
        out["apikey"] = key.json()["apiKey"]
        assert client.post("/zot/auth/login").status_code in (200, 204)
        denied = httpx.put(f"{cluster.url}/v2/audited/app/manifests/v2", content=b"{}",
                           headers={"Content-Type": OCI_MANIFEST})
        assert denied.status_code == 401
    out["log"] = _log_once_written(cluster, f"request_id={out['delete_id']}")
    out["audit"] = audit.read_text()
    return out


def _log_once_written(cluster: Cluster, marker: str, timeout: float = 10.0) -> str:
    """The cluster's log once ``marker`` is in it: children's lines reach the file through the
    supervisor, which relays them a fraction of a second later."""
    deadline = time.monotonic() + timeout
    while True:
        text = cluster.log_path.read_text(errors="replace")
        if marker in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_every_request_has_an_id_in_the_answer_and_the_access_log(logged: dict[str, Any]) -> None:
    assert logged["pull_id"] == "pull-req-42"  # the client's own id is kept
    assert len(logged["generated_id"]) == 16 and logged["anonymous_id"] == "anon-probe-1"
    access = [r for r in json_lines(logged["log"]) if r["logger"] == "shardreg.access"]
    pull = [r for r in access if r.get("request_id") == "pull-req-42"]
    assert len(pull) == 1
    line = pull[0]
    assert line["level"] == "info" and line["role"] == "gateway-worker"
    assert (line["method"], line["path"], line["repo"], line["status"], line["user"]) == \
        ("GET", "/v2/audited/app/manifests/v1", "audited/app", 200, "alice")
    assert line["bytes_out"] > 0 and line["bytes_in"] == 0 and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    pushes = [r for r in access if r["method"] == "PUT" and r["path"].startswith("/v2/audited/app/blobs/uploads/")]
    assert pushes and all(r["bytes_in"] > 0 and r["status"] == 201 for r in pushes)
    assert {r["request_id"] for r in access} >= {logged["delete_id"], logged["generated_id"]}


def test_no_secret_is_logged(logged: dict[str, Any]) -> None:
    for text in (logged["log"], logged["audit"]):
        assert PASSWORD not in text and "wrong-password" not in text and logged["apikey"] not in text
        assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in text


def test_anonymous_requests_are_not_failed_logins(logged: dict[str, Any]) -> None:
    records = json_lines(logged["log"])
    failed = [r for r in records if "failed login" in r["message"]]
    assert len(failed) == 1 and "alice" in failed[0]["message"]  # the wrong password, not the anonymous probe
    assert not [r for r in records if r.get("request_id") == "anon-probe-1" and r["logger"] != "shardreg.access"]


def test_client_errors_are_debug_only(logged: dict[str, Any]) -> None:
    records = json_lines(logged["log"])
    assert not [r for r in records if "answered 404" in r["message"]]  # log.level info: 4xx lines are debug


def test_one_listening_line_at_start_and_one_at_stop(logged: dict[str, Any]) -> None:
    messages = [r["message"] for r in json_lines(logged["log"])]
    started = [m for m in messages if m.startswith("listening on")]
    assert started == [f"listening on http://127.0.0.1:{logged['port']} (2 shards, 2 workers, data {logged['data']}, "
                       "auth: htpasswd, apikey, session)"]
    assert [m for m in messages if m.startswith("stopped listening on")] == \
        [f"stopped listening on http://127.0.0.1:{logged['port']}"]


def test_each_config_warning_once(logged: dict[str, Any]) -> None:
    warnings = [r["message"] for r in json_lines(logged["log"]) if r["logger"] == "shardreg.config"]
    assert len([w for w in warnings if "extensions.ui" in w]) == 1, warnings
    assert len(warnings) == len(set(warnings))


def test_audit_file_has_one_line_per_change_and_who_made_it(logged: dict[str, Any]) -> None:
    lines = [json.loads(line) for line in logged["audit"].splitlines()]
    actions = [(line["action"], line["user"], line["status"]) for line in lines]
    assert ("manifest.push", "alice", 201) in actions
    assert ("manifest.delete", "alice", 202) in actions
    assert ("apikey.create", "alice", 201) in actions
    assert any(a == "session.login" and u == "alice" for a, u, _ in actions)
    assert sum(1 for a, _, s in actions if a == "blob.push" and s == 201) >= 3  # config + 2 layers
    refused = [line for line in lines if line["outcome"] == "refused"]
    assert refused and refused[0]["action"] == "manifest.push" and refused[0]["user"] is None
    delete = next(line for line in lines if line["action"] == "manifest.delete")
    assert delete["request_id"] == logged["delete_id"] and delete["repo"] == "audited/app"
    assert delete["auth"] == "htpasswd" and delete["client"] == "127.0.0.1"
    assert not [line for line in lines if line["method"] in ("GET", "HEAD")]  # reads are not audited


def test_text_access_log_by_default(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        request_id = client.get("/v2/_catalog", headers={"X-Request-Id": "text-line-7"}).headers["x-request-id"]
    assert request_id == "text-line-7"
    # the access line; a worker serving its first request may also log (tagged, and earlier) that it loaded
    # the cluster map
    log = _log_once_written(cluster, '"GET /v2/_catalog" 200 in=0 out=')
    lines = [line for line in log.splitlines() if "request_id=text-line-7" in line and "shardreg.access:" in line]
    assert len(lines) == 1
    assert "INFO gateway-worker[" in lines[0] and '"GET /v2/_catalog" 200' in lines[0]
