"""Unit tests of the pure parts: globs and policies, settings validation, buckets, API key times."""

from __future__ import annotations

import pytest

from common.config import ConfigError, parse_config
from gateway.auth.apikeys import parse_time, rfc3339
from gateway.auth.bearer import parse_scope
from gateway.auth.policy import PolicyEngine, glob_match
from gateway.auth.ratelimit import Buckets
from tests.auth.conftest import ACCESS_CONTROL


@pytest.mark.parametrize(("pattern", "name", "match"), [
    ("**", "a", True), ("**", "a/b/c", True), ("*", "a", True), ("*", "a/b", False),
    ("team-a/**", "team-a/x", True), ("team-a/**", "team-a/x/y", True), ("team-a/**", "team-a", False),
    ("team-a/*", "team-a/x/y", False), ("**/prod", "a/b/prod", True), ("**/prod", "prod", True),
    ("app?", "app1", True), ("a.b", "aXb", False),
])
def test_glob(pattern: str, name: str, match: bool) -> None:
    assert glob_match(pattern, name) is match


def engine() -> PolicyEngine:
    config = parse_config({"http": {"auth": {"htpasswd": {"path": "/nonexistent"}}, "accessControl": ACCESS_CONTROL}})
    return PolicyEngine(config.http.access_control, config.http.auth.enabled)


def test_most_specific_pattern_wins() -> None:
    e = engine()
    assert e.rules_for("team-a/updater").pattern == "team-a/updater"
    assert e.rules_for("team-a/app").pattern == "team-a/**"
    assert e.rules_for("x/y").pattern == "**"
    bob = e.groups_of("bob")
    assert bob == {"team-a"}
    assert e.actions("bob", bob, "team-a/app") == {"read", "create"}
    assert e.actions("bob", bob, "team-a/updater") == {"read", "update"}
    assert e.actions(None, frozenset(), "public/app") == {"read"}
    assert e.actions("root", frozenset(), "anything") == {"read", "create", "update", "delete"}


def test_no_access_control() -> None:
    config = parse_config({"http": {"auth": {"htpasswd": {"path": "/x"}}}})
    e = PolicyEngine(config.http.access_control, config.http.auth.enabled)
    assert e.actions("anyone", frozenset(), "r") == {"read", "create", "update", "delete"}
    assert e.actions(None, frozenset(), "r") == frozenset()
    open_config = parse_config({})
    assert not open_config.http.auth.enabled
    assert PolicyEngine(open_config.http.access_control, False).actions(None, frozenset(), "r") == {
        "read", "create", "update", "delete"}


@pytest.mark.parametrize("http", [
    {"auth": {"apikey": "yes"}},
    {"auth": {"bearer": {"realm": "https://x/token"}}},   # no cert, no key
    {"auth": {"failDelay": "soon"}},
    {"accessControl": {"repositories": {"**": {"policies": [{"users": ["a"], "actions": ["fly"]}]}}}},
    {"ratelimit": {"rate": -1}},
])
def test_invalid_settings(http: dict) -> None:
    with pytest.raises(ConfigError):
        parse_config({"http": http})


def test_zot_only_options_are_reported() -> None:
    config = parse_config({"http": {"auth": {"ldap": {}, "htpasswd": {"path": "/x"}, "bogus": 1}}})
    assert any("ldap" in w for w in config.warnings) and any("bogus" in w for w in config.warnings)


def test_config_round_trip_keeps_auth() -> None:
    raw = {"http": {"auth": {"htpasswd": {"path": "/x"}, "apikey": True}, "accessControl": ACCESS_CONTROL,
                    "ratelimit": {"rate": 10}}}
    config = parse_config(raw)
    assert parse_config(config.to_json()).http == config.http


def test_buckets() -> None:
    b = Buckets(rate=0.001, capacity=2)
    assert b.take("a") and b.take("a") and not b.take("a") and b.take("b")
    assert not b.allowed("a")


def test_times_and_scopes() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None and parse_time("") is None
    assert parse_time("2023-08-28T17:09:59.2603515+03:00") == pytest.approx(1693231799.26035)
    with pytest.raises(ValueError):
        parse_time("2023-08-28 17:09")
    assert rfc3339(None) == "0001-01-01T00:00:00Z"
    assert rfc3339(parse_time("2030-01-02T03:04:05Z")) == "2030-01-02T03:04:05.000000Z"
    assert parse_scope("repository:team/app:pull,push") == ("repository", "team/app", ["pull", "push"])
    assert parse_scope("repository(plugin):a:pull") == ("repository", "a", ["pull"])
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", ["*"])
    assert parse_scope("nonsense") is None
