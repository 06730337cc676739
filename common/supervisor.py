"""``shardreg serve``: the embedded cluster, N shards and one gateway as child processes.

Children are restarted when they die (with back-off) and stopped cleanly on SIGINT/SIGTERM:
the gateway first (it drains in-flight requests), then the shards. The supervisor writes
``<root>/supervisor.json`` with the children's PIDs, for operators, tests and the bench.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from common import curvekeys
from common.config import Config, redact
from common.privatefs import private_dir, set_umask

log = logging.getLogger("shardreg.supervisor")
STOP_TIMEOUT = 40.0
#: Exit codes of a child that restarting cannot fix (invalid config, wrong cluster size).
FATAL_EXIT_CODES = (2, 3)
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None]:
    """A preexec hook: Linux SIGTERMs the child if the supervisor dies (even by SIGKILL)."""

    def hook() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os._exit(0)

    return hook


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.5
    next_start: float = 0.0
    #: The config, given on stdin (``--config -``): secrets stay out of files.
    stdin: bytes = b""

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, preexec_fn=_die_with(os.getpid()),
                                        stdin=subprocess.PIPE if self.stdin else None)
        if self.process.stdin is not None:
            with self.process.stdin:
                self.process.stdin.write(self.stdin)
        self.started = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


class Supervisor:
    def __init__(self, config: Config) -> None:
        set_umask()
        root = config.storage.root_directory.resolve()
        private_dir(root)  # 0700, also when it already existed: nothing below is for other users
        self.root = root
        self.runtime_dir: Path | None = None
        config = self._private_wire(config)
        self.config_path = root / "effective-config.json"
        data = config.to_json()
        data["storage"]["rootDirectory"] = str(root)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:  # for operators: what the children run with, secrets as "***"
            fh.write(json.dumps(redact(data), indent=2))
        os.chmod(self.config_path, 0o600)
        secret = json.dumps(data).encode()
        cli = [sys.executable, "-m", "common.cli"]
        self.children = [Child(f"shard-{i}", [*cli, "shard", "--config", "-", "--index", str(i)], stdin=secret)
                         for i in range(config.cluster.shards)]
        self.children.append(Child("gateway", [*cli, "gateway", "--config", "-"], stdin=secret))
        self.stopping = False
        self.status_path = root / "supervisor.json"

    def _private_wire(self, config: Config) -> Config:
        """The embedded cluster's own CURVE keys (tcp endpoints without configured keys) and, when
        the data path is too long for a socket path, a short private runtime directory (0700,
        made by mkdtemp) for the ipc sockets; both go into the config every child reads."""
        cluster = config.cluster
        keys = curvekeys.ensure_embedded(config, self.root / "keys")
        if keys is not None:
            cluster = replace(cluster, shard_key=keys[0], gateway_key=keys[1])
        if not cluster.endpoints and not cluster.socket_directory \
                and not config.socket_path_fits(config.default_socket_directory()):
            base = os.environ.get("XDG_RUNTIME_DIR")
            self.runtime_dir = Path(tempfile.mkdtemp(prefix="shardreg-", dir=base if base and len(base) < 40 else "/tmp"))
            cluster = replace(cluster, socket_directory=str(self.runtime_dir))
            log.info("data path too long for socket paths: sockets in %s", self.runtime_dir)
        return replace(config, cluster=cluster)

    def _write_status(self) -> None:
        status = {"pid": os.getpid(), "children": {
            c.name: {"pid": c.process.pid if c.process else None, "restarts": c.restarts} for c in self.children}}
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.status_path)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for child in self.children:
            child.start()
        self._write_status()
        while not self.stopping:
            time.sleep(0.2)
            changed = False
            now = time.monotonic()
            for child in self.children:
                proc = child.process
                if proc is not None and proc.poll() is not None:
                    if proc.returncode in FATAL_EXIT_CODES:
                        log.error("%s cannot start (exit code %d, see above); stopping the cluster",
                                  child.name, proc.returncode)
                        self.stop()
                        return proc.returncode
                    uptime = now - child.started
                    child.backoff = 0.5 if uptime > 60 else min(child.backoff * 2, 30.0)
                    child.next_start = now + child.backoff
                    log.warning("%s (pid %d) exited with %s; restarting in %.1fs", child.name, proc.pid,
                                proc.returncode, child.backoff)
                    child.process = None
                if child.process is None and now >= child.next_start and not self.stopping:
                    child.restarts += 1
                    child.start()
                    changed = True
            if changed:
                self._write_status()
        return self.stop()

    def stop(self) -> int:
        log.info("stopping")
        order = [c for c in self.children if c.name == "gateway"] + [c for c in self.children if c.name != "gateway"]
        for group in (order[:1], order[1:]):
            for child in group:
                if child.process and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in group:
                if child.process is None:
                    continue
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", child.name)
                    child.process.kill()
                    child.process.wait()
        self.status_path.unlink(missing_ok=True)
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        return 0


def serve(config: Config) -> int:
    return Supervisor(config).run()


__all__ = ["serve", "Supervisor"]
