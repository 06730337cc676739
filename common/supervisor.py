"""``shardreg serve``: the embedded cluster, N shards and one gateway as child processes.

Before any child starts, :meth:`Supervisor.prepare` checks what would make one fail
(:mod:`common.startup`), binds the gateway's port (held here and passed down, so no other
process can share it, :mod:`common.listen`) and locks the data directory
(:mod:`common.datalock`); nothing is written there before these pass.

Children run in their own session with SIGINT ignored: Ctrl-C (or a process-group SIGTERM, or
SIGHUP) reaches only the supervisor, which stops them in order, the gateway first (it drains the
requests in flight), then the shards. A second signal stops everything at once. A child that
dies is restarted with back-off; one that keeps failing at start stops the cluster with its
last error. Children's output passes through the supervisor (which keeps its tail for that
message). ``<root>/supervisor.json`` lists the children's PIDs, for operators, tests and the bench.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from common import curvekeys
from common.config import Config, redact
from common.datalock import DataLock, lock_data_dir
from common.listen import DEFAULT_BACKLOG, LISTEN_FD_ENV, listen_tcp
from common.privatefs import private_dir, set_umask
from common.startup import check_files, check_shard_ports

log = logging.getLogger("shardreg.supervisor")
STOP_TIMEOUT = 40.0
#: Exit codes of a child that restarting cannot fix (invalid config, wrong cluster size).
FATAL_EXIT_CODES = (2, 3)
#: A child that exits with an error this soon after starting failed at start ...
QUICK_FAILURE = 10.0
#: ... and this many such failures in a row stop the cluster.
MAX_START_FAILURES = 5
#: Bytes of each child's latest output kept for the message when it keeps failing.
TAIL_BYTES = 8192
_PR_SET_PDEATHSIG = 1
try:  # loaded here: a hook between fork and exec should not have to load a library
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None


def _child_setup(parent: int) -> Callable[[], None]:
    """A preexec hook: ignore SIGINT (the supervisor decides), and have Linux SIGTERM the child if
    the supervisor dies (even by SIGKILL)."""

    def hook() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if _LIBC is not None:
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os._exit(0)

    return hook


class _StopNow(Exception):
    """A second stop signal: stop everything at once."""


@dataclass
class Child:
    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = 0.5
    next_start: float = 0.0
    start_failures: int = 0
    tail: bytearray = field(default_factory=bytearray)
    partial: bytes = b""
    #: The config, given on stdin (``--config -``): secrets stay out of files.
    stdin: bytes = b""
    #: A shard stopped after a shrink drained it: not restarted.
    retired: bool = False
    #: When to stop a drained shard: a few seconds after the resize, so that gateways still
    #: routing by the old map hear the new one from it (STALE_MAP) rather than find it gone.
    retire_at: float = 0.0

    def start(self, selector: selectors.BaseSelector) -> None:
        self.process = subprocess.Popen(self.argv, preexec_fn=_child_setup(os.getpid()), start_new_session=True,
                                        stderr=subprocess.PIPE, pass_fds=self.pass_fds, env=self.env,
                                        stdin=subprocess.PIPE if self.stdin else None)
        if self.process.stdin is not None:
            with self.process.stdin:
                self.process.stdin.write(self.stdin)
        pipe = self.process.stderr
        assert pipe is not None
        os.set_blocking(pipe.fileno(), False)
        selector.register(pipe, selectors.EVENT_READ, (self, pipe))
        self.started = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def relay(self, data: bytes) -> None:
        """Pass the child's output on, whole lines only (children's lines never interleave)."""
        self.tail += data
        del self.tail[:-TAIL_BYTES]
        data = self.partial + data
        cut = data.rfind(b"\n") + 1 if data else 0
        self.partial = data[cut:]
        if cut:
            try:
                sys.stderr.buffer.write(data[:cut])
                sys.stderr.buffer.flush()
            except OSError:  # nobody reads our output any more: keep running, drop it
                pass

    def last_error(self) -> str:
        """The last line of the child's output that is not indented (a traceback's last line)."""
        lines = [line for line in self.tail.decode(errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            if not line.startswith((" ", "\t")):
                return line.strip()
        return "no output"


#: Written by a gateway's resize driver (gateway/cluster/driver.py): the shard processes to run.
REQUEST_FILE = "cluster-request.json"
#: The shard count a resize left, started next time (a config disagreeing is a warning).
SIZE_FILE = "cluster-size.json"
#: Seconds a drained shard keeps answering after a shrink before it is stopped (STALE_MAP to
#: gateways routing by the old map; the end of blob streams it was serving).
RETIRE_GRACE = 30.0


def recorded_size(root: Path) -> int | None:
    try:
        return int(json.loads((root / SIZE_FILE).read_text())["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Supervisor:
    def __init__(self, config: Config) -> None:
        root = config.storage.root_directory.resolve()
        size = recorded_size(root)
        if size is not None and size != config.cluster.shards and not config.cluster.endpoints:
            log.warning("cluster.shards is %d but this cluster was resized to %d shards (%s): starting %d",
                        config.cluster.shards, size, root / SIZE_FILE, size)
            config = replace(config, cluster=replace(config.cluster, shards=size))
        self.config = config
        self.root = root
        self._request_seen = 0.0
        self.config_path = self.root / "effective-config.json"
        self.status_path = self.root / "supervisor.json"
        cli = [sys.executable, "-m", "common.cli"]
        self.children = [Child(f"shard-{i}", [*cli, "shard", "--config", "-", "--index", str(i)])
                         for i in range(config.cluster.shards)]
        self.children.append(Child("gateway", [*cli, "gateway", "--config", "-"]))
        self.runtime_dir: Path | None = None
        self.stopping = False
        self.selector = selectors.DefaultSelector()
        self.lock: DataLock | None = None

    def prepare(self) -> None:
        """Check, bind the port, lock the data directory; only then write to it."""
        config = self.config
        check_files(config)
        self.listener = listen_tcp(config.http.address, config.http.port, DEFAULT_BACKLOG, "--port (http.port)")
        check_shard_ports(config, range(config.cluster.shards))
        self.lock = lock_data_dir(self.root)
        set_umask()
        private_dir(self.root)  # 0700, also when it already existed: nothing below is for other users
        config = self.config = self._private_wire(config)
        data = config.to_json()
        data["storage"]["rootDirectory"] = str(self.root)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:  # for operators: what the children run with, secrets as "***"
            fh.write(json.dumps(redact(data), indent=2))
        os.chmod(self.config_path, 0o600)
        secret = json.dumps(data).encode()
        for child in self.children:
            child.stdin = secret
        gateway = self.children[-1]
        gateway.pass_fds = (self.listener.fileno(),)
        gateway.env = {**os.environ, LISTEN_FD_ENV: str(self.listener.fileno())}

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
        if self.stopping:
            raise _StopNow
        self.stopping = True
        log.info("%s received: stopping (again to stop at once)", signal.Signals(signum).name)

    def _pump(self, timeout: float) -> None:
        """Relay children's output for up to ``timeout`` seconds (returns early on output)."""
        for key, _ in self.selector.select(timeout):
            child, pipe = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if data:
                child.relay(data)
            else:  # the child closed its end: it has exited
                child.relay(b"\n" if child.partial else b"")
                self.selector.unregister(pipe)
                pipe.close()

    def _reaped(self, child: Child, now: float) -> str | None:
        """Account for a child that exited; the reason to stop the cluster, if any."""
        proc = child.process
        assert proc is not None
        self._pump(0)
        if proc.returncode in FATAL_EXIT_CODES:
            return f"{child.name} cannot start (exit code {proc.returncode}): {child.last_error()}"
        uptime = now - child.started
        failed_at_start = proc.returncode > 0 and uptime < QUICK_FAILURE
        child.start_failures = child.start_failures + 1 if failed_at_start else 0
        if child.start_failures >= MAX_START_FAILURES:
            return (f"{child.name} failed {child.start_failures} times in a row at start "
                    f"(exit code {proc.returncode}); its last error: {child.last_error()}")
        child.backoff = 0.5 if uptime > 60 else min(child.backoff * 2, 30.0)
        child.next_start = now + child.backoff
        log.warning("%s (pid %d) exited with %s; restarting in %.1fs", child.name, proc.pid,
                    proc.returncode, child.backoff)
        child.process = None
        return None

    def run(self) -> int:
        """Start the children and watch them until a stop signal (or a child that cannot start)."""
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        try:
            return self._run()
        except _StopNow:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)
            for child in self.children:
                if child.process is not None and child.process.poll() is None:
                    child.process.kill()
            for child in self.children:
                if child.process is not None:
                    child.process.wait()
            log.warning("stopped at once (second signal)")
            return 130
        finally:
            self.status_path.unlink(missing_ok=True)
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            if self.lock is not None:
                self.lock.release()

    def _resize(self) -> bool:
        """Start or stop shard processes as a resize driver asked (embedded mode)."""
        path = self.root / REQUEST_FILE
        try:
            stamp = path.stat().st_mtime
            if stamp == self._request_seen:
                return False
            self._request_seen = stamp
            want = int(json.loads(path.read_text())["shards"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        shards = [c for c in self.children if c.name.startswith("shard-")]
        changed = False
        for index in range(len(shards), want):
            child = Child(f"shard-{index}", [sys.executable, "-m", "common.cli", "shard", "--config", "-",
                                             "--index", str(index)], stdin=self.children[0].stdin)
            self.children.insert(index, child)
            child.start(self.selector)
            changed = True
        for child in shards[want:]:
            if not child.retired and not child.retire_at:
                child.retire_at = time.monotonic() + RETIRE_GRACE
                changed = True
        for child in shards[:want]:
            child.retire_at = 0.0  # a grow right after a shrink: keep it
        if changed and self.children[0].stdin:
            # children (re)started from now on get the new count (a warning otherwise, nothing more)
            config = json.loads(self.children[0].stdin)
            config["cluster"]["shards"] = want
            for child in self.children:
                child.stdin = json.dumps(config).encode()
        if changed:
            tmp = self.root / (SIZE_FILE + ".tmp")
            tmp.write_text(json.dumps({"shards": want}))
            os.replace(tmp, self.root / SIZE_FILE)
        return changed

    def _run(self) -> int:
        for child in self.children:
            child.start(self.selector)
        self._write_status()
        while not self.stopping:
            self._pump(0.2)
            changed = self._resize()
            now = time.monotonic()
            for child in list(self.children):
                if self.stopping:
                    break
                proc = child.process
                if child.retire_at and now >= child.retire_at and not child.retired:
                    log.info("%s was drained by a resize: stopping it (its directory is kept)", child.name)
                    child.retired = True
                    if proc is not None and proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                if child.retired:
                    if proc is not None and proc.poll() is not None:
                        self._pump(0)
                        self.children.remove(child)
                        changed = True
                    continue
                if proc is not None and proc.poll() is not None:
                    reason = self._reaped(child, now)
                    if reason is not None:
                        log.error("%s; stopping the cluster", reason)
                        self.stop()
                        return proc.returncode if proc.returncode in FATAL_EXIT_CODES else 1
                if child.process is None and now >= child.next_start:
                    child.restarts += 1
                    child.start(self.selector)
                    changed = True
            if changed:
                self._write_status()
        return self.stop()

    def _wait(self, child: Child, deadline: float) -> None:
        proc = child.process
        while proc is not None and proc.poll() is None:
            if time.monotonic() >= deadline:
                log.warning("%s did not stop in time; killing it", child.name)
                proc.kill()
                proc.wait()
                break
            self._pump(0.1)

    def stop(self) -> int:
        """Stop the gateway (it drains), then the shards."""
        self.stopping = True
        log.info("stopping")
        gateway = [c for c in self.children if c.name == "gateway"]
        shards = [c for c in self.children if c.name != "gateway"]
        for group in (gateway, shards):
            for child in group:
                if child.process and child.process.poll() is None:
                    child.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in group:
                self._wait(child, deadline)
        self._pump(0)
        log.info("stopped")
        return 0


def serve(config: Config) -> int:
    supervisor = Supervisor(config)
    supervisor.prepare()
    return supervisor.run()


__all__ = ["serve", "Supervisor"]
