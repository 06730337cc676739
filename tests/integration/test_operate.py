"""Operating ``shardreg serve`` safely: what would break a running cluster is refused, start-up
errors are reported once before any child starts, crash loops end, and Ctrl-C stops in order.

These are about processes, so they start real ones (each waits with a timeout: code that kept
running where it should have refused fails the test instead of hanging it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster import ROOT, Cluster, free_port
from tests.oci import digest


def _serve(*args: str, timeout: float = 30) -> tuple[int | None, str]:
    """Run ``shardreg <args>``; (exit code, output). None if it was still running after ``timeout``."""
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace")


def _free_pair() -> int:
    """A port P with P+1 free too."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def _listener(port: int) -> socket.socket:
    """Something else listening on ``port``, with SO_REUSEPORT as a careless server would."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def _push_blob(url: str, repo: str) -> None:
    data = os.urandom(1000)
    r = httpx.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest(data)}, content=data)
    assert r.status_code == 201, r.text


# -- 1. one port, one registry ----------------------------------------------------------------------
def test_a_second_serve_on_the_same_port_is_refused(tmp_path):
    with Cluster(tmp_path / "a", workers=2) as a:
        _push_blob(a.url, "only/in-a")
        code, out = _serve("serve", "--port", str(a.port), "--data", str(tmp_path / "b"))
        assert code == 2, out
        assert "address already in use" in out and "--port" in out
        assert not (tmp_path / "b").exists(), "the refused cluster wrote to its data directory"
        # every connection still reaches the first registry
        for _ in range(6):
            assert httpx.get(f"{a.url}/v2/_catalog").json()["repositories"] == ["only/in-a"]


def test_a_port_held_by_anything_else_is_refused(tmp_path):
    port = free_port()
    with _listener(port):
        code, out = _serve("serve", "--port", str(port), "--data", str(tmp_path / "data"))
        assert code == 2, out
        assert "address already in use" in out
        assert "started" not in out, "children were started before the check"
        assert not (tmp_path / "data").exists()
        config = tmp_path / "gateway.json"
        config.write_text(json.dumps({"http": {"port": port}, "storage": {"rootDirectory": str(tmp_path / "g")}}))
        code, out = _serve("gateway", "--config", str(config))
        assert code == 2 and "address already in use" in out, out


# -- 2. one data directory, one owner ---------------------------------------------------------------
def test_a_second_serve_on_the_same_data_directory_is_refused(tmp_path):
    data = tmp_path / "data"
    with Cluster(data) as a:
        status = (data / "supervisor.json").read_text()
        effective = (data / "effective-config.json").read_text()
        code, out = _serve("serve", "--port", str(free_port()), "--data", str(data))
        assert code == 2, out
        assert f"pid {a.process.pid}" in out and str(data) in out, out
        assert (data / "supervisor.json").read_text() == status
        assert (data / "effective-config.json").read_text() == effective
        # a shard started by hand on a directory a running shard owns is refused too
        code, out = _serve("shard", "--config", str(data / "effective-config.json"), "--index", "0")
        assert code == 2, out
        assert f"pid {a.children()['shard-0']}" in out, out
        _push_blob(a.url, "still/served")
        assert httpx.get(f"{a.url}/v2/_catalog").json()["repositories"] == ["still/served"]
    assert "restarting" not in a.logs()


# -- 3. start-up errors: found first, reported once, exit code 2, nothing written -------------------
def _config(tmp_path: Path, name: str) -> tuple[list[str], str]:
    """(extra arguments, the key or flag the error must name) for each start-up error."""
    if name == "bearer-key-missing":
        cfg = {"http": {"auth": {"bearer": {"service": "shardreg", "key": str(tmp_path / "bearer.key")}}}}
        key = "http.auth.bearer.key"
    elif name == "htpasswd-missing":
        cfg = {"http": {"auth": {"htpasswd": {"path": str(tmp_path / "htpasswd")}}}}
        key = "http.auth.htpasswd.path"
    elif name == "shard-metrics-port-taken":
        cfg = {"cluster": {"shardMetricsPort": _free_pair()}}
        key = "cluster.shardMetricsPort"
    else:
        return {"shards-0": ["--shards", "0"], "port-99999": ["--port", "99999"],
                "workers-0": ["--workers", "0"]}[name], "argument --" + name.split("-")[0]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return ["--config", str(path)], key


@pytest.mark.parametrize("case", ["bearer-key-missing", "htpasswd-missing", "shards-0", "port-99999",
                                  "workers-0", "shard-metrics-port-taken"])
def test_start_up_errors_are_reported_once_before_any_child_starts(tmp_path, case):
    extra, key = _config(tmp_path, case)
    data = tmp_path / "data"
    argv = ["serve", "--port", str(free_port()), "--data", str(data), *extra]
    taken = None
    if case == "shard-metrics-port-taken":  # shard 1's port (base + 1) is in use
        taken = _listener(json.loads((tmp_path / "config.json").read_text())["cluster"]["shardMetricsPort"] + 1)
    try:
        started = time.monotonic()
        code, out = _serve(*argv, timeout=40)
    finally:
        if taken:
            taken.close()
    assert code == 2, f"exit code {code}:\n{out}"
    assert time.monotonic() - started < 20
    assert key in out, out
    errors = [line for line in out.splitlines() if key in line]
    assert len(errors) == 1, out
    assert "started" not in out and "Traceback" not in out, out
    assert not data.exists(), "something was written to the data directory before the check"
    if case == "bearer-key-missing":
        assert "openssl genpkey" in out  # how to make one


def test_the_gateway_alone_checks_its_files(tmp_path):
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"http": {"port": free_port(), "auth": {"htpasswd": {"path": str(tmp_path / "nope")}}},
                                  "storage": {"rootDirectory": str(tmp_path / "data")}}))
    code, out = _serve("gateway", "--config", str(config))
    assert code == 2 and "http.auth.htpasswd.path" in out and "shardreg user add" in out, out


def test_embedded_shards_each_get_their_own_metrics_port(tmp_path):
    base = _free_pair()
    with Cluster(tmp_path / "data", config={"cluster": {"shardMetricsPort": base}}) as c:
        for index in (0, 1):
            r = httpx.get(f"http://127.0.0.1:{base + index}/metrics", timeout=10)
            assert r.status_code == 200 and f'shard="{index}"' in r.text
        assert "restarting" not in c.logs()


def test_a_child_that_keeps_failing_at_start_stops_the_cluster(tmp_path):
    data = tmp_path / "data"
    (data / "shard-1" / "meta").mkdir(parents=True)
    (data / "shard-1" / "meta" / "data.mdb").write_bytes(b"x" * 16384)  # not an LMDB file
    code, out = _serve("serve", "--port", str(free_port()), "--data", str(data), timeout=120)
    assert code is not None, f"the supervisor restarted shard-1 for 2 minutes:\n{out[-3000:]}"
    assert code != 0
    last = [line for line in out.splitlines() if "stopping the cluster" in line]
    assert len(last) == 1 and "shard-1" in last[0] and "not an LMDB file" in last[0], out[-3000:]
    assert out.count("started shard-1 (pid") == 5


# -- 4. Ctrl-C and process-group signals ------------------------------------------------------------
class SessionCluster(Cluster):
    """``shardreg serve`` as a terminal runs it: the leader of its own process group."""

    def start(self, timeout: float = 30) -> SessionCluster:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv(), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def _slow_patch(cluster: Cluster, chunks: int, delay: float, on_chunk) -> dict:
    """A chunked PATCH sent slowly in a thread; ``on_chunk(i)`` runs before chunk i."""
    client = httpx.Client(base_url=cluster.url, timeout=120)
    location = client.post("/v2/operate/stop/blobs/uploads/").headers["Location"]
    result: dict = {"size": chunks * 64 * 1024}

    def body():
        for i in range(chunks):
            on_chunk(i)
            time.sleep(delay)
            yield os.urandom(64 * 1024)

    def send():
        try:
            result["response"] = client.patch(location, content=body())
        except httpx.HTTPError as exc:
            result["error"] = exc

    result["thread"] = threading.Thread(target=send)
    result["thread"].start()
    return result


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_process_group_stops_in_order(tmp_path, sig):
    cluster = SessionCluster(tmp_path / "data").start()
    try:
        children = cluster.children()
        upload = _slow_patch(cluster, 20, 0.1, lambda i: i == 3 and cluster.signal_group(sig))
        upload["thread"].join(60)
        assert cluster.process.wait(60) == 0
    finally:
        cluster.stop()
    # the gateway drained the upload while the shards were still there: it completed
    assert "error" not in upload, upload
    r = upload["response"]
    assert r.status_code == 202 and r.headers["Range"] == f"0-{upload['size'] - 1}", r.text
    logs = cluster.logs()
    assert "restarting" not in logs and "Traceback" not in logs and "Error" not in logs, logs
    assert not [name for name, pid in children.items() if _alive(pid)]


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    cluster = SessionCluster(tmp_path / "data").start()
    try:
        children = cluster.children()
        started = threading.Event()
        upload = _slow_patch(cluster, 200, 0.2, lambda i: i == 2 and started.set())  # ~40 s of upload
        assert started.wait(30)
        cluster.signal_group(signal.SIGINT)
        time.sleep(1.5)
        assert cluster.process.poll() is None, "the first Ctrl-C did not wait for the upload in flight"
        cluster.signal_group(signal.SIGINT)
        began = time.monotonic()
        code = cluster.process.wait(30)
        assert time.monotonic() - began < 5, "the second Ctrl-C did not stop at once"
        assert code == 130
        upload["thread"].join(30)
    finally:
        cluster.stop()
    deadline = time.monotonic() + 10
    while [pid for pid in children.values() if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [name for name, pid in children.items() if _alive(pid)]
    assert "Traceback" not in cluster.logs()


def test_a_large_config_reaches_every_worker(tmp_path):
    """The gateway hands its workers the config through the spawn pipe: a config far larger than one
    environment string may be (128 KiB, E2BIG at exec) starts, and every worker applies it."""
    repositories: dict = {f"team{i:05d}/**": {"policies": [{"users": [f"user{i:05d}"], "actions": ["read"]}]}
                          for i in range(3000)}
    repositories["**"] = {"anonymousPolicy": ["read", "create"]}
    config = {"http": {"accessControl": {"repositories": repositories}}}
    assert len(json.dumps(config)) > 200_000
    with Cluster(tmp_path / "data", workers=2, config=config) as c:
        for _ in range(8):  # new connections: both workers answer some of them
            with httpx.Client(base_url=c.url, timeout=10) as client:
                assert client.get("/v2/team00042/app/tags/list").status_code in (401, 403)
                assert client.post("/v2/open/app/blobs/uploads/").status_code == 202
