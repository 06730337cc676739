"""Registries under test: a URL, a local shardreg cluster, or CNCF Distribution started here.

Local registries listen on 127.0.0.1 only, keep their data in a temporary directory and are
stopped (SIGTERM, then SIGKILL of their process group) when the bench ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DISTRIBUTION_BINARY = "/usr/bin/docker-registry"
READY_TIMEOUT_S = 60.0


class TargetError(RuntimeError):
    pass


@dataclass
class Target:
    """One registry the bench talks to."""

    label: str
    url: str
    kind: str  # "shardreg", "distribution" or "external"
    root_pid: int | None = None
    data_dir: str | None = None
    version: str = ""
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_path: str | None = None
    _tmp: str | None = field(default=None, repr=False)

    def describe(self) -> dict:
        return {
            "label": self.label,
            "url": self.url,
            "kind": self.kind,
            "version": self.version,
            "pid": self.root_pid,
        }

    def stop(self) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if proc is not None:
            # Children that outlived their supervisor belong to the group we created.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.process = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return 0


def wait_ready(target: Target, paths: tuple[str, ...], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if target.process is not None and target.process.poll() is not None:
            raise TargetError(f"{target.label} exited with {target.process.returncode}; log: {_tail(target)}")
        if all(_status(target.url + p) == 200 for p in paths):
            return
        time.sleep(0.1)
    target.stop()
    raise TargetError(f"{target.label} not ready after {timeout:.0f}s; log: {_tail(target)}")


def _tail(target: Target) -> str:
    if not target.log_path:
        return ""
    try:
        with open(target.log_path, errors="replace") as f:
            return f.read()[-2000:]
    except OSError:
        return ""


def shardreg_command() -> list[str]:
    return [sys.executable, "-m", "common.cli"]


def start_shardreg(shards: int = 2, workers: int = 1, port: int | None = None, label: str = "shardreg",
                   extra_args: list[str] | None = None) -> Target:
    """Start ``shardreg serve`` on a temporary data directory and wait until it is ready."""
    port = port or free_port()
    tmp = tempfile.mkdtemp(prefix="shardreg-bench-")
    data = os.path.join(tmp, "data")
    log_path = os.path.join(tmp, "serve.log")
    cmd = shardreg_command() + [
        "serve", "--port", str(port), "--data", data,
        "--shards", str(shards), "--workers", str(workers),
    ] + list(extra_args or [])
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=tmp)
    target = Target(label=label, url=f"http://127.0.0.1:{port}", kind="shardreg", root_pid=proc.pid,
                    data_dir=data, process=proc, log_path=log_path, _tmp=tmp,
                    version=f"shards={shards} workers={workers}")
    try:
        from importlib.metadata import version
        target.version = f"{version('shardreg')} shards={shards} workers={workers}"
    except Exception:  # noqa: BLE001 - the version is only informative
        pass
    wait_ready(target, ("/v2/", "/readyz"))
    return target


DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: {no_access_log}
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
"""


def start_distribution(port: int | None = None, label: str = "distribution", access_log: bool = False) -> Target:
    """Start CNCF Distribution (Debian's ``docker-registry``) with its own temporary config; with
    ``access_log`` its log (``log_path``) has a line per request, which pull-through counts."""
    binary = shutil.which("docker-registry") or DISTRIBUTION_BINARY
    if not os.path.exists(binary):
        raise TargetError("docker-registry not found: apt-get install -y docker-registry")
    port = port or free_port()
    tmp = tempfile.mkdtemp(prefix="distribution-bench-")
    root = os.path.join(tmp, "data")
    os.makedirs(root)
    config = os.path.join(tmp, "config.yml")
    with open(config, "w") as f:
        f.write(DISTRIBUTION_CONFIG.format(root=root, port=port, no_access_log=str(not access_log).lower()))
    log_path = os.path.join(tmp, "registry.log")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "serve", config], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp)
    target = Target(label=label, url=f"http://127.0.0.1:{port}", kind="distribution", root_pid=proc.pid,
                    data_dir=root, process=proc, log_path=log_path, _tmp=tmp,
                    version=version.split()[-1] if version else "")
    wait_ready(target, ("/v2/",))
    return target


def kind_of_process(pid: int) -> str:
    """Guess which registry a PID runs, to name its components in the report."""
    from bench.procstat import cmdline

    cmd = cmdline(pid)
    if "common.cli" in cmd or "shardreg" in cmd:
        return "shardreg"
    if "registry" in cmd:
        return "distribution"
    return "external"


def external(url: str, label: str, pid: int | None = None) -> Target:
    """A registry already running at ``url``; with ``pid``, its CPU time is read too."""
    url = url.rstrip("/")
    kind = kind_of_process(pid) if pid else "external"
    if _status(url + "/v2/") not in (200, 401):
        raise TargetError(f"{url}/v2/ does not answer like a registry")
    return Target(label=label, url=url, kind=kind, root_pid=pid)
