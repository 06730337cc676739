"""JSON the shards parse from others — signature payloads pushed by clients, an upstream registry's
answers — nested too deep or with strings that are not text: refused or ignored, never an exception
(a RecursionError) in the shard."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from common.imagetrust import cosign_payload_digest, verify_cosign, verify_notation
from shard.sync.auth import RegistryAuth
from shard.sync.mirror import _json as upstream_json

SUBJECT = "sha256:" + "ab" * 32
DEEP = b"[" * 5000 + b"]" * 5000


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_cosign_payload_too_deep_or_not_text_names_no_digest() -> None:
    for payload in (DEEP, b"[" * 5000, b'{"critical": {"image": {"docker-manifest-digest": "\\ud800"}}}'):
        assert cosign_payload_digest(payload) is None
        assert not verify_cosign(payload, "c2ln", SUBJECT, []).trusted


def test_notation_envelope_too_deep_anywhere_is_untrusted() -> None:
    deep = _b64url(DEEP)
    for envelope in (DEEP, b'{"protected": "%s", "payload": "e30", "signature": "", "header": {"x5c": []}}' % deep.encode(),
                     b'{"protected": "e30", "payload": "%s", "signature": "", "header": {"x5c": []}}' % deep.encode()):
        assert not verify_notation(envelope, SUBJECT, []).trusted


def test_an_upstream_answer_too_deep_or_not_text_is_no_document() -> None:
    assert upstream_json(DEEP) is None
    assert upstream_json(b'{"a": "\\udc00"}') is None
    assert upstream_json(b'{"tags": ["v1"]}') == {"tags": ["v1"]}


def test_a_token_answer_too_deep_gives_no_token() -> None:
    """An upstream's token service answering JSON nested 5,000 deep: no token, the request goes on
    unauthenticated (and fails at the upstream), not a RecursionError in the shard."""
    async def drive() -> RegistryAuth:
        auth = RegistryAuth(None)
        flow = auth.async_auth_flow(httpx.Request("GET", "http://upstream.test/v2/a/manifests/v1"))
        request = await flow.__anext__()
        challenge = httpx.Response(401, request=request, headers={
            "WWW-Authenticate": 'Bearer realm="http://upstream.test/token",service="upstream"'})
        token_request = await flow.asend(challenge)
        with pytest.raises(StopAsyncIteration):
            await flow.asend(httpx.Response(200, request=token_request, content=DEEP))
        return auth

    auth = asyncio.run(drive())
    assert auth.token_requests == 1 and auth.tokens == {}
