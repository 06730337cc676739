import pytest

from common.errors import RegistryError
from gateway.httputil import parse_content_range, parse_ranges, upload_range


def test_ranges():
    assert parse_ranges(None, 10) is None
    assert parse_ranges("bytes=2-4", 10) == [(2, 5)]
    assert parse_ranges("bytes=2-", 10) == [(2, 10)]
    assert parse_ranges("bytes=-3", 10) == [(7, 10)]
    assert parse_ranges("bytes=-30", 10) == [(0, 10)]
    assert parse_ranges("bytes=5-100", 10) == [(5, 10)]
    assert parse_ranges("bytes=0-1, 4-5", 10) == [(0, 2), (4, 6)]
    assert parse_ranges("bytes=0-1,20-30", 10) == [(0, 2)]  # the unsatisfiable part is dropped
    assert parse_ranges("bytes=0-1,5-2", 10) is None  # an invalid part: ignore the header
    assert parse_ranges("items=0-1", 10) is None
    assert parse_ranges("bytes=" + ",".join(["0-1"] * 65), 10) is None
    for bad in ("bytes=5-2", "bytes=10-", "bytes=-0", "bytes=11-20", "bytes=11-20,30-"):
        with pytest.raises(RegistryError) as info:
            parse_ranges(bad, 10)
        assert info.value.status == 416 and info.value.headers["Content-Range"] == "bytes */10"


def test_content_range():
    assert parse_content_range(None) is None
    assert parse_content_range("0-21") == (0, 21)
    assert parse_content_range("bytes 5-9/10") == (5, 9)
    for bad in ("9-5", "a-b", "-1", "1-"):
        with pytest.raises(RegistryError):
            parse_content_range(bad)
    assert upload_range(0) == "0-0" and upload_range(22) == "0-21"
