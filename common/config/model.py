"""The registry's configuration: zot's JSON format plus a ``cluster`` section.

Parsed and validated once, at load, into frozen dataclasses: storage, http (with its ``auth``,
``accessControl`` and ``ratelimit``, see :mod:`common.config.auth` and
:mod:`common.config.access`), log, extensions (:mod:`common.config.extensions`) and cluster.
Every value is read through :class:`~common.config.reader.Reader`, so an invalid one raises
:class:`ConfigError` naming its key path. Keys zot knows that shardreg does not implement, and
keys nobody knows, are collected in ``Config.warnings`` (logged at start), never silently dropped.

Example::

    {"distSpecVersion": "1.1.1",
     "storage": {"rootDirectory": "./data"},
     "http": {"address": "127.0.0.1", "port": 8080},
     "log": {"level": "info"},
     "cluster": {"shards": 2, "gatewayWorkers": 2}}
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.config.access import AccessSettings, RateLimit, parse_access, parse_ratelimit
from common.config.auth import AuthSettings, parse_auth
from common.config.extensions import ExtensionsConfig, parse_extensions
from common.config.lifecycle import LifecycleConfig, parse_lifecycle
from common.config.reader import ConfigError, Reader

#: Longest filesystem path usable for a Unix socket (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 100
#: Config keys whose values are secrets: written as ``"***"`` in ``effective-config.json``.
SECRET_KEYS = frozenset({"sessionSecret", "bindPassword", "clientSecret", "password", "secret", "token",
                         "Authorization", "clientsecret"})
#: Config keys whose values are maps of HTTP headers (event sinks, Distribution notification
#: endpoints): every value is written as ``"***"``.
HEADER_MAPS = frozenset({"headers"})


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
    #: Most uploads in progress on one shard, and per authenticated user on one shard; 0 = no limit.
    max_uploads: int = 10000
    max_uploads_per_user: int = 1000


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
    #: ``http.auth`` (:mod:`common.config.auth`).
    auth: AuthSettings = field(default_factory=AuthSettings)
    #: ``http.accessControl`` and ``http.ratelimit`` (:mod:`common.config.access`).
    access_control: AccessSettings = field(default_factory=AccessSettings)
    ratelimit: RateLimit = field(default_factory=RateLimit)
    #: ``http.readTimeout``: an upload body slower than the minimum rate for this long is abandoned.
    read_timeout: float = 120.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    output: str | None = None
    #: A separate file with one JSON line per state-changing request (zot's ``log.audit``).
    audit: str | None = None
    #: ``text`` (default) or ``json``: one JSON object per line, for every log line.
    format: str = "text"
    #: One access-log line per HTTP request, at ``info`` (``log.access: false`` turns it off).
    access: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "format": self.format, "access": self.access}
        if self.output:
            out["output"] = self.output
        if self.audit:
            out["audit"] = self.audit
        return out


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
    #: Where the embedded cluster's ipc sockets live (a private 0700 directory); empty →
    #: ``<root>/run``. The supervisor sets it when that path is too long for a socket.
    socket_directory: str | None = None
    #: CURVE key files (:mod:`common.curvekeys`): the shards' key pair (``{index}`` is filled
    #: in; a gateway needs only the public part), the gateways' key pair (a shard needs only the
    #: public part), and more gateway public keys a shard admits (key rotation).
    shard_key: str | None = None
    gateway_key: str | None = None
    authorized_gateway_keys: tuple[str, ...] = ()
    #: tcp endpoints without CURVE keys: allowed (with a warning) only when this is true.
    insecure: bool = False


@dataclass(frozen=True)
class Config:
    dist_spec_version: str = "1.1.1"
    storage: StorageConfig = field(default_factory=StorageConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    extensions: ExtensionsConfig = field(default_factory=ExtensionsConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    warnings: tuple[str, ...] = ()
    #: storage.retention, storage.immutableTags, extensions.events/lint, notifications (common/config/lifecycle.py)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)

    def socket_directory(self) -> Path:
        """The private directory of the embedded cluster's ipc sockets (never the abstract
        namespace, which has no permissions: any local user could connect)."""
        if self.cluster.socket_directory:
            return Path(self.cluster.socket_directory)
        return self.default_socket_directory()

    def default_socket_directory(self) -> Path:
        return self.storage.root_directory.resolve() / "run"

    def socket_path_fits(self, directory: Path) -> bool:
        return len(f"{directory}/shard-{self.cluster.shards - 1}.sock") <= MAX_IPC_PATH

    def shard_endpoint(self, index: int) -> str:
        if self.cluster.endpoints:
            return self.cluster.endpoints[index]
        directory = self.socket_directory()
        if not self.socket_path_fits(directory):
            raise ConfigError(f"{directory} is too long for a Unix socket path: set cluster.socketDirectory "
                              "to a short private directory (shardreg serve does this by itself)")
        return f"ipc://{directory}/shard-{index}.sock"

    def shard_bind(self, index: int) -> str:
        endpoint = self.shard_endpoint(index)
        if self.cluster.bind:
            port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else ""
            return self.cluster.bind.format(index=index, port=port)
        return endpoint

    def shard_dir(self, index: int) -> Path:
        return self.storage.root_directory / f"shard-{index}"

    def to_json(self) -> dict[str, Any]:
        """The config in its file format, as child processes read it: :func:`parse_config` of it gives
        this config back (without the warnings: unknown keys are not written)."""
        http: dict[str, Any] = {"address": self.http.address, "port": self.http.port, "realm": self.http.realm}
        if self.http.external_url:
            http["externalUrl"] = self.http.external_url
        if self.http.read_timeout != HttpConfig.read_timeout:
            http["readTimeout"] = self.http.read_timeout
        if self.http.tls:
            http["tls"] = {k: v for k, v in vars(self.http.tls).items() if v}
        for key, value in (("auth", self.http.auth.to_json()), ("accessControl", self.http.access_control.to_json()),
                           ("ratelimit", self.http.ratelimit.to_json())):
            if value:
                http[key] = value
        cluster: dict[str, Any] = {
            "shards": self.cluster.shards, "gatewayWorkers": self.cluster.gateway_workers,
            "hashSeed": self.cluster.hash_seed, "sharedStorage": self.cluster.shared_storage,
            "requestTimeout": self.cluster.request_timeout, "shardMetricsPort": self.cluster.shard_metrics_port,
        }
        if self.cluster.endpoints:
            cluster["endpoints"] = list(self.cluster.endpoints)
        if self.cluster.bind:
            cluster["bind"] = self.cluster.bind
        for key, path in (("socketDirectory", self.cluster.socket_directory), ("shardKey", self.cluster.shard_key),
                          ("gatewayKey", self.cluster.gateway_key)):
            if path:
                cluster[key] = path
        if self.cluster.authorized_gateway_keys:
            cluster["authorizedGatewayKeys"] = list(self.cluster.authorized_gateway_keys)
        if self.cluster.insecure:
            cluster["insecure"] = True
        lifecycle = self.lifecycle.to_json()
        out: dict[str, Any] = {
            "distSpecVersion": self.dist_spec_version,
            "storage": {
                "rootDirectory": str(self.storage.root_directory), "commit": self.storage.commit,
                "gc": self.storage.gc, "gcDelay": self.storage.gc_delay, "gcInterval": self.storage.gc_interval,
                "allowDelete": self.storage.allow_delete, "uploadExpiry": self.storage.upload_expiry,
                "maxRepos": self.storage.max_repos, "maxUploads": self.storage.max_uploads,
                "maxUploadsPerUser": self.storage.max_uploads_per_user,
            },
            "http": http,
            "log": self.log.to_json(),
            "extensions": self.extensions.to_json(),
            "cluster": cluster,
        }
        out["storage"].update(lifecycle.get("storage", {}))
        out["extensions"].update(lifecycle.get("extensions", {}))
        if "notifications" in lifecycle:
            out["notifications"] = lifecycle["notifications"]
        return out


# zot keys that exist but that shardreg does not implement: accepted with a warning.
_ZOT_IGNORED = {
    "storage": {"remoteCache", "storageDriver", "cacheDriver", "subPaths", "fastRestart",
                "redirectBlobURL", "gcTimeWindow"},
    "http": {"compat", "allowOrigin", "writeTimeout"},
    "log": set(),
    "cluster": {"members", "hashKey", "tls"},
}
_TOP_IGNORED = {"scheduler"}
_LOG_FORMATS = {"text", "json"}
_LOG_LEVELS = {"debug", "info", "warn", "warning", "error", "critical", "panic", "fatal"}


def _storage(st: Reader) -> StorageConfig:
    root = st.text("rootDirectory", "./data")
    if not root.strip():
        raise st.error("rootDirectory", "must not be empty")
    storage = StorageConfig(
        root_directory=Path(root),
        commit=st.flag("commit", True),
        gc=st.flag("gc", True),
        gc_delay=st.duration("gcDelay", 3600.0),
        gc_interval=st.duration("gcInterval", 3600.0),
        allow_delete=st.flag("allowDelete", True),
        upload_expiry=st.duration("uploadExpiry", 24 * 3600.0),
        max_repos=st.integer("maxRepos", 0),
        max_uploads=st.integer("maxUploads", 10000),
        max_uploads_per_user=st.integer("maxUploadsPerUser", 1000),
    )
    for name, value in (("maxRepos", storage.max_repos), ("maxUploads", storage.max_uploads),
                        ("maxUploadsPerUser", storage.max_uploads_per_user)):
        if value < 0:
            raise st.error(name, "must not be negative")
    if st.flag("dedupe", True) is False:
        st.warn("dedupe", "shardreg always stores one file per digest on a shard; false is ignored")
    st.finish(zot_only=_ZOT_IGNORED["storage"])
    return storage


def _tls(h: Reader) -> TLSConfig | None:
    if not h.peek("tls"):
        h.skip("tls")
        return None
    t = h.section("tls")
    cert, key = t.text("cert", ""), t.text("key", "")
    if not cert or not key:
        raise h.error("tls", "both cert and key are required")
    tls = TLSConfig(cert=cert, key=key, cacert=t.string("cacert"))
    t.finish()
    return tls


def _http(h: Reader) -> HttpConfig:
    port = h.integer("port", 8080)
    if not 0 <= port <= 65535:
        raise h.error("port", f"{port} is not a TCP port")
    tls = _tls(h)
    http = HttpConfig(
        address=h.text("address", "127.0.0.1"),
        port=port,
        external_url=h.string("externalUrl"),
        realm=h.text("realm", "shardreg"),
        tls=tls,
        auth=parse_auth(h.section("auth"), tls=tls is not None, client_ca=bool(tls and tls.cacert)),
        access_control=parse_access(h.section("accessControl")),
        ratelimit=parse_ratelimit(h.section("ratelimit")),
        read_timeout=h.duration("readTimeout", 120.0),
    )
    if http.read_timeout <= 0:
        raise h.error("readTimeout", "must be positive")
    h.finish(zot_only=_ZOT_IGNORED["http"])
    return http


def _log(lg: Reader) -> LogConfig:
    level = lg.text("level", "info").lower()
    if level not in _LOG_LEVELS:
        raise lg.error("level", f"{level!r} is not one of {sorted(_LOG_LEVELS)}")
    fmt = lg.text("format", "text").lower()
    if fmt not in _LOG_FORMATS:
        raise lg.error("format", f"{fmt!r} is not one of {sorted(_LOG_FORMATS)}")
    log = LogConfig(level=level, output=lg.string("output"), audit=lg.string("audit"), format=fmt,
                    access=lg.flag("access", True))
    lg.finish(zot_only=_ZOT_IGNORED["log"])
    return log


def _cluster(c: Reader) -> ClusterConfig:
    endpoints = c.strings("endpoints")
    shards = c.integer("shards", len(endpoints) or 2)
    if not 1 <= shards <= 1024:
        raise c.error("shards", f"{shards} is out of range 1..1024")
    if endpoints and len(endpoints) != shards:
        raise c.error("endpoints", f"{len(endpoints)} endpoints for {shards} shards")
    for ep in endpoints:
        if not ep.startswith(("tcp://", "ipc://")):
            raise c.error("endpoints", f"{ep!r} is not a tcp:// or ipc:// endpoint")
    workers = c.integer("gatewayWorkers", 2)
    if not 1 <= workers <= 64:
        raise c.error("gatewayWorkers", f"{workers} is out of range 1..64")
    cluster = ClusterConfig(
        shards=shards,
        endpoints=endpoints,
        bind=c.string("bind"),
        gateway_workers=workers,
        hash_seed=c.integer("hashSeed", 0),
        shared_storage=c.flag("sharedStorage", not endpoints),
        request_timeout=c.duration("requestTimeout", 30.0),
        shard_metrics_port=c.integer("shardMetricsPort", 0),
        socket_directory=c.string("socketDirectory"),
        shard_key=c.string("shardKey"),
        gateway_key=c.string("gatewayKey"),
        authorized_gateway_keys=c.strings("authorizedGatewayKeys"),
        insecure=c.flag("insecure", False),
    )
    c.finish(zot_only=_ZOT_IGNORED["cluster"])
    return cluster


def _redact_headers(headers: Any) -> Any:
    """Every value of a header map: a sink's custom header is as likely to carry a token as not."""
    if isinstance(headers, dict):
        return {name: "***" if value not in (None, "", []) else value for name, value in headers.items()}
    return redact(headers)


def redact(doc: Any) -> Any:
    """A copy of a config document with every secret value replaced by ``"***"``."""
    if isinstance(doc, dict):
        return {k: _redact_headers(v) if k in HEADER_MAPS else
                "***" if k in SECRET_KEYS and v not in (None, "") else redact(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v) for v in doc]
    return doc


def parse_config(data: dict[str, Any]) -> Config:
    """Validate a parsed JSON document into a :class:`Config` (raises :class:`ConfigError`)."""
    warnings: list[str] = []
    top = Reader(data, "", warnings)
    storage, extensions = top.section("storage"), top.section("extensions")
    lifecycle = parse_lifecycle(storage, extensions, top)
    config = Config(dist_spec_version=top.text("distSpecVersion", "1.1.1"),
                    storage=_storage(storage),
                    http=_http(top.section("http")),
                    log=_log(top.section("log")),
                    extensions=parse_extensions(extensions),
                    cluster=_cluster(top.section("cluster")),
                    lifecycle=lifecycle)
    top.finish(zot_only=_TOP_IGNORED)
    return replace(config, warnings=tuple(warnings))


def load_config(path: str | Path | None) -> Config:
    """Read a config file (``-``: standard input, how the supervisor hands it to its children);
    ``None`` gives the embedded defaults."""
    if path is None:
        return parse_config({})
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
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
