import pytest

from common.errors import RegistryError
from gateway.http import parse_content_range, parse_range, upload_range


def test_ranges():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 5)
    assert parse_range("bytes=2-", 10) == (2, 10)
    assert parse_range("bytes=-3", 10) == (7, 10)
    assert parse_range("bytes=-30", 10) == (0, 10)
    assert parse_range("bytes=5-100", 10) == (5, 10)
    assert parse_range("bytes=0-1,4-5", 10) is None
    for bad in ("bytes=5-2", "bytes=10-", "bytes=-0", "bytes=11-20"):
        with pytest.raises(RegistryError) as info:
            parse_range(bad, 10)
        assert info.value.status == 416 and info.value.headers["Content-Range"] == "bytes */10"


def test_content_range():
    assert parse_content_range(None) is None
    assert parse_content_range("0-21") == (0, 21)
    assert parse_content_range("bytes 5-9/10") == (5, 9)
    for bad in ("9-5", "a-b", "-1", "1-"):
        with pytest.raises(RegistryError):
            parse_content_range(bad)
    assert upload_range(0) == "0-0" and upload_range(22) == "0-21"
