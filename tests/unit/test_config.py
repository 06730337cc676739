import json
from pathlib import Path

import pytest

from common.config import (
    ConfigError,
    ExtensionsConfig,
    SearchExtension,
    load_config,
    parse_config,
    parse_duration,
    with_overrides,
)


def test_defaults_are_the_embedded_cluster():
    c = parse_config({})
    assert (c.http.address, c.http.port, str(c.storage.root_directory)) == ("127.0.0.1", 8080, "data")
    assert (c.cluster.shards, c.cluster.gateway_workers, c.cluster.shared_storage) == (2, 2, True)
    assert c.shard_endpoint(1).startswith("ipc://") and c.shard_endpoint(1).endswith("/shard-1.sock")
    assert c.warnings == ()


def test_zot_config_is_accepted_with_warnings_for_what_is_ignored():
    zot = {"distSpecVersion": "1.1.1", "storage": {"rootDirectory": "/tmp/zot", "dedupe": True, "gc": True},
           "http": {"address": "0.0.0.0", "port": "5000", "compat": ["docker2s2"]},
           "log": {"level": "debug"}, "extensions": {"search": {"enable": True}}, "scheduler": {"numWorkers": 3}}
    c = parse_config(zot)
    assert c.http.port == 5000 and c.log.level == "debug" and c.extensions == ExtensionsConfig(search=SearchExtension(enable=True))
    assert set(c.warnings) == {"http.compat: zot option not supported by shardreg, ignored",
                               "scheduler: zot option not supported by shardreg, ignored"}


def test_kubernetes_cluster_section():
    c = parse_config({"cluster": {"endpoints": ["tcp://s-0.h:5555", "tcp://s-1.h:5555"],
                                  "bind": "tcp://0.0.0.0:{port}"}})
    assert c.cluster.shards == 2 and c.cluster.shared_storage is False
    assert c.shard_bind(1) == "tcp://0.0.0.0:5555"


@pytest.mark.parametrize("data", [{"http": {"port": "x"}}, {"http": {"port": True}}, {"storage": []},
                                  {"cluster": {"gatewayWorkers": 0}}, {"storage": {"rootDirectory": ""}},
                                  {"http": {"tls": {"cert": "a"}}}, {"storage": {"uploadExpiry": "-1s"}},
                                  {"cluster": {"endpoints": ["http://x"], "shards": 1}}])
def test_invalid_values(data):
    with pytest.raises(ConfigError):
        parse_config(data)


def test_durations():
    assert parse_duration("1h30m", "k") == 5400
    assert parse_duration("500ms", "k") == 0.5
    assert parse_duration(12, "k") == 12
    for bad in ("", "1x", "h", "1h 2m"):
        with pytest.raises(ConfigError):
            parse_duration(bad, "k")


def test_round_trip_and_overrides(tmp_path: Path):
    c = parse_config({"http": {"port": 9000, "auth": {"htpasswd": {"path": "/x"}}}, "extensions": {"a": 1}})
    c2 = with_overrides(c, port=9001, data=str(tmp_path), shards=3, workers=1)
    again = parse_config(json.loads(json.dumps(c2.to_json())))
    assert again.http.port == 9001 and again.cluster.shards == 3 and again.cluster.gateway_workers == 1
    assert again.http.auth == c.http.auth and again.http.auth.htpasswd == "/x" and again.extensions == c.extensions
    assert c.warnings == ("extensions.a: unknown option, ignored",)
    assert again.warnings == ()  # unknown keys are reported by the process that loaded the file, not written


def test_load_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ConfigError, match="object"):
        load_config(tmp_path / "bad.json")


def test_long_data_paths_never_use_abstract_sockets():
    """Sockets live in a private directory: <root>/run, or cluster.socketDirectory when that path is
    too long (the abstract namespace has no permissions: any local user could connect)."""
    short = parse_config({"storage": {"rootDirectory": "/tmp/d"}})
    assert short.shard_endpoint(0) == "ipc:///tmp/d/run/shard-0.sock"
    deep = parse_config({"storage": {"rootDirectory": "/tmp/" + "x" * 120}})
    with pytest.raises(ConfigError, match="too long for a Unix socket path"):
        deep.shard_endpoint(1)
    placed = parse_config({"storage": {"rootDirectory": "/tmp/" + "x" * 120},
                           "cluster": {"socketDirectory": "/run/user/1/shardreg-ab"}})
    assert placed.shard_endpoint(1) == "ipc:///run/user/1/shardreg-ab/shard-1.sock"
    assert parse_config(placed.to_json()).cluster.socket_directory == "/run/user/1/shardreg-ab"


def test_scrub_extension_config():
    on = parse_config({"extensions": {"scrub": {"enable": True, "interval": "6h"}}})
    assert on.extensions.scrub.enable and on.extensions.scrub.interval == 6 * 3600 and on.warnings == ()
    short = parse_config({"extensions": {"scrub": {"interval": "10m"}}})
    assert short.extensions.scrub.interval == 2 * 3600 and "raised to the minimum" in short.warnings[0]
    assert not parse_config({}).extensions.scrub.enable
    with pytest.raises(ConfigError):
        parse_config({"extensions": {"scrub": {"interval": "soon"}}})
