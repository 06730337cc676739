"""The wire ops: every op has exactly one typed request/reply pair, and requests are checked."""

from __future__ import annotations

import typing

from common import messages
from common.protocol import Op, Request, Wire


def test_every_op_has_exactly_one_wire() -> None:
    wires = [v for v in vars(messages).values() if isinstance(v, Wire)]
    ops = [w.op for w in wires]
    assert sorted(ops) == sorted(Op), "each Op needs exactly one Wire constant in common.messages"
    assert set(messages.ALL) == set(Op)
    assert all(messages.ALL[w.op] is w for w in wires)


def test_request_and_reply_types_are_typeddicts() -> None:
    for wire in messages.ALL.values():
        for cls in (wire.request, wire.reply):
            assert typing.is_typeddict(cls), f"{wire.op}: {cls} is not a TypedDict"


def test_routed_requests_carry_the_repository() -> None:
    """Ops the gateway routes by repository name have ``repo`` as a required key."""
    routed = {Op.TAGS_LIST, Op.MANIFEST_GET, Op.MANIFEST_PUT, Op.MANIFEST_DELETE, Op.REFERRERS, Op.BLOB_STAT,
              Op.BLOB_DELETE, Op.BLOB_LINK, Op.UPLOAD_START, Op.UPLOAD_STATUS, Op.UPLOAD_BEGIN, Op.UPLOAD_WRITE,
              Op.UPLOAD_END, Op.UPLOAD_ABORT, Op.UPLOAD_COMMIT, Op.UPLOAD_CANCEL, Op.SEARCH_EXPAND,
              Op.USERPREFS_TOGGLE}
    for op in routed:
        assert "repo" in messages.ALL[op].required, op


def test_missing_keys_are_reported() -> None:
    assert set(messages.TAGS_LIST.missing({"repo": "a"})) == {"n", "last"}
    assert set(messages.TAGS_LIST.missing({})) == {"repo", "n", "last"}
    assert messages.SEARCH_IMAGES.missing({"user": None}) == []  # digest and repos are optional


def test_calling_a_wire_builds_a_request() -> None:
    request = messages.MANIFEST_GET({"repo": "a/b", "reference": "v1", "head": True})
    assert isinstance(request, Request)
    assert request.wire is messages.MANIFEST_GET
    assert request.args == {"repo": "a/b", "reference": "v1", "head": True}
