"""Small helpers for the legacy suite modules (the Go suite's reggie client conventions)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.conformance.ociapi import ERROR_CODES, MT_OCTET, describe, with_query


def relative_location(r: httpx.Response) -> str:
    """reggie's GetRelativeLocation: the Location's path and query, whatever its host."""
    loc = r.headers.get("Location", "")
    parts = urlsplit(loc)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def ok2xx(r: httpx.Response) -> None:
    assert 200 <= r.status_code < 300, describe(r)


def status_in(r: httpx.Response, *codes: int, any2xx: bool = False) -> None:
    assert r.status_code in codes or (any2xx and 200 <= r.status_code < 300), describe(r)


def push_blob(http: httpx.Client, name: str, content: bytes, dig: str) -> httpx.Response:
    """POST for a session, then PUT the whole blob with ?digest= (the suites' setup steps)."""
    r = http.post(f"/v2/{name}/blobs/uploads/")
    return http.put(with_query(relative_location(r), digest=dig), content=content,
                    headers={"Content-Type": MT_OCTET, "Content-Length": str(len(content))})


def first_error_code(r: httpx.Response) -> str:
    errors = r.json().get("errors")
    assert errors, f"no errors in body: {describe(r)}"
    return errors[0]["code"]


def assert_error_body(r: httpx.Response) -> None:
    assert first_error_code(r) in ERROR_CODES, describe(r)
