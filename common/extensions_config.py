"""The ``extensions`` section of the config, typed: which zot extensions are switched on.

``Config.extensions`` keeps the raw JSON (so that ``Config.to_json()`` round-trips and the
gateway workers re-read it unchanged); :func:`parse_extensions` turns it into frozen
dataclasses once per process. Keys and defaults follow zot:

=====================================  ==========================================================
``extensions.search.enable``           GraphQL search (``/v2/_zot/ext/search``); a ``search``
                                       section without ``enable`` counts as enabled, as in zot
``extensions.search.cve``              accepted, but scanning is not available: CVE queries
                                       answer a GraphQL error
``extensions.ui.enable``               with search: user preferences (``/v2/_zot/ext/userprefs``)
``extensions.mgmt.enable``             ``/v2/_zot/ext/mgmt``; zot keys it on search, so it is on
                                       whenever search is, unless ``mgmt.enable`` is ``false``
``extensions.trust.{enable,cosign,     image trust: key/certificate upload and verification
notation}``
``extensions.debug.enable``            shardreg's switch for zot's debug build: the OpenAPI
                                       browser view (``/swagger/v2/``) and the GraphQL playground
``extensions.profiling.enable``        ``/v2/_zot/pprof/`` (default on, as zot; admin-only
                                       when auth is configured)
=====================================  ==========================================================

``metrics`` belongs to another module and is accepted silently. zot extensions shardreg does
not implement (``sync``, ``lint``, ``events``, ``apikey``) give a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.config import ConfigError, parse_duration

#: Sections owned by other modules: accepted here without a word.
_ELSEWHERE = {"metrics"}
#: zot extensions that shardreg does not implement.
_NOT_IMPLEMENTED = {"sync", "lint", "events", "apikey", "mcp", "quota"}
#: zot's minimum scrub interval.
MIN_SCRUB_INTERVAL = 2 * 3600.0


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
class ExtensionsConfig:
    search: SearchExtension = field(default_factory=SearchExtension)
    ui: bool = False
    mgmt: bool | None = None
    trust: TrustExtension = field(default_factory=TrustExtension)
    debug: bool = False
    profiling: bool = True
    scrub: ScrubExtension = field(default_factory=ScrubExtension)
    warnings: tuple[str, ...] = ()

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


def _section(raw: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"extensions.{name}: expected an object, got {type(value).__name__}")
    return value


def _flag(section: dict[str, Any], name: str, where: str, default: bool) -> bool:
    value = section.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{name}: expected true or false, got {value!r}")
    return value


def _unknown(section: dict[str, Any], known: set[str], where: str, warnings: list[str]) -> None:
    for key in section:
        if key not in known:
            warnings.append(f"{where}.{key}: unknown option, ignored")


def parse_extensions(raw: dict[str, Any] | None) -> ExtensionsConfig:
    """Validate ``Config.extensions``; raises :class:`ConfigError` on wrong types."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError("extensions: expected an object")
    warnings: list[str] = []

    search = SearchExtension()
    if (s := _section(raw, "search")) is not None:
        search = SearchExtension(enable=_flag(s, "enable", "extensions.search", True),
                                 cve_configured=s.get("cve") is not None)
        if search.cve_configured:
            warnings.append("extensions.search.cve: vulnerability scanning is not available in shardreg; "
                            "CVE queries answer an error")
        _unknown(s, {"enable", "cve"}, "extensions.search", warnings)

    ui = False
    if (u := _section(raw, "ui")) is not None:
        ui = _flag(u, "enable", "extensions.ui", True)
        _unknown(u, {"enable"}, "extensions.ui", warnings)

    mgmt: bool | None = None
    if (m := _section(raw, "mgmt")) is not None:
        mgmt = _flag(m, "enable", "extensions.mgmt", True)
        _unknown(m, {"enable"}, "extensions.mgmt", warnings)

    trust = TrustExtension()
    if (t := _section(raw, "trust")) is not None:
        trust = TrustExtension(enable=_flag(t, "enable", "extensions.trust", True),
                               cosign=_flag(t, "cosign", "extensions.trust", False),
                               notation=_flag(t, "notation", "extensions.trust", False))
        _unknown(t, {"enable", "cosign", "notation"}, "extensions.trust", warnings)

    debug = False
    if (d := _section(raw, "debug")) is not None:
        debug = _flag(d, "enable", "extensions.debug", True)
        _unknown(d, {"enable"}, "extensions.debug", warnings)

    profiling = True
    if (p := _section(raw, "profiling")) is not None:
        profiling = _flag(p, "enable", "extensions.profiling", True)
        _unknown(p, {"enable"}, "extensions.profiling", warnings)

    scrub = ScrubExtension()
    if (sc := _section(raw, "scrub")) is not None:
        interval = parse_duration(sc.get("interval", "24h"), "extensions.scrub.interval")
        if interval < MIN_SCRUB_INTERVAL:
            warnings.append("extensions.scrub.interval: raised to the minimum of 2h")
            interval = MIN_SCRUB_INTERVAL
        scrub = ScrubExtension(enable=_flag(sc, "enable", "extensions.scrub", True), interval=interval)
        _unknown(sc, {"enable", "interval"}, "extensions.scrub", warnings)

    known = {"search", "ui", "mgmt", "trust", "debug", "profiling", "scrub"} | _ELSEWHERE
    for key in raw:
        if key in known:
            continue
        if key in _NOT_IMPLEMENTED:
            warnings.append(f"extensions.{key}: zot option not supported by shardreg, ignored")
        else:
            warnings.append(f"extensions.{key}: unknown option, ignored")
    return ExtensionsConfig(search=search, ui=ui, mgmt=mgmt, trust=trust, debug=debug, profiling=profiling,
                            scrub=scrub, warnings=tuple(warnings))
