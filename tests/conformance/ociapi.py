"""HTTP helpers that perform the request sequences of the OCI distribution-spec conformance suites.

Every helper records what went wrong in a ``Checks`` object instead of stopping at the first
problem, so one test reports every deviation of one sequence (request, expected, got).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

MT_OCTET = "application/octet-stream"
MT_IMAGE = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
CHUNK_MIN = 1024  # the suite never uses chunks below 1 KiB

ERROR_CODES = {"BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
               "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
               "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED",
               "UNSUPPORTED"}


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def algorithm_of(dig: str) -> str:
    return dig.split(":", 1)[0]


def with_query(url: str, **params: str) -> str:
    """Add (replace) query parameters on a possibly relative URL, keeping the ones it has."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query += list(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def streamed(data: bytes) -> Iterator[bytes]:
    """A body without Content-Length (sent with chunked transfer encoding), as Go sends a body it cannot size."""
    if data:
        yield data


def describe(r: httpx.Response) -> str:
    body = r.content[:300] if r.request.method != "HEAD" else b""
    interesting = {k: v for k, v in r.headers.items()
                   if k.lower() in ("location", "range", "content-range", "content-type", "content-length",
                                    "docker-content-digest", "oci-subject", "oci-tag", "oci-filters-applied",
                                    "oci-chunk-min-length")}
    return f"{r.request.method} {r.request.url} -> {r.status_code} {interesting} {body!r}"


class Checks:
    """Soft assertions: collect every failure of a sequence, fail once at the end with all of them."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, message: str) -> None:
        self.failures.append(message)

    def check(self, ok: bool, message: str) -> bool:
        if not ok:
            self.fail(message)
        return ok

    def status(self, r: httpx.Response, *expected: int, what: str = "") -> bool:
        return self.check(r.status_code in expected,
                          f"{what}: expected status {list(expected)}, got {describe(r)}")

    def header(self, r: httpx.Response, name: str, value: str | None = None, what: str = "") -> bool:
        values = r.headers.get_list(name)
        if value is None:
            return self.check(bool(values) and any(v for v in values), f"{what}: missing header {name}: {describe(r)}")
        return self.check(value in values, f"{what}: header {name} expected {value!r}, got {values!r}: {describe(r)}")

    def body(self, r: httpx.Response, expected: bytes, what: str = "") -> bool:
        return self.check(r.content == expected,
                          f"{what}: body mismatch (expected {len(expected)} bytes, got {len(r.content)}): {describe(r)}")

    def done(self) -> None:
        assert not self.failures, "\n".join(f"- {f}" for f in self.failures)


class Api:
    """One registry endpoint plus the request sequences the suites use (mirrors the suite's api.go)."""

    def __init__(self, client: httpx.Client, checks: Checks, *, require_digest_header: bool = True) -> None:
        self.c = client
        self.k = checks
        self.require_digest_header = require_digest_header

    # ---------------------------------------------------------------- helpers
    def url(self, location: str, base: str) -> str:
        return urljoin(base, location)

    def verify_digest(self, r: httpx.Response, dig: str, what: str) -> None:
        header = r.headers.get("Docker-Content-Digest", "")
        if not header:
            if self.require_digest_header:
                self.k.fail(f"{what}: Docker-Content-Digest missing (spec: MUST): {describe(r)}")
            return
        self.k.check(header == dig, f"{what}: Docker-Content-Digest expected {dig}, got {header}")

    def verify_location(self, base: str, loc: str, body: bytes, what: str) -> None:
        if not self.k.check(bool(loc), f"{what}: Location header missing"):
            return
        r = self.c.get(self.url(loc, base))
        if self.k.status(r, 200, what=f"{what}: GET returned Location"):
            self.k.body(r, body, what=f"{what}: GET returned Location")

    # ---------------------------------------------------------------- blobs
    def blob_post_only(self, repo: str, dig: str, data: bytes, *, bad: bool = False) -> bool:
        what = f"blob POST-only {dig[:19]}"
        base = f"/v2/{repo}/blobs/uploads/"
        r = self.c.post(base, params={"digest": dig}, content=data,
                        headers={"Content-Type": MT_OCTET, "Content-Length": str(len(data))})
        if bad:
            if not self.k.status(r, 400, 202, what=what + " (bad digest)"):
                return False
            if r.status_code == 202:
                self.k.fail(f"{what} (bad digest): registry answered 202, single POST unsupported: {describe(r)}")
                r = self.c.put(with_query(self.url(r.headers.get("Location", ""), base), digest=dig), content=data,
                               headers={"Content-Type": MT_OCTET, "Content-Length": str(len(data))})
                self.k.status(r, 400, what=what + " (bad digest) fallback PUT")
            return True
        if not self.k.status(r, 201, 202, what=what):
            return False
        loc = r.headers.get("Location", "")
        self.k.check(bool(loc), f"{what}: Location missing: {describe(r)}")
        if r.status_code == 202:
            # the suite falls back to PUT but marks single-POST as unsupported
            self.k.fail(f"{what}: 202 instead of 201, monolithic single POST unsupported: {describe(r)}")
            r = self.c.put(with_query(self.url(loc, base), digest=dig), content=data,
                           headers={"Content-Type": MT_OCTET, "Content-Length": str(len(data))})
            if not self.k.status(r, 201, what=what + " fallback PUT"):
                return False
            loc = r.headers.get("Location", "")
        self.verify_digest(r, dig, what)
        self.verify_location(base, loc, data, what)
        return True

    def blob_post_put(self, repo: str, dig: str, data: bytes, *, bad: bool = False) -> bool:
        what = f"blob POST+PUT {dig[:19]}"
        base = f"/v2/{repo}/blobs/uploads/"
        r = self.c.post(base)
        if not self.k.status(r, 202, what=what + " POST"):
            return False
        loc = r.headers.get("Location", "")
        if not self.k.check(bool(loc), f"{what}: POST Location missing: {describe(r)}"):
            return False
        put_url = with_query(self.url(loc, base), digest=dig)
        r = self.c.put(put_url, content=data, headers={"Content-Type": MT_OCTET, "Content-Length": str(len(data))})
        if bad:
            return self.k.status(r, 400, what=what + " PUT (bad digest)")
        if not self.k.status(r, 201, what=what + " PUT"):
            return False
        self.verify_digest(r, dig, what)
        self.verify_location(put_url, r.headers.get("Location", ""), data, what)
        return True

    def blob_patch_stream(self, repo: str, dig: str, data: bytes, *, bad: bool = False) -> bool:
        what = f"blob streamed PATCH {dig[:19]}"
        base = f"/v2/{repo}/blobs/uploads/"
        r = self.c.post(base, headers={"Content-Length": "0"})
        if not self.k.status(r, 202, what=what + " POST"):
            return False
        loc = r.headers.get("Location", "")
        if not self.k.check(bool(loc), f"{what}: POST Location missing: {describe(r)}"):
            return False
        url = self.url(loc, base)
        r = self.c.patch(url, content=streamed(data), headers={"Content-Type": MT_OCTET})
        if not self.k.status(r, 202, what=what + " PATCH"):
            return False
        loc = r.headers.get("Location", "")
        if not self.k.check(bool(loc), f"{what}: PATCH Location missing: {describe(r)}"):
            return False
        if data:  # spec: PATCH 202 MUST carry Range: 0-<end>
            self.k.header(r, "Range", f"0-{len(data) - 1}", what=what + " PATCH")
        url = with_query(self.url(loc, url), digest=dig)
        r = self.c.put(url, headers={"Content-Length": "0", "Content-Type": MT_OCTET})
        if bad:
            return self.k.status(r, 400, what=what + " PUT (bad digest)")
        if not self.k.status(r, 201, what=what + " PUT"):
            return False
        self.k.header(r, "Location", what=what + " PUT")
        self.verify_digest(r, dig, what)
        self.verify_location(url, r.headers.get("Location", ""), data, what)
        return True

    def blob_patch_chunked(self, repo: str, dig: str, data: bytes, *, put_last: bool = False,
                           out_of_order: bool = False, bad: bool = False,
                           post_params: dict[str, str] | None = None) -> str | None:
        """Chunked upload with ~len/3 chunks (at least max(1024, OCI-Chunk-Min-Length)).

        Returns the OCI-Chunk-Min-Length the POST advertised ("" if none), None on failure.
        """
        what = f"blob chunked{' put-last' if put_last else ''}{' out-of-order' if out_of_order else ''} {dig[:19]}"
        base = f"/v2/{repo}/blobs/uploads/"
        r = self.c.post(base, params=post_params or {}, headers={"Content-Length": "0"})
        if not self.k.status(r, 202, what=what + " POST"):
            return None
        min_str = r.headers.get("OCI-Chunk-Min-Length", "")
        loc = r.headers.get("Location", "")
        chunk = len(data) // 3 + 1
        if min_str:
            if not self.k.check(min_str.isdigit(), f"{what}: OCI-Chunk-Min-Length not an integer: {min_str!r}"):
                return None
            chunk = max(chunk, int(min_str))
        chunk = min(max(chunk, CHUNK_MIN), len(data))
        url = base
        last = -1
        final: httpx.Response | None = None
        while last < len(data) - 1:
            if out_of_order:
                if not self.k.check(bool(loc), f"{what}: no Location to continue with"):
                    return None
                url = self.url(loc, url)
                bad_start = last + 1 + chunk
                if bad_start >= len(data):
                    bad_start = 0
                bad_last = min(bad_start + chunk - 1, len(data) - 1)
                headers = {"Content-Type": MT_OCTET, "Content-Length": str(bad_last - bad_start + 1),
                           "Content-Range": f"{bad_start}-{bad_last}"}
                piece = data[bad_start:bad_last + 1]
                if put_last and bad_last == len(data) - 1:
                    url = with_query(url, digest=dig)
                    r = self.c.put(url, content=piece, headers=headers)
                else:
                    r = self.c.patch(url, content=piece, headers=headers)
                if not self.k.status(r, 416, what=f"{what}: out-of-order chunk {bad_start}-{bad_last} after 0-{last}"):
                    return None
                loc = r.headers.get("Location", "") or loc
                r = self.c.get(url)
                if not self.k.status(r, 204, what=f"{what}: GET upload status after 416"):
                    return None
                loc = r.headers.get("Location", "") or loc
                rng = r.headers.get("Range", "")
                if not self.k.check(rng.startswith("0-"), f"{what}: upload status Range lacks 0- prefix: {describe(r)}"):
                    return None
                try:
                    end = int(rng[2:])
                except ValueError:
                    self.k.fail(f"{what}: upload status Range unparsable: {describe(r)}")
                    return None
                if last >= 0 and not self.k.check(end == last, f"{what}: upload status Range expected 0-{last}: "
                                                                f"{describe(r)}"):
                    return None
            if not self.k.check(bool(loc), f"{what}: no Location to continue with"):
                return None
            url = self.url(loc, url)
            start = last + 1
            last = min(start + chunk - 1, len(data) - 1)
            headers = {"Content-Type": MT_OCTET, "Content-Length": str(last - start + 1),
                       "Content-Range": f"{start}-{last}"}
            piece = data[start:last + 1]
            if put_last and last == len(data) - 1:
                url = with_query(url, digest=dig)
                r = self.c.put(url, content=piece, headers=headers)
                if bad:
                    return min_str if self.k.status(r, 400, what=f"{what}: final PUT chunk (bad digest)") else None
                if not self.k.status(r, 201, what=f"{what}: final PUT chunk {start}-{last}"):
                    return None
                final = r
                loc = r.headers.get("Location", "")
            else:
                r = self.c.patch(url, content=piece, headers=headers)
                if not self.k.status(r, 202, what=f"{what}: PATCH {start}-{last}"):
                    return None
                self.k.header(r, "Range", f"0-{last}", what=f"{what}: PATCH {start}-{last}")
                loc = r.headers.get("Location", "") or loc
        if not put_last:
            if not self.k.check(bool(loc), f"{what}: PATCH returned no Location"):
                return None
            url = with_query(self.url(loc, url), digest=dig)
            r = self.c.put(url, headers={"Content-Length": "0", "Content-Type": MT_OCTET})
            if bad:
                return min_str if self.k.status(r, 400, what=f"{what}: closing PUT (bad digest)") else None
            if not self.k.status(r, 201, what=f"{what}: closing PUT"):
                return None
            final = r
            loc = r.headers.get("Location", "")
        assert final is not None
        self.verify_digest(final, dig, what)
        self.verify_location(url, loc, data, what)
        return min_str

    def blob_post_cancel(self, repo: str) -> bool:
        what = "blob upload cancel"
        base = f"/v2/{repo}/blobs/uploads/"
        r = self.c.post(base)
        if not self.k.status(r, 202, what=what + " POST"):
            return False
        loc = r.headers.get("Location", "")
        if not self.k.check(bool(loc), f"{what}: POST Location missing"):
            return False
        r = self.c.delete(self.url(loc, base), headers={"Content-Length": "0"})
        return self.k.status(r, 204, what=what + " DELETE upload")

    def blob_mount(self, repo: str, source: str, dig: str, data: bytes, *, expect: tuple[int, ...]) -> int:
        """POST ?mount=&from= ; on 202 finish the upload with a PUT. Returns the POST status (0 on failure)."""
        what = f"blob mount {dig[:19]} from {source or '(no from)'}"
        base = f"/v2/{repo}/blobs/uploads/"
        params = {"mount": dig}
        if source:
            params["from"] = source
        r = self.c.post(base, params=params)
        if not self.k.status(r, *expect, what=what):
            return 0
        status = r.status_code
        loc = r.headers.get("Location", "")
        if not self.k.check(bool(loc), f"{what}: Location missing: {describe(r)}"):
            return 0
        url = base
        if status == 202:
            url = with_query(self.url(loc, base), digest=dig)
            r = self.c.put(url, content=data, headers={"Content-Type": MT_OCTET, "Content-Length": str(len(data))})
            if not self.k.status(r, 201, what=what + " fallback PUT"):
                return 0
            loc = r.headers.get("Location", "")
        self.verify_digest(r, dig, what)
        self.verify_location(url, loc, data, what)
        return status

    def blob_head(self, repo: str, dig: str, data: bytes | None) -> None:
        what = f"blob HEAD {dig[:19]}"
        r = self.c.head(f"/v2/{repo}/blobs/{dig}")
        if not self.k.status(r, 200, what=what):
            return
        self.k.body(r, b"", what=what)
        if data is not None:
            self.k.header(r, "Content-Length", str(len(data)), what=what)
        self.verify_digest(r, dig, what)

    def blob_get(self, repo: str, dig: str, data: bytes | None) -> None:
        what = f"blob GET {dig[:19]}"
        r = self.c.get(f"/v2/{repo}/blobs/{dig}")
        if not self.k.status(r, 200, what=what):
            return
        if data is not None:
            self.k.body(r, data, what=what)
            self.k.header(r, "Content-Length", str(len(data)), what=what)
        self.verify_digest(r, dig, what)

    def blob_delete(self, repo: str, dig: str, *, atomic: bool = True) -> None:
        what = f"blob DELETE {dig[:19]} in {repo}"
        r = self.c.delete(f"/v2/{repo}/blobs/{dig}")
        if not self.k.status(r, 202, 404, 405, what=what):
            return
        if r.status_code == 405:
            self.k.fail(f"{what}: 405, blob delete unsupported")
            return
        if atomic:
            h = self.c.head(f"/v2/{repo}/blobs/{dig}")
            self.k.status(h, 404, what=what + ": HEAD right after delete")

    # ---------------------------------------------------------------- manifests
    def manifest_put(self, repo: str, ref: str, dig: str, body: bytes, *, bad: bool = False,
                     tags: list[str] | None = None, check_subject: bool = True) -> httpx.Response | None:
        what = f"manifest PUT {ref[:40]}"
        mt = media_type_of(body)
        params = [("tag", t) for t in tags or []]
        url = f"/v2/{repo}/manifests/{ref}"
        if params:
            url += "?" + urlencode(params)
        # the suite's Go client sends the manifest without Content-Length (chunked transfer encoding)
        r = self.c.put(url, content=streamed(body), headers={"Content-Type": mt})
        if bad:
            self.k.status(r, 400, what=what + " (bad digest)")
            return r
        if not self.k.status(r, 201, what=what):
            return None
        if check_subject:
            subject = subject_of(body)
            if subject is not None:
                self.k.header(r, "OCI-Subject", subject["digest"], what=what)
        header = r.headers.get("Docker-Content-Digest", "")
        if self.require_digest_header:
            self.k.check(bool(header), f"{what}: Docker-Content-Digest missing: {describe(r)}")
        if header:
            self.k.check(header == dig, f"{what}: Docker-Content-Digest expected {dig}, got {header}")
        loc = r.headers.get("Location", "")
        if self.k.check(bool(loc), f"{what}: Location missing: {describe(r)}"):
            g = self.c.get(urljoin(url, loc), headers={"Accept": f"{MT_INDEX}, {MT_IMAGE}"})
            if self.k.status(g, 200, what=what + ": GET returned Location"):
                self.k.header(g, "Content-Type", mt, what=what + ": GET returned Location")
                self.k.header(g, "Content-Length", str(len(body)), what=what + ": GET returned Location")
                self.k.body(g, body, what=what + ": GET returned Location")
        if tags:
            accepted = {t.strip() for v in r.headers.get_list("OCI-Tag") for t in v.split(",")}
            for t in tags:
                self.k.check(t in accepted, f"{what}: OCI-Tag header lacks {t!r}: {describe(r)}")
        return r

    def _manifest_req(self, method: str, repo: str, ref: str) -> httpx.Response:
        # the suite sends two Accept headers: index, then image
        return self.c.request(method, f"/v2/{repo}/manifests/{ref}",
                              headers=[("Accept", MT_INDEX), ("Accept", MT_IMAGE)])

    def manifest_get(self, repo: str, ref: str, dig: str, body: bytes) -> None:
        what = f"manifest GET {ref[:40]}"
        r = self._manifest_req("GET", repo, ref)
        if not self.k.status(r, 200, what=what):
            return
        self.k.body(r, body, what=what)
        self.k.header(r, "Content-Type", media_type_of(body), what=what)
        self.k.header(r, "Content-Length", str(len(body)), what=what)
        self.verify_digest(r, dig, what)

    def manifest_head(self, repo: str, ref: str, dig: str, body: bytes) -> None:
        what = f"manifest HEAD {ref[:40]}"
        r = self._manifest_req("HEAD", repo, ref)
        if not self.k.status(r, 200, what=what):
            return
        self.k.body(r, b"", what=what)
        self.k.header(r, "Content-Type", media_type_of(body), what=what)
        self.k.header(r, "Content-Length", str(len(body)), what=what)
        self.verify_digest(r, dig, what)

    def manifest_delete(self, repo: str, ref: str, *, atomic: bool = True) -> None:
        what = f"manifest DELETE {ref[:40]}"
        r = self.c.delete(f"/v2/{repo}/manifests/{ref}")
        if not self.k.status(r, 202, 404, 400, 405, what=what):
            return
        if r.status_code in (400, 405):
            self.k.fail(f"{what}: {r.status_code}, delete unsupported: {describe(r)}")
            return
        if atomic:
            h = self._manifest_req("HEAD", repo, ref)
            self.k.status(h, 404, what=what + ": HEAD right after delete")

    # ---------------------------------------------------------------- listings
    def referrers(self, repo: str, dig: str, artifact_type: str | None = None) -> tuple[dict[str, Any] | None,
                                                                                        httpx.Response]:
        what = f"referrers {dig[:19]}{' artifactType=' + artifact_type if artifact_type else ''}"
        params = {"artifactType": artifact_type} if artifact_type else {}
        r = self.c.get(f"/v2/{repo}/referrers/{dig}", params=params)
        if not self.k.status(r, 200, what=what):
            return None, r
        self.k.header(r, "Content-Type", MT_INDEX, what=what)
        try:
            doc = r.json()
        except ValueError:
            self.k.fail(f"{what}: body is not JSON: {describe(r)}")
            return None, r
        if not self.k.check(doc.get("mediaType") == MT_INDEX and doc.get("schemaVersion") == 2,
                            f"{what}: not a valid OCI index (mediaType/schemaVersion): {describe(r)}"):
            return None, r
        if not self.k.check(isinstance(doc.get("manifests"), list), f"{what}: manifests is not a list"):
            return None, r
        return doc, r

    def tag_list(self, repo: str, **params: str) -> tuple[list[str] | None, httpx.Response]:
        what = f"tag list {params or ''}"
        r = self.c.get(f"/v2/{repo}/tags/list", params=params)
        if not self.k.status(r, 200, 404, what=what):
            return None, r
        if r.status_code == 404:
            return [], r
        try:
            doc = r.json()
        except ValueError:
            self.k.fail(f"{what}: body is not JSON: {describe(r)}")
            return None, r
        return list(doc.get("tags") or []), r


def media_type_of(body: bytes) -> str:
    try:
        mt = json.loads(body).get("mediaType")
    except ValueError:
        mt = None
    return mt or MT_IMAGE


def subject_of(body: bytes) -> dict[str, Any] | None:
    try:
        return json.loads(body).get("subject")
    except ValueError:
        return None
