"""Signature payloads are client data: nesting too deep or strings that are not text make a
signature untrusted, never an exception in the shard that verifies it."""

from __future__ import annotations

import base64

from common.imagetrust import cosign_payload_digest, verify_cosign, verify_notation

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
