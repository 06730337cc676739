"""notation signatures are only trusted inside their certificates' validity and before their expiry."""

from __future__ import annotations

import datetime

from common.imagetrust import verify_notation
from tests.extensions.signing import notation_ca, notation_envelope

SUBJECT = "sha256:" + "ab" * 32
TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": SUBJECT, "size": 123}
NOW = datetime.datetime.now(datetime.UTC)


def verdict(**kwargs: object) -> bool:
    _, ca, leaf_key, leaf = notation_ca()
    envelope = notation_envelope(leaf_key, [leaf, ca], TARGET, **kwargs)  # type: ignore[arg-type]
    return verify_notation(envelope, SUBJECT, [ca]).trusted


def test_signed_now_is_trusted():
    assert verdict()
    assert verdict(expiry=NOW + datetime.timedelta(days=1))


def test_expired_signature_is_not_trusted():
    assert not verdict(expiry=NOW - datetime.timedelta(hours=1))


def test_signed_outside_the_certificates_validity_is_not_trusted():
    # the test chain is valid from yesterday for 30 days
    assert not verdict(signed_at=NOW - datetime.timedelta(days=10))
    assert not verdict(signed_at=NOW + datetime.timedelta(days=3))  # also "in the future"
