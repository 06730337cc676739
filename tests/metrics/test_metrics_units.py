"""gateway.metrics in-process: config, route templates, the multiprocess directory, access, the ASGI wrapper."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from common.config import ConfigError, parse_config
from common.errors import RegistryError
from gateway.auth.access import AccessControl
from gateway.metrics.endpoint import Metrics
from gateway.metrics.labels import classify
from gateway.metrics.multiprocess import MULTIPROC_ENV, OWNER, PREFIX, multiprocess_dir, sweep_dead_workers
from gateway.metrics.settings import metrics_settings

PASSWORDS = {"prom": "prom-Pw-1", "alice": "alice-Pw-2"}


def config(**sections: Any) -> Any:
    return parse_config(sections)


def test_settings_follow_zot() -> None:
    assert not metrics_settings(config()).enable
    assert metrics_settings(config(extensions={"metrics": {}})).enable  # a section without enable: on
    assert not metrics_settings(config(extensions={"metrics": {"enable": False}})).enable
    s = metrics_settings(config(extensions={"metrics": {"enable": True, "prometheus": {"path": "/prom"}}}))
    assert (s.enable, s.path) == (True, "/prom")
    assert metrics_settings(config(extensions={"metrics": {"enable": True}})).path == "/metrics"
    for bad in ({"enable": "yes"}, {"prometheus": {"path": "metrics"}}, {"prometheus": []}):
        with pytest.raises(ConfigError):
            metrics_settings(config(extensions={"metrics": bad}))
    s = metrics_settings(config(extensions={"metrics": {}},
                                http={"accessControl": {"metrics": {"users": ["prom"], "anonymousPolicy": ["read"]}}}))
    assert s.users == {"prom"} and s.anonymous_read


@pytest.mark.parametrize(("path", "route", "repo"), [
    ("/v2/", "/v2/", None),
    ("/v2", "/v2/", None),
    ("/v2/_catalog", "/v2/_catalog", None),
    ("/v2/org/team/app/manifests/v1.2", "/v2/{name}/manifests/{reference}", "org/team/app"),
    ("/v2/app/manifests/sha256:" + "a" * 64, "/v2/{name}/manifests/{reference}", "app"),
    ("/v2/a/b/blobs/sha256:" + "b" * 64, "/v2/{name}/blobs/{digest}", "a/b"),
    ("/v2/a/b/blobs/uploads/", "/v2/{name}/blobs/uploads/", "a/b"),
    ("/v2/a/b/blobs/uploads", "/v2/{name}/blobs/uploads/", "a/b"),
    ("/v2/a/blobs/uploads/0f0e7c1a-1111-4222-8333-444455556666", "/v2/{name}/blobs/uploads/{uuid}", "a"),
    ("/v2/a/tags/list", "/v2/{name}/tags/list", "a"),
    ("/v2/a/referrers/sha256:" + "c" * 64, "/v2/{name}/referrers/{digest}", "a"),
    ("/v2/_zot/ext/search", "/v2/_zot/ext/search", None),
    ("/v2/_zot/pprof/heap", "/v2/_zot/pprof/{name}", None),
    ("/swagger/v2/index.css", "/swagger/v2/{asset}", None),
    ("/readyz", "/readyz", None),
    ("/anything/else/" + "x" * 300, "other", None),
    ("/v2/a/unknown", "other", None),
])
def test_route_templates(path: str, route: str, repo: str | None) -> None:
    assert classify(path) == (route, repo)


def test_multiprocess_dir_fresh_and_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    enabled = config(extensions={"metrics": {"enable": True}})
    with multiprocess_dir(enabled) as path:
        assert path is not None and path.is_dir() and path.parent == tmp_path
        assert os.environ[MULTIPROC_ENV] == str(path)
    assert not path.exists() and MULTIPROC_ENV not in os.environ
    # Set already (the Helm chart): a fresh directory inside it, the variable restored afterwards.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path / "prom"))
    (tmp_path / "prom").mkdir()
    (tmp_path / "prom" / "counter_1.db").write_bytes(b"stale")
    with multiprocess_dir(enabled) as path:
        assert path.parent == tmp_path / "prom" and [p.name for p in path.iterdir()] == [OWNER]
    assert os.environ[MULTIPROC_ENV] == str(tmp_path / "prom")
    with multiprocess_dir(config()) as path:  # disabled: nothing to do
        assert path is None and os.environ[MULTIPROC_ENV] == str(tmp_path / "prom")


def test_directories_of_killed_gateways_removed_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway killed before its clean-up leaves its directory; the next one to start removes it,
    and nothing that another gateway still holds or that is not such a directory."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    for name in ("dead", "live", "older-version"):
        (tmp_path / f"{PREFIX}{name}").mkdir()
        (tmp_path / f"{PREFIX}{name}" / "counter_7.db").write_bytes(b"x")
    (tmp_path / f"{PREFIX}dead" / OWNER).write_bytes(b"")
    (tmp_path / f"{PREFIX}live" / OWNER).write_bytes(b"")
    (tmp_path / f"{PREFIX}file").write_bytes(b"")
    held = os.open(tmp_path / f"{PREFIX}live" / OWNER, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as the running gateway that made it does
        with multiprocess_dir(config(extensions={"metrics": {"enable": True}})) as path:
            assert path is not None
            left = sorted(p.name for p in tmp_path.iterdir())
            assert left == sorted([f"{PREFIX}live", f"{PREFIX}older-version", f"{PREFIX}file", path.name])
            # this gateway holds its own directory's lock: the next one leaves it alone
            probe = os.open(path / OWNER, os.O_RDONLY)
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.close(probe)
    finally:
        os.close(held)
    assert not path.exists()


def test_dead_workers_live_gauges_dropped(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    names = [f"gauge_livesum_{gone.pid}.db", f"counter_{gone.pid}.db", f"gauge_livesum_{os.getpid()}.db"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert sweep_dead_workers(str(tmp_path)) == [gone.pid]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([names[1], names[2]])  # counters of the dead stay: totals never go back


def _htpasswd(path: Path) -> str:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                            for u, p in PASSWORDS.items()))
    return str(path)


def _basic(user: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


def _metrics(**http: Any) -> Metrics:
    cfg = config(extensions={"metrics": {}}, http=http)
    return Metrics(metrics_settings(cfg), AccessControl(cfg))


def _status(m: Metrics, headers: dict[str, str]) -> int:
    try:
        asyncio.run(m.authorize(headers, "127.0.0.1"))
    except RegistryError as exc:
        return exc.status
    return 200


def test_access_as_zot(tmp_path: Path) -> None:
    auth = {"htpasswd": {"path": _htpasswd(tmp_path / "htpasswd")}}
    assert _status(_metrics(), {}) == 200  # no authentication: open
    m = _metrics(auth=auth)  # authentication, no accessControl: any authenticated user
    assert (_status(m, {}), _status(m, _basic("alice"))) == (401, 200)
    repos = {"**": {"defaultPolicy": ["read"]}}
    m = _metrics(auth=auth, accessControl={"repositories": repos, "metrics": {"users": ["prom"]}})
    assert (_status(m, {}), _status(m, _basic("alice")), _status(m, _basic("prom"))) == (401, 403, 200)
    m = _metrics(auth=auth, accessControl={"repositories": repos, "metrics": {"anonymousPolicy": ["read"]}})
    assert (_status(m, {}), _status(m, _basic("alice"))) == (200, 403)
    m = _metrics(auth=auth, accessControl={"repositories": repos})  # no metrics section: nobody
    assert (_status(m, {}), _status(m, _basic("alice"))) == (401, 403)
    bad = {"authorization": "Basic " + base64.b64encode(b"prom:wrong").decode()}
    m = _metrics(auth=auth, accessControl={"metrics": {"users": ["prom"]}})
    assert _status(m, bad) == 401


def _call(m: Metrics, method: str, path: str) -> tuple[int, bytes, list[str]]:
    seen: list[str] = []
    out: dict[str, Any] = {"body": b""}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await receive()
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"nope"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"abc", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        else:
            out["body"] += message.get("body", b"")

    scope = {"type": "http", "method": method, "path": path, "headers": [], "client": ("127.0.0.1", 1)}
    asyncio.run(m(scope, receive, send, app))
    return out["status"], out["body"], seen


def test_wrapper_serves_the_configured_path_and_counts() -> None:
    cfg = config(extensions={"metrics": {"prometheus": {"path": "/prom"}}})
    m = Metrics(metrics_settings(cfg), AccessControl(cfg))
    assert _call(m, "GET", "/metrics")[::2] == (404, ["/metrics"])  # not the path: the app answers
    status, body, seen = _call(m, "GET", "/prom")
    assert status == 200 and not seen
    text = body.decode()
    assert 'zot_http_requests_total{code="404",method="GET",route="other"} 1.0' in text
    assert 'shardreg_http_received_bytes_total{method="GET",route="other"} 3.0' in text
    assert 'shardreg_http_sent_bytes_total{method="GET",route="other"} 4.0' in text
    assert _call(m, "POST", "/prom")[0] == 405
    status, body, _ = _call(m, "HEAD", "/prom")
    assert status == 200 and body == b""
    _call(m, "BREW", "/v2/")
    assert 'method="other",route="/v2/"' in _call(m, "GET", "/prom")[1].decode()
