"""``extensions``: which of zot's extensions are switched on. Keys and defaults follow zot:

=====================================  ==========================================================
``extensions.search.enable``           GraphQL search (``/v2/_zot/ext/search``); a ``search``
                                       section without ``enable`` counts as enabled, as in zot
``extensions.search.cve``              accepted, but scanning is not available: CVE queries
                                       answer a GraphQL error
``extensions.ui.enable``               with search: the web UI at ``/`` and user preferences
                                       (``/v2/_zot/ext/userprefs``)
``extensions.mgmt.enable``             ``/v2/_zot/ext/mgmt``; zot keys it on search, so it is on
                                       whenever search is, unless ``mgmt.enable`` is ``false``
``extensions.trust.{enable,cosign,     image trust: key/certificate upload and verification
notation}``
``extensions.debug.enable``            shardreg's switch for zot's debug build: the OpenAPI
                                       browser view (``/swagger/v2/``) and the GraphQL playground
``extensions.profiling.enable``        ``/v2/_zot/pprof/`` (default on, as zot; admin-only
                                       when auth is configured)
``extensions.scrub.{enable,interval}`` shards re-hash their blobs and manifests every interval
                                       (default 24h, at least 2h)
``extensions.metrics.enable``,         Prometheus ``/metrics`` on the gateway (a section without
``.prometheus.path``                   ``enable`` counts as enabled)
=====================================  ==========================================================

``extensions.sync``                    mirroring and pull-through (:mod:`common.config.sync`)

zot extensions shardreg does not implement (``apikey``, ``mcp``, ``quota``) give a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.config.reader import Reader
from common.config.sync import SyncConfig, parse_sync

#: zot extensions that shardreg does not implement.
_NOT_IMPLEMENTED = {"apikey", "mcp", "quota"}  # lint, events: common/config/lifecycle.py
#: zot's minimum scrub interval.
MIN_SCRUB_INTERVAL = 2 * 3600.0
DEFAULT_METRICS_PATH = "/metrics"


@dataclass(frozen=True)
class SearchExtension:
    enable: bool = False
    #: ``search.cve`` was configured (scanning still is not available offline).
    cve_configured: bool = False


@dataclass(frozen=True)
class TrustExtension:
    enable: bool = False
    cosign: bool = False
    notation: bool = False


@dataclass(frozen=True)
class ScrubExtension:
    enable: bool = False
    #: Seconds between two passes over every blob of a shard.
    interval: float = 24 * 3600.0


@dataclass(frozen=True)
class MetricsExtension:
    enable: bool = False
    #: Where the gateway answers scrapes (``prometheus.path``).
    path: str = DEFAULT_METRICS_PATH


@dataclass(frozen=True)
class ExtensionsConfig:
    search: SearchExtension = field(default_factory=SearchExtension)
    ui: bool = False
    mgmt: bool | None = None
    trust: TrustExtension = field(default_factory=TrustExtension)
    debug: bool = False
    profiling: bool = True
    scrub: ScrubExtension = field(default_factory=ScrubExtension)
    metrics: MetricsExtension = field(default_factory=MetricsExtension)
    sync: SyncConfig = field(default_factory=SyncConfig)

    # -- what is switched on (one place, so that discover cannot drift from the routes) --
    @property
    def search_enabled(self) -> bool:
        return self.search.enable

    @property
    def userprefs_enabled(self) -> bool:
        return self.search.enable and self.ui

    @property
    def mgmt_enabled(self) -> bool:
        if self.mgmt is False:
            return False
        return bool(self.mgmt) or self.search.enable

    @property
    def cosign_enabled(self) -> bool:
        return self.trust.enable and self.trust.cosign

    @property
    def notation_enabled(self) -> bool:
        return self.trust.enable and self.trust.notation

    @property
    def trust_enabled(self) -> bool:
        return self.cosign_enabled or self.notation_enabled

    def to_json(self) -> dict[str, Any]:
        search: dict[str, Any] = {"enable": self.search.enable}
        if self.search.cve_configured:
            search["cve"] = {}
        out: dict[str, Any] = {
            "search": search, "ui": {"enable": self.ui},
            "trust": {"enable": self.trust.enable, "cosign": self.trust.cosign, "notation": self.trust.notation},
            "debug": {"enable": self.debug}, "profiling": {"enable": self.profiling},
            "scrub": {"enable": self.scrub.enable, "interval": self.scrub.interval},
            "metrics": {"enable": self.metrics.enable, "prometheus": {"path": self.metrics.path}},
        }
        if self.mgmt is not None:
            out["mgmt"] = {"enable": self.mgmt}
        if self.sync.enable:
            out["sync"] = self.sync.to_json()
        return out


def _switch(r: Reader, name: str, default: bool) -> bool:
    """An extension that is only switched on or off: ``{name: {"enable": bool}}``."""
    section = r.optional(name)
    if section is None:
        return default
    enable = section.flag("enable", True)
    section.finish()
    return enable


def parse_extensions(r: Reader) -> ExtensionsConfig:
    """The ``extensions`` section; raises :class:`~common.config.reader.ConfigError` on wrong types."""
    search = SearchExtension()
    if (s := r.optional("search")) is not None:
        search = SearchExtension(enable=s.flag("enable", True), cve_configured=s.value("cve") is not None)
        if search.cve_configured:
            s.warn("cve", "vulnerability scanning is not available in shardreg; CVE queries answer an error")
        s.finish()

    mgmt = None
    if r.has("mgmt"):
        mgmt = _switch(r, "mgmt", True)
    else:
        r.skip("mgmt")

    trust = TrustExtension()
    if (t := r.optional("trust")) is not None:
        trust = TrustExtension(enable=t.flag("enable", True), cosign=t.flag("cosign", False),
                               notation=t.flag("notation", False))
        t.finish()

    scrub = ScrubExtension()
    if (sc := r.optional("scrub")) is not None:
        interval = sc.duration("interval", 24 * 3600.0)
        if interval < MIN_SCRUB_INTERVAL:
            sc.warn("interval", "raised to the minimum of 2h")
            interval = MIN_SCRUB_INTERVAL
        scrub = ScrubExtension(enable=sc.flag("enable", True), interval=interval)
        sc.finish()

    metrics = MetricsExtension()
    if (m := r.optional("metrics")) is not None:
        prometheus = m.section("prometheus")
        path = prometheus.text("path", DEFAULT_METRICS_PATH)
        if not path.startswith("/"):
            raise prometheus.error("path", f"expected a path starting with /, got {path!r}")
        metrics = MetricsExtension(enable=m.flag("enable", True), path=path)
        prometheus.finish()
        m.finish()

    ui = _switch(r, "ui", False)
    if ui and not search.enable:
        r.warn("ui", "the web UI reads through search: enable extensions.search too (the UI is off without it)")

    config = ExtensionsConfig(search=search, ui=ui, mgmt=mgmt, trust=trust,
                              debug=_switch(r, "debug", False), profiling=_switch(r, "profiling", True),
                              scrub=scrub, metrics=metrics, sync=parse_sync(r.section("sync")))
    r.finish(zot_only=_NOT_IMPLEMENTED)
    return config
