"""The registry's configuration: zot's JSON format plus a ``cluster`` section.

Loaded and validated once at start-up into frozen dataclasses. Keys zot knows that shardreg
does not implement, and keys nobody knows, are collected in ``Config.warnings`` (and logged
at start), never silently dropped. Invalid values raise :class:`ConfigError`.

Example::

    {"distSpecVersion": "1.1.1",
     "storage": {"rootDirectory": "./data"},
     "http": {"address": "127.0.0.1", "port": 8080},
     "log": {"level": "info"},
     "cluster": {"shards": 2, "gatewayWorkers": 2}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import xxhash

#: Longest filesystem path usable for a Unix socket (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 100


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any, key: str) -> float:
    """Seconds from a number or a Go-style duration string (``"1h30m"``, ``"500ms"``)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return float(value)
    if isinstance(value, str) and value:
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(value):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos == len(value):
            return total
    raise ConfigError(f"{key}: invalid duration {value!r} (use e.g. \"30s\", \"1h\")")


@dataclass(frozen=True)
class StorageConfig:
    root_directory: Path = Path("./data")
    #: fsync blobs and metadata before acknowledging (zot's ``commit``); on by default here.
    commit: bool = True
    gc: bool = True
    gc_delay: float = 3600.0
    gc_interval: float = 3600.0
    #: Deletes of manifests, tags and blobs; off → 405 UNSUPPORTED.
    allow_delete: bool = True
    #: An upload untouched for this long is removed.
    upload_expiry: float = 24 * 3600.0
    #: Most repositories the registry will hold (zot's quota); 0 = no limit.
    max_repos: int = 0


@dataclass(frozen=True)
class TLSConfig:
    cert: str
    key: str
    cacert: str | None = None


@dataclass(frozen=True)
class HttpConfig:
    address: str = "127.0.0.1"
    port: int = 8080
    external_url: str | None = None
    realm: str = "shardreg"
    tls: TLSConfig | None = None
    #: Raw ``http.auth`` / ``http.accessControl`` / ``http.ratelimit`` sections (parsed by gateway.auth).
    auth: dict[str, Any] = field(default_factory=dict)
    access_control: dict[str, Any] = field(default_factory=dict)
    ratelimit: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    output: str | None = None
    audit: str | None = None


@dataclass(frozen=True)
class ClusterConfig:
    shards: int = 2
    #: Where gateways reach shard i; empty → ``ipc://<root>/shard-<i>.sock`` (embedded mode).
    endpoints: tuple[str, ...] = ()
    #: What a shard binds; ``{index}`` and ``{port}`` are filled in. Empty → its endpoint.
    bind: str | None = None
    gateway_workers: int = 2
    hash_seed: int = 0
    #: Gateways can open shard blob files themselves (same filesystem) for faster pulls.
    shared_storage: bool = True
    request_timeout: float = 30.0
    #: Port of each shard's own metrics/health HTTP listener (0 = off).
    shard_metrics_port: int = 0


@dataclass(frozen=True)
class Config:
    dist_spec_version: str = "1.1.1"
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    extensions: dict[str, Any] = field(default_factory=dict)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    warnings: tuple[str, ...] = ()

    def shard_endpoint(self, index: int) -> str:
        if self.cluster.endpoints:
            return self.cluster.endpoints[index]
        path = f"{self.storage.root_directory.resolve()}/shard-{index}.sock"
        if len(path) > MAX_IPC_PATH:  # a Unix socket path is limited to 107 bytes: use the abstract namespace
            return f"ipc://@shardreg-{xxhash.xxh64_hexdigest(path.encode())}"
        return f"ipc://{path}"

    def shard_bind(self, index: int) -> str:
        endpoint = self.shard_endpoint(index)
        if self.cluster.bind:
            port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else ""
            return self.cluster.bind.format(index=index, port=port)
        return endpoint

    def shard_dir(self, index: int) -> Path:
        return self.storage.root_directory / f"shard-{index}"

    def to_json(self) -> dict[str, Any]:
        """The config in its file format (round-trips through :func:`parse_config`)."""
        http: dict[str, Any] = {"address": self.http.address, "port": self.http.port, "realm": self.http.realm}
        if self.http.external_url:
            http["externalUrl"] = self.http.external_url
        if self.http.tls:
            http["tls"] = {k: v for k, v in vars(self.http.tls).items() if v}
        for key, value in (("auth", self.http.auth), ("accessControl", self.http.access_control),
                           ("ratelimit", self.http.ratelimit)):
            if value:
                http[key] = value
        cluster = {
            "shards": self.cluster.shards, "gatewayWorkers": self.cluster.gateway_workers,
            "hashSeed": self.cluster.hash_seed, "sharedStorage": self.cluster.shared_storage,
            "requestTimeout": self.cluster.request_timeout, "shardMetricsPort": self.cluster.shard_metrics_port,
        }
        if self.cluster.endpoints:
            cluster["endpoints"] = list(self.cluster.endpoints)
        if self.cluster.bind:
            cluster["bind"] = self.cluster.bind
        return {
            "distSpecVersion": self.dist_spec_version,
            "storage": {
                "rootDirectory": str(self.storage.root_directory), "commit": self.storage.commit,
                "gc": self.storage.gc, "gcDelay": self.storage.gc_delay, "gcInterval": self.storage.gc_interval,
                "allowDelete": self.storage.allow_delete, "uploadExpiry": self.storage.upload_expiry,
                "maxRepos": self.storage.max_repos,
            },
            "http": http,
            "log": {k: v for k, v in vars(self.log).items() if v},
            "extensions": self.extensions,
            "cluster": cluster,
        }


# zot keys that exist but that shardreg does not implement: accepted with a warning.
_ZOT_IGNORED = {
    "storage": {"remoteCache", "storageDriver", "cacheDriver", "subPaths", "retention", "fastRestart",
                "redirectBlobURL", "gcTimeWindow"},
    "http": {"compat", "allowOrigin", "readTimeout", "writeTimeout"},
    "log": set(),
    "cluster": {"members", "hashKey", "tls"},
}
_TOP_IGNORED = {"scheduler"}
_LOG_LEVELS = {"debug", "info", "warn", "warning", "error", "critical", "panic", "fatal"}


class _Reader:
    """Takes typed values out of one JSON object, remembering which keys were used."""

    def __init__(self, data: Any, path: str, warnings: list[str], ignored: set[str] = frozenset()) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path or 'config'}: expected an object, got {type(data).__name__}")
        self.data, self.path, self.warnings, self.ignored = data, path, warnings, ignored
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        value = self.data[name]
        if kind is int and isinstance(value, str) and value.isdigit():
            value = int(value)  # zot writes ports as strings
        if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise ConfigError(f"{self.key(name)}: expected {expected}, got {value!r}")
        return value

    def duration(self, name: str, default: float) -> float:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        return parse_duration(self.data[name], self.key(name))

    def section(self, name: str, ignored: set[str] = frozenset()) -> _Reader:
        self.used.add(name)
        return _Reader(self.data.get(name), self.key(name), self.warnings, ignored)

    def finish(self) -> None:
        for name in self.data:
            if name in self.used:
                continue
            if name in self.ignored:
                self.warnings.append(f"{self.key(name)}: zot option not supported by shardreg, ignored")
            else:
                self.warnings.append(f"{self.key(name)}: unknown option, ignored")


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed JSON document into a :class:`Config`."""
    warnings: list[str] = []
    top = _Reader(data, "", warnings, _TOP_IGNORED)
    dist = top.get("distSpecVersion", str, "1.1.1")

    st = top.section("storage", _ZOT_IGNORED["storage"])
    root = st.get("rootDirectory", str, "./data")
    if not root.strip():
        raise ConfigError("storage.rootDirectory: must not be empty")
    storage = StorageConfig(
        root_directory=Path(root),
        commit=st.get("commit", bool, True),
        gc=st.get("gc", bool, True),
        gc_delay=st.duration("gcDelay", 3600.0),
        gc_interval=st.duration("gcInterval", 3600.0),
        allow_delete=st.get("allowDelete", bool, True),
        upload_expiry=st.duration("uploadExpiry", 24 * 3600.0),
        max_repos=st.get("maxRepos", int, 0),
    )
    if storage.max_repos < 0:
        raise ConfigError("storage.maxRepos: must not be negative")
    if st.get("dedupe", bool, True) is False:
        warnings.append("storage.dedupe: shardreg always stores one file per digest on a shard; false is ignored")
    st.finish()

    h = top.section("http", _ZOT_IGNORED["http"])
    port = h.get("port", int, 8080)
    if not 0 <= port <= 65535:
        raise ConfigError(f"http.port: {port} is not a TCP port")
    tls = None
    if h.data.get("tls"):
        t = h.section("tls")
        cert, key = t.get("cert", str, ""), t.get("key", str, "")
        if not cert or not key:
            raise ConfigError("http.tls: both cert and key are required")
        tls = TLSConfig(cert=cert, key=key, cacert=t.get("cacert", str, None))
        t.finish()
    else:
        h.used.add("tls")
    http = HttpConfig(
        address=h.get("address", str, "127.0.0.1"),
        port=port,
        external_url=h.get("externalUrl", str, None),
        realm=h.get("realm", str, "shardreg"),
        tls=tls,
        auth=h.get("auth", dict, {}),
        access_control=h.get("accessControl", dict, {}),
        ratelimit=h.get("ratelimit", dict, {}),
    )
    h.finish()

    lg = top.section("log", _ZOT_IGNORED["log"])
    level = lg.get("level", str, "info").lower()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log.level: {level!r} is not one of {sorted(_LOG_LEVELS)}")
    log = LogConfig(level=level, output=lg.get("output", str, None), audit=lg.get("audit", str, None))
    lg.finish()

    extensions = top.get("extensions", dict, {})

    c = top.section("cluster", _ZOT_IGNORED["cluster"])
    endpoints = tuple(c.get("endpoints", list, []))
    shards = c.get("shards", int, len(endpoints) or 2)
    if not 1 <= shards <= 1024:
        raise ConfigError(f"cluster.shards: {shards} is out of range 1..1024")
    if endpoints and len(endpoints) != shards:
        raise ConfigError(f"cluster.endpoints: {len(endpoints)} endpoints for {shards} shards")
    for ep in endpoints:
        if not isinstance(ep, str) or not ep.startswith(("tcp://", "ipc://")):
            raise ConfigError(f"cluster.endpoints: {ep!r} is not a tcp:// or ipc:// endpoint")
    workers = c.get("gatewayWorkers", int, 2)
    if not 1 <= workers <= 64:
        raise ConfigError(f"cluster.gatewayWorkers: {workers} is out of range 1..64")
    cluster = ClusterConfig(
        shards=shards,
        endpoints=endpoints,
        bind=c.get("bind", str, None),
        gateway_workers=workers,
        hash_seed=c.get("hashSeed", int, 0),
        shared_storage=c.get("sharedStorage", bool, not endpoints),
        request_timeout=c.duration("requestTimeout", 30.0),
        shard_metrics_port=c.get("shardMetricsPort", int, 0),
    )
    c.finish()
    top.finish()
    return Config(dist_spec_version=dist, storage=storage, http=http, log=log, extensions=extensions,
                  cluster=cluster, warnings=tuple(warnings))


def load_config(path: str | Path | None) -> Config:
    """Read a config file; ``None`` gives the embedded defaults."""
    if path is None:
        return parse_config({})
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a JSON object")
    return parse_config(data)


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with command-line overrides applied (``host``, ``port``, ``data``, ...)."""
    http, storage, cluster = config.http, config.storage, config.cluster
    if changes.get("host") is not None:
        http = replace(http, address=changes["host"])
    if changes.get("port") is not None:
        http = replace(http, port=changes["port"])
    if changes.get("data") is not None:
        storage = replace(storage, root_directory=Path(changes["data"]))
    if changes.get("shards") is not None:
        cluster = replace(cluster, shards=changes["shards"], endpoints=())
    if changes.get("workers") is not None:
        cluster = replace(cluster, gateway_workers=changes["workers"])
    return replace(config, http=http, storage=storage, cluster=cluster)
