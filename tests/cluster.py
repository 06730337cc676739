"""Start a real shardreg cluster (supervisor, gateway, shards as processes) for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``shardreg serve`` on a free loopback port, with its own data directory."""

    def __init__(self, data: Path, *, shards: int = 2, workers: int = 2, config: dict[str, Any] | None = None,
                 port: int | None = None) -> None:
        self.data = Path(data)
        self.port = port or free_port()
        self.shards, self.workers = shards, workers
        tls = bool((config or {}).get("http", {}).get("tls"))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.config_path: Path | None = None
        if config is not None:
            self.data.mkdir(parents=True, exist_ok=True)
            self.config_path = self.data.parent / f"{self.data.name}-config.json"
            self.config_path.write_text(json.dumps(config))
        self.process: subprocess.Popen | None = None
        self.log_path = self.data.parent / f"{self.data.name}.log"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "common.cli", "serve", "--port", str(self.port), "--data", str(self.data),
                "--shards", str(self.shards), "--workers", str(self.workers)]
        if self.config_path:
            argv += ["--config", str(self.config_path)]
        return argv

    def start(self, timeout: float = 30) -> Cluster:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv(), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()  # never leave a half-started cluster running
            raise
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"shardreg exited with {self.process.returncode}:\n{self.logs()}")
            try:
                # readiness only: the test's own client checks the server certificate
                if httpx.get(f"{self.url}/readyz", timeout=2, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"shardreg not ready after {timeout}s:\n{self.logs()}")

    def children(self) -> dict[str, int]:
        status = json.loads((self.data / "supervisor.json").read_text())
        return {name: info["pid"] for name, info in status["children"].items()}

    def kill_child(self, name: str, sig: int = signal.SIGKILL) -> int:
        pid = self.children()[name]
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.children().get(name) not in (None, old_pid):
                    self.wait_ready(timeout)
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not restarted")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(45)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    # -- resharding (issue 12) ---------------------------------------------------------------------
    def cli(self, *argv: str, timeout: float = 300, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """``shardreg cluster ...`` against this cluster (the real CLI, as a process)."""
        return subprocess.run([sys.executable, "-m", "common.cli", "cluster", *argv, "--url", self.url], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, input=stdin)

    def resize(self, shards: int, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Resize with the CLI and wait for the end; fails the test if it does not exit 0."""
        done = self.cli("resize", "--shards", str(shards), *extra, timeout=timeout)
        assert done.returncode == 0, f"resize to {shards}: exit {done.returncode}\n{done.stdout}\n{done.stderr}\n{self.logs()}"
        return done

    def status(self, **kwargs: Any) -> dict[str, Any]:
        """The cluster status document (GET /v2/_shardreg/cluster/status)."""
        r = httpx.get(f"{self.url}/v2/_shardreg/cluster/status", timeout=30, **kwargs)
        assert r.status_code == 200, r.text
        return r.json()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
