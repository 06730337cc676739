"""Every wire op has exactly one shard handler, registered with ``@handles``."""

from __future__ import annotations

from typing import Any

import pytest

from common import messages
from common.config import Config, StorageConfig
from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from shard.ops.registry import HandlerConflict, handles, registered
from shard.server import ShardServer, _check_request  # imports every module that registers handlers


def test_every_op_has_exactly_one_handler():
    assert set(registered()) == set(Op)


def test_a_second_handler_for_an_op_is_refused():
    before = registered()
    with pytest.raises(HandlerConflict):
        @handles(messages.PING)
        async def another_ping(self: Any, args: messages.Empty, frames: Any) -> Any:
            return {}, []
    assert registered() == before


def test_the_server_binds_every_op(tmp_path):
    server = ShardServer(Config(storage=StorageConfig(root_directory=tmp_path, commit=False)), 0)
    try:
        assert set(server.handlers) | set(server.ordered) == set(Op)
        assert set(server.handlers).isdisjoint(server.ordered)
        assert set(server.ordered) == {Op.UPLOAD_WRITE}
    finally:
        server.close()


def test_requests_lacking_required_keys_are_refused():
    _check_request(Op.TAGS_LIST, {"repo": "a", "n": None, "last": None})
    for args in ({"repo": "a"}, ["repo"]):
        with pytest.raises(RegistryError) as info:
            _check_request(Op.TAGS_LIST, args)
        assert info.value.code == ErrorCode.BAD_REQUEST
