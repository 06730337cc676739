import pytest

from common.errors import ErrorCode, RegistryError
from common.grammar import digest_of, is_tag, parse_digest, parse_reference, validate_name


@pytest.mark.parametrize("name", ["a", "library/alpine", "a.b_c__d-e--f/g", "x" * 255, "0/1/2"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "x" * 256, "a/../b",
                                  "a b", "a\x00b"])
def test_invalid_names(name):
    with pytest.raises(RegistryError) as info:
        validate_name(name)
    assert info.value.code == ErrorCode.NAME_INVALID


def test_tags():
    assert is_tag("latest") and is_tag("_x") and is_tag("A" * 128) and is_tag("v1.2-rc_3")
    assert not is_tag("A" * 129) and not is_tag("-x") and not is_tag(".x") and not is_tag("a/b") and not is_tag("")


def test_digests():
    good = digest_of(b"abc")
    assert parse_digest(good) == good
    assert parse_digest(digest_of(b"abc", "sha512")).startswith("sha512:")
    for bad in ("sha256:" + "a" * 63, "sha256:" + "A" * 64, "sha512:" + "a" * 64, "md5:" + "a" * 32, "sha256",
                "", "sha256:" + "a" * 64 + "\n"):
        with pytest.raises(RegistryError) as info:
            parse_digest(bad)
        assert info.value.status == 400


def test_reference():
    assert parse_reference("v1") == ("v1", None)
    d = digest_of(b"x")
    assert parse_reference(d) == (None, d)
    with pytest.raises(RegistryError):
        parse_reference("bad tag")


def test_error_wire_roundtrip():
    exc = RegistryError(ErrorCode.RANGE_INVALID, "nope", {"a": 1}, headers={"Range": "0-1"})
    back = RegistryError.from_wire(exc.to_wire())
    assert (back.code, back.message, back.detail, back.status, back.headers) == (
        ErrorCode.RANGE_INVALID, "nope", {"a": 1}, 416, {"Range": "0-1"})
    assert back.body()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
