"""CURVE key files, the keys each role picks from the config, private directories, hashed session ids."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from pathlib import Path

import pytest
import zmq

from common import curvekeys
from common.cli import main as cli_main
from common.config import ConfigError, parse_config, redact
from common.privatefs import private_dir
from shard.service import ShardService
from shard.userdata import UserData


def test_keys_generate_writes_usable_owner_only_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    assert cli_main(["keys", "generate", "--dir", str(keys), "--shards", "2"]) == 0
    assert "shardKey" in capsys.readouterr().out
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    names = {p.name for p in keys.iterdir()}
    assert names == {f"{n}.{ext}" for n in ("shard-0", "shard-1", "gateway") for ext in ("key", "key_secret")}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())
    for name in ("shard-0", "shard-1", "gateway"):
        pair, public = curvekeys.load(keys / f"{name}.key_secret"), curvekeys.load(keys / f"{name}.key")
        assert pair.secret is not None and public.secret is None and pair.public == public.public
        assert "secret-key" not in (keys / f"{name}.key").read_text()
    # what a gateway and a shard configured with them use
    config = parse_config({"cluster": {"shards": 2, "endpoints": ["tcp://a:1", "tcp://b:1"],
                                       "shardKey": str(keys / "shard-{index}.key"),
                                       "gatewayKey": str(keys / "gateway.key_secret")}})
    client = curvekeys.client_keys(config)
    assert client is not None and client.servers[1] == curvekeys.load(keys / "shard-1.key").public
    with pytest.raises(ConfigError, match="needs the secret key"):
        curvekeys.server_keys(config, 0)  # a shard given only its public key
    # a second run does not overwrite keys in use
    assert cli_main(["keys", "generate", "--dir", str(keys)]) == 1


def test_key_file_layouts(tmp_path: Path) -> None:
    public, secret = zmq.curve_keypair()
    raw = zmq.utils.z85.decode(secret)
    for name, content in (("raw", raw), ("z85", secret + b"\n"), ("b64", base64.b64encode(raw))):
        (tmp_path / name).write_bytes(content)
        assert curvekeys.load(tmp_path / name) == curvekeys.KeyPair(public, secret), name
    other_public, _ = zmq.curve_keypair()
    (tmp_path / "mismatch").write_text(f'public-key = "{other_public.decode()}"\nsecret-key = "{secret.decode()}"\n')
    with pytest.raises(ConfigError, match="does not belong"):
        curvekeys.load(tmp_path / "mismatch")
    (tmp_path / "junk").write_text("hello")
    with pytest.raises(ConfigError, match="not a CURVE key file"):
        curvekeys.load(tmp_path / "junk")
    with pytest.raises(ConfigError, match="cannot read"):
        curvekeys.load(tmp_path / "missing")


def test_tcp_needs_keys_or_insecure() -> None:
    tcp = {"cluster": {"shards": 1, "endpoints": ["tcp://127.0.0.1:1"]}}
    with pytest.raises(ConfigError, match="without CURVE keys"):
        curvekeys.server_keys(parse_config(tcp), 0)
    with pytest.raises(ConfigError, match="without CURVE keys"):
        curvekeys.client_keys(parse_config(tcp))
    insecure = parse_config({"cluster": {**tcp["cluster"], "insecure": True}})
    assert curvekeys.server_keys(insecure, 0) is None and curvekeys.client_keys(insecure) is None
    assert curvekeys.server_keys(parse_config({}), 0) is None  # ipc in a private directory
    with pytest.raises(ConfigError, match="set together"):
        curvekeys.client_keys(parse_config({"cluster": {**tcp["cluster"], "shardKey": "/k"}}))


def test_private_dir_tightens_ours_and_refuses_someone_elses(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    private_dir(mine)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    squatted = tmp_path / "squatted"
    squatted.mkdir()
    os.chown(squatted, 65534, 65534)  # another user made it first (e.g. in /tmp)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        private_dir(squatted)


def test_redact_hides_every_secret() -> None:
    doc = {"http": {"auth": {"sessionSecret": "s3cret-s3cret-s3cret", "htpasswd": {"path": "/x"}}},
           "ldap": [{"bindPassword": "pw"}], "empty": {"sessionSecret": ""}}
    assert redact(doc) == {"http": {"auth": {"sessionSecret": "***", "htpasswd": {"path": "/x"}}},
                           "ldap": [{"bindPassword": "***"}], "empty": {"sessionSecret": ""}}


def test_redact_hides_every_header_of_a_sink() -> None:
    """Custom headers of event sinks and notification endpoints (X-Api-Key, a Bearer token) are secrets."""
    doc = {"extensions": {"events": {"sinks": [{"type": "http", "address": "http://h",
                                                "headers": {"X-Api-Key": "k-123", "Empty": ""}}]}},
           "notifications": {"endpoints": [{"url": "http://n", "headers": {"Authorization": ["Bearer t-9"]}}]}}
    out = redact(doc)
    assert out["extensions"]["events"]["sinks"][0] == {"type": "http", "address": "http://h",
                                                        "headers": {"X-Api-Key": "***", "Empty": ""}}
    assert out["notifications"]["endpoints"][0]["headers"] == {"Authorization": "***"}
    assert "k-123" not in json.dumps(out) and "t-9" not in json.dumps(out)


def test_session_ids_are_stored_hashed(tmp_path: Path) -> None:
    """A copy of data.mdb must not hold a session id that logs someone in (like API keys)."""
    sid = "S" * 20 + os.urandom(16).hex()

    async def run() -> None:
        service = ShardService(tmp_path, 0, 1)
        users = UserData(service.meta)
        try:
            await users.op_session_create({"user": "alice", "sid": sid, "expires": 0}, [])
            got, _ = await users.op_session_get({"sid": sid}, [])
            assert got["session"] is not None and got["session"]["user"] == "alice"
            other, _ = await users.op_session_get({"sid": sid[:-1] + "x"}, [])
            assert other["session"] is None
        finally:
            service.close()

    asyncio.run(run())
    stored = (tmp_path / "meta" / "data.mdb").read_bytes()
    assert b"alice" in stored and sid.encode() not in stored
