"""common.config.extensions: zot's keys, defaults and the discover list derived from them."""

from __future__ import annotations

from typing import Any

import pytest

from common.config import ConfigError, ExtensionsConfig, parse_config
from gateway.extensions.discover import enabled_endpoints
from gateway.extensions.mgmt import stripped_auth


def parse_extensions(raw: dict[str, Any]) -> ExtensionsConfig:
    """The typed ``extensions`` of a config holding only ``raw``."""
    return parse_config({"extensions": raw}).extensions


def warnings_of(raw: dict[str, Any]) -> tuple[str, ...]:
    return parse_config({"extensions": raw}).warnings


def test_defaults_nothing_enabled():
    ext = parse_extensions({})
    assert not ext.search_enabled and not ext.userprefs_enabled and not ext.mgmt_enabled
    assert not ext.trust_enabled and not ext.debug and ext.profiling and warnings_of({}) == ()
    assert enabled_endpoints(ext) == []


def test_zot_semantics():
    ext = parse_extensions({"search": {}, "ui": {"enable": True}})
    assert ext.search_enabled and ext.userprefs_enabled and ext.mgmt_enabled  # enable defaults to true
    assert not parse_extensions({"ui": {"enable": True}}).userprefs_enabled  # needs search too
    assert not parse_extensions({"search": {"enable": True}, "mgmt": {"enable": False}}).mgmt_enabled
    assert parse_extensions({"mgmt": {"enable": True}}).mgmt_enabled
    trust = parse_extensions({"trust": {"enable": True, "cosign": True}})
    assert trust.cosign_enabled and not trust.notation_enabled
    assert not parse_extensions({"trust": {"enable": False, "cosign": True}}).cosign_enabled
    assert enabled_endpoints(parse_extensions({"search": {"enable": True}, "ui": {"enable": True},
                                               "trust": {"notation": True, "cosign": True}})) == [
        "/v2/_zot/ext/notation", "/v2/_zot/ext/cosign", "/v2/_zot/ext/search", "/v2/_zot/ext/userprefs",
        "/v2/_zot/ext/mgmt"]


def test_warnings():
    assert warnings_of({"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}}) == ()
    assert warnings_of({"debug": {"enable": True}}) == ()
    warnings = warnings_of({"apikey": {}, "bogus": {}, "search": {"enable": True, "cve": {}, "x": 1}})
    assert any("extensions.apikey" in w and "not supported" in w for w in warnings)
    assert any("extensions.bogus" in w and "unknown" in w for w in warnings)
    assert any("extensions.search.cve" in w for w in warnings)
    assert any("extensions.search.x" in w for w in warnings)


def test_bad_types():
    with pytest.raises(ConfigError):
        parse_extensions({"search": {"enable": "yes"}})
    with pytest.raises(ConfigError):
        parse_extensions({"trust": []})


def test_round_trip_through_config_json():
    raw = {"search": {"enable": True}, "ui": {"enable": True}, "debug": {"enable": True}}
    config = parse_config({"extensions": raw})
    again = parse_config(config.to_json())
    assert again.extensions == config.extensions


def test_mgmt_stripped_auth():
    config = parse_config({"http": {"auth": {
        "htpasswd": {"path": "/secret/htpasswd"}, "apikey": True,
        "bearer": {"realm": "https://auth/token", "service": "reg", "cert": "/secret/cert"},
        "openid": {"providers": {"github": {"clientid": "x", "clientsecret": "s"}}}}}})
    assert stripped_auth(config) == {"htpasswd": {}, "apikey": True,
                                     "bearer": {"realm": "https://auth/token", "service": "reg"},
                                     "openid": {"providers": {"github": {"name": "github"}}}}
