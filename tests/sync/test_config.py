"""``extensions.sync`` in zot's format: parsed unchanged, warnings for what shardreg ignores, clear errors;
the content rules (glob, destination, stripPrefix, tag filters) as zot applies them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.cli import main
from common.config import ConfigError, parse_config
from common.config.sync import DEFAULT_TAG_RECHECK, SyncContent, TagFilter
from common.syncrules import destination, filter_tags, glob_match, is_semver, on_demand, remote_of, source

#: zot's documented sync example, key for key (our own values).
ZOT_STYLE = {"extensions": {"sync": {
    "enable": True, "credentialsFile": "/etc/zot/sync-auth.json", "downloadDir": "/tmp/sync",
    "registries": [
        {"urls": ["https://registry1:5000"], "onDemand": False, "pollInterval": "6h", "tlsVerify": True,
         "certDir": "/home/user/certs", "maxRetries": 3, "retryDelay": "5m", "onlySigned": True,
         "content": [{"prefix": "/repo1/repo", "tags": {"regex": "4.*", "semver": True}},
                     {"prefix": "/repo2/repo", "destination": "/repo", "stripPrefix": True},
                     {"prefix": "/repo3/**"},
                     {"prefix": "/repo4/**", "tags": {"excludeRegex": ".*-(amd64|arm64)$"}}]},
        {"urls": ["https://registry2:5000", "https://registry3:5000"], "pollInterval": "12h", "tlsVerify": False,
         "onDemand": False, "content": [{"prefix": "**", "tags": {"semver": True}}]},
        {"urls": ["https://index.docker.io"], "onDemand": True, "tlsVerify": True, "maxRetries": 5,
         "retryDelay": "1s", "maxRetryDelay": "30s", "syncTimeout": "10m", "reqConcurrent": 30, "reqPerSec": 100,
         "disableHTTP2": True, "maxIdleConnsPerHost": 30},
        {"urls": ["https://demo.goharbor.io"], "pollInterval": "12h", "content": [{"prefix": "zot/**"}],
         "onDemand": True, "tlsVerify": True, "maxRetries": 5, "retryDelay": "1m", "credentialHelper": "ecr"},
    ]}}}


def test_zot_style_config_is_accepted_unchanged() -> None:
    config = parse_config(ZOT_STYLE)
    sync = config.extensions.sync
    assert sync.active and sync.credentials_file == "/etc/zot/sync-auth.json"
    first, second, hub, harbor = sync.registries
    assert first.poll_interval == 6 * 3600 and first.only_signed and first.max_retries == 3 and first.retry_delay == 300
    assert first.content[0] == SyncContent("/repo1/repo", tags=TagFilter(regex="4.*", semver=True))
    assert first.content[1] == SyncContent("/repo2/repo", destination="/repo", strip_prefix=True)
    assert second.urls == ("https://registry2:5000", "https://registry3:5000") and not second.tls_verify
    assert hub.on_demand and hub.req_concurrent == 30 and hub.req_per_sec == 100 and hub.sync_timeout == 600
    assert hub.tag_recheck == DEFAULT_TAG_RECHECK and harbor.tag_recheck == 12 * 3600
    assert first.periodic and not hub.periodic
    warnings = set(config.warnings)
    assert "extensions.sync.downloadDir: not needed: shards download into their own directory; ignored" in warnings
    for key in ("maxRetryDelay", "disableHTTP2", "maxIdleConnsPerHost"):
        assert f"extensions.sync.registries[2].{key}: zot option not supported by shardreg, ignored" in warnings
    assert "extensions.sync.registries[3].credentialHelper: zot option not supported by shardreg, ignored" in warnings
    again = parse_config(json.loads(json.dumps(config.to_json())))
    assert again.extensions.sync == sync


def test_unknown_keys_are_named() -> None:
    config = parse_config({"extensions": {"sync": {"registries": [
        {"urls": ["http://a:5000"], "bogus": 1, "content": [{"prefix": "x/**", "oops": True}]}], "extra": 2}}})
    assert {"extensions.sync.registries[0].bogus: unknown option, ignored",
            "extensions.sync.registries[0].content[0].oops: unknown option, ignored",
            "extensions.sync.extra: unknown option, ignored"} <= set(config.warnings)
    assert config.extensions.sync.enable  # a sync section without enable is on, as in zot
    assert not parse_config({"extensions": {"sync": {"enable": False, "registries": []}}}).extensions.sync.active


@pytest.mark.parametrize(("sync", "message"), [
    ({"registries": [{"urls": []}]}, "extensions.sync.registries[0].urls: a sync registry needs at least one URL"),
    ({"registries": [{"urls": ["ftp://x"]}]}, "extensions.sync.registries[0].urls[0]: expected an http:// or https://"),
    ({"registries": [{"urls": ["http://x"], "content": [{"destination": "/d"}]}]},
     "extensions.sync.registries[0].content[0].prefix: a content rule needs a prefix"),
    ({"registries": [{"urls": ["http://x"], "content": [{"prefix": "a", "tags": {"regex": "("}}]}]},
     "extensions.sync.registries[0].content[0].tags.regex: invalid regular expression"),
    ({"registries": [{"urls": ["http://x"], "reqConcurrent": 0}]}, "extensions.sync.registries[0].reqConcurrent: "),
    ({"registries": [{"urls": ["http://x"], "pollInterval": "often"}]}, "extensions.sync.registries[0].pollInterval"),
    ({"registries": [{"urls": ["http://x"], "onDemand": "yes"}]}, "extensions.sync.registries[0].onDemand: expected"),
])
def test_bad_values_name_their_key(sync: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"extensions": {"sync": sync}})
    assert str(exc.value).startswith(message), str(exc.value)


def test_an_unreadable_credentials_file_stops_start_up(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"extensions": {"sync": {"credentialsFile": str(tmp_path / "missing.json"),
                                                        "registries": [{"urls": ["http://x"], "onDemand": True}]}}}))
    assert main(["serve", "--config", str(path), "--data", str(tmp_path / "data"), "--port", "0"]) == 2
    assert "extensions.sync.credentialsFile: cannot read" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_glob() -> None:
    assert glob_match("**", "a/b/c") and glob_match("repo3/**", "repo3/a/b") and not glob_match("repo3/**", "repo4/a")
    assert glob_match("a/*", "a/b") and not glob_match("a/*", "a/b/c")
    assert glob_match("**/x", "x") and glob_match("**/x", "a/b/x") and glob_match("a/?", "a/b")
    assert glob_match("{a,b}/c", "b/c") and glob_match("a/[xy]", "a/y") and not glob_match("a/[!xy]", "a/y")
    assert not glob_match("a.b", "aXb")  # a dot is literal


def test_destination_and_its_inverse() -> None:
    strip = SyncContent("/repo2/repo", destination="/repo", strip_prefix=True)
    assert destination(strip, "repo2/repo") == "repo"
    under = SyncContent("/library/**", destination="/hub", strip_prefix=True)
    assert destination(under, "library/alpine") == "hub/alpine" and source(under, "hub/alpine") == "library/alpine"
    keep = SyncContent("/library/**", destination="/hub")
    assert destination(keep, "library/alpine") == "hub/library/alpine"
    assert source(keep, "hub/library/alpine") == "library/alpine" and source(keep, "other/x") == ""
    plain = SyncContent("/repo3/**")
    assert destination(plain, "repo3/a") == "repo3/a" and source(plain, "repo3/a") == "repo3/a"


def test_on_demand_routing() -> None:
    sync = parse_config({"extensions": {"sync": {"registries": [
        {"urls": ["http://periodic"], "pollInterval": "1h", "content": [{"prefix": "**"}]},
        {"urls": ["http://quay"], "onDemand": True, "content": [{"prefix": "quay/**", "destination": "/q",
                                                                  "stripPrefix": True}]},
        {"urls": ["http://hub"], "onDemand": True}]}}}).extensions.sync
    assert on_demand(sync, "q/app") == (1, "quay/app")  # the first onDemand registry whose rules map the name
    assert on_demand(sync, "library/alpine") == (2, "library/alpine")  # no content rules: every repository
    assert remote_of(sync.registries[1], "library/alpine") is None
    assert on_demand(parse_config({}).extensions.sync, "x") is None


def test_tag_filters() -> None:
    tags = ["v1.0.0", "1.2", "4.0-amd64", "4.0", "latest", "v2.0.0-rc.1", "v-nightly"]
    assert filter_tags(tags, None) == tags
    assert filter_tags(tags, TagFilter(regex="4.*")) == ["4.0-amd64", "4.0"]  # a search, as Go's MatchString
    assert filter_tags(tags, TagFilter(exclude_regex=".*-(amd64|arm64)$")) == [t for t in tags if t != "4.0-amd64"]
    assert filter_tags(tags, TagFilter(regex="^v", exclude_regex="-rc", semver=True)) == ["v1.0.0"]
    assert filter_tags(tags, TagFilter(semver=True)) == ["v1.0.0", "1.2", "4.0-amd64", "4.0", "v2.0.0-rc.1"]
    assert is_semver("1") and is_semver("v1.2.3+build.5") and not is_semver("1.2.3.4")
