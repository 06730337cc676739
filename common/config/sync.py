"""``extensions.sync``: mirroring and pull-through from upstream registries, in zot's format.

=====================================  ==========================================================
``enable``                             default true when the section is present (as zot)
``credentialsFile``                    zot's JSON ``{"host[:port]": {"username", "password"}}``
``downloadDir``                        not needed (downloads go to the shard's own directory)
``registries[].urls``                  one or more base URLs, tried in order (fail-over)
``registries[].onDemand``              pull-through of manifests and blobs on a local miss
``registries[].pollInterval``          periodic mirroring of the ``content`` rules; also how
                                       often a locally held tag is re-checked (default 5m)
``registries[].tlsVerify``, ``certDir`` server verification (default on); CAs ``*.crt``,
                                       client pair ``*.cert`` + ``*.key``
``registries[].maxRetries``,           periodic mirroring only (on-demand fails fast)
``retryDelay``
``registries[].onlySigned``            mirror only images with a signature referrer
``registries[].preserveDigest``        always true here: manifests are stored as fetched
``registries[].reqConcurrent``,        per registry: requests in flight (default 3) and per
``reqPerSec``                          second (default unlimited)
``registries[].syncTimeout``           one upstream request's timeout (default 5m)
``registries[].content[]``             ``prefix`` (glob), ``destination``, ``stripPrefix``,
                                       ``tags`` {``regex``, ``excludeRegex``, ``semver``}
=====================================  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from common.config.reader import ConfigError, Reader

#: How often a locally held tag is re-checked against the upstream when no pollInterval is set.
DEFAULT_TAG_RECHECK = 300.0
DEFAULT_REQ_CONCURRENT = 3
DEFAULT_SYNC_TIMEOUT = 300.0
#: zot registry keys shardreg reads nothing from (credential helpers, HTTP/2 tuning).
_ZOT_ONLY = {"credentialHelper", "oauth2CredentialHelper", "disableHTTP2", "maxIdleConnsPerHost",
             "maxRetryDelay", "manifestCheckInterval", "syncLegacyCosignTags"}


@dataclass(frozen=True)
class TagFilter:
    regex: str | None = None
    exclude_regex: str | None = None
    semver: bool = False


@dataclass(frozen=True)
class SyncContent:
    prefix: str
    destination: str = ""
    strip_prefix: bool = False
    tags: TagFilter | None = None


@dataclass(frozen=True)
class SyncRegistry:
    urls: tuple[str, ...]
    on_demand: bool = False
    #: Seconds between two periodic passes; 0: no periodic mirroring.
    poll_interval: float = 0.0
    tls_verify: bool = True
    cert_dir: str = ""
    max_retries: int = 0
    retry_delay: float = 0.0
    only_signed: bool = False
    preserve_digest: bool = False
    content: tuple[SyncContent, ...] = ()
    req_concurrent: int = DEFAULT_REQ_CONCURRENT
    #: 0: unlimited.
    req_per_sec: float = 0.0
    sync_timeout: float = DEFAULT_SYNC_TIMEOUT

    @property
    def name(self) -> str:
        """The registry's label in logs and metrics: its first URL's host[:port]."""
        return urlsplit(self.urls[0]).netloc

    @property
    def tag_recheck(self) -> float:
        return self.poll_interval or DEFAULT_TAG_RECHECK

    @property
    def periodic(self) -> bool:
        return self.poll_interval > 0 and bool(self.content)


@dataclass(frozen=True)
class SyncConfig:
    enable: bool = False
    credentials_file: str = ""
    download_dir: str = ""
    registries: tuple[SyncRegistry, ...] = field(default_factory=tuple)

    @property
    def active(self) -> bool:
        return self.enable and bool(self.registries)

    def to_json(self) -> dict[str, Any]:
        def tags(t: TagFilter) -> dict[str, Any]:
            out: dict[str, Any] = {"semver": t.semver}
            if t.regex is not None:
                out["regex"] = t.regex
            if t.exclude_regex is not None:
                out["excludeRegex"] = t.exclude_regex
            return out

        def content(c: SyncContent) -> dict[str, Any]:
            out: dict[str, Any] = {"prefix": c.prefix, "destination": c.destination, "stripPrefix": c.strip_prefix}
            if c.tags is not None:
                out["tags"] = tags(c.tags)
            return out

        out: dict[str, Any] = {"enable": self.enable, "registries": [{
            "urls": list(r.urls), "onDemand": r.on_demand, "pollInterval": r.poll_interval,
            "tlsVerify": r.tls_verify, "certDir": r.cert_dir, "maxRetries": r.max_retries,
            "retryDelay": r.retry_delay, "onlySigned": r.only_signed, "preserveDigest": r.preserve_digest,
            "content": [content(c) for c in r.content], "reqConcurrent": r.req_concurrent,
            "reqPerSec": r.req_per_sec, "syncTimeout": r.sync_timeout,
        } for r in self.registries]}
        if self.credentials_file:
            out["credentialsFile"] = self.credentials_file
        if self.download_dir:
            out["downloadDir"] = self.download_dir
        return out


def _regex(r: Reader, name: str) -> str | None:
    value = r.string(name)
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise r.error(name, f"invalid regular expression: {exc}") from None
    return value


def _content(r: Reader) -> SyncContent:
    prefix = r.string("prefix")
    if not prefix:
        raise r.error("prefix", "a content rule needs a prefix (a repository glob, e.g. \"library/**\")")
    tags = None
    if (t := r.optional("tags")) is not None:
        tags = TagFilter(regex=_regex(t, "regex"), exclude_regex=_regex(t, "excludeRegex"), semver=t.flag("semver", False))
        t.finish()
    content = SyncContent(prefix=prefix, destination=r.text("destination", ""), strip_prefix=r.flag("stripPrefix", False),
                          tags=tags)
    r.finish()
    return content


def _registry(r: Reader) -> SyncRegistry:
    urls = r.strings("urls")
    if not urls:
        raise r.error("urls", "a sync registry needs at least one URL")
    for i, url in enumerate(urls):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{r.key('urls')}[{i}]: expected an http:// or https:// URL, got {url!r}")
    concurrent = r.integer("reqConcurrent", DEFAULT_REQ_CONCURRENT)
    if concurrent < 1:
        raise r.error("reqConcurrent", "must be at least 1")
    per_sec = r.number("reqPerSec") or 0.0
    if per_sec < 0:
        raise r.error("reqPerSec", "must not be negative")
    retries = r.integer("maxRetries", 0)
    if retries < 0:
        raise r.error("maxRetries", "must not be negative")
    registry = SyncRegistry(
        urls=tuple(u.rstrip("/") for u in urls), on_demand=r.flag("onDemand", False),
        poll_interval=r.duration("pollInterval", 0.0), tls_verify=r.flag("tlsVerify", True),
        cert_dir=r.text("certDir", ""), max_retries=retries, retry_delay=r.duration("retryDelay", 0.0),
        only_signed=r.flag("onlySigned", False), preserve_digest=r.flag("preserveDigest", False),
        content=tuple(_content(c) for c in r.objects("content")), req_concurrent=concurrent, req_per_sec=per_sec,
        sync_timeout=r.duration("syncTimeout", DEFAULT_SYNC_TIMEOUT) or DEFAULT_SYNC_TIMEOUT)
    if registry.poll_interval and not registry.content:
        r.warn("pollInterval", "periodic mirroring needs content rules; only on-demand applies")
    r.finish(zot_only=_ZOT_ONLY)
    return registry


def parse_sync(r: Reader) -> SyncConfig:
    """The ``extensions.sync`` section (absent: disabled)."""
    if not r.present:
        return SyncConfig()
    download_dir = r.text("downloadDir", "")
    if download_dir:
        r.warn("downloadDir", "not needed: shards download into their own directory; ignored")
    config = SyncConfig(enable=r.flag("enable", True), credentials_file=r.text("credentialsFile", ""),
                        download_dir=download_dir, registries=tuple(_registry(x) for x in r.objects("registries")))
    r.finish()
    return config
