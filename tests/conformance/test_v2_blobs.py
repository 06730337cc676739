"""Redesigned suite (run.go TestBlobAPIs), once per digest algorithm: every blob push form, mounts,
cancel, HEAD/GET, range requests, the empty and ``{}`` blobs, bad digests, deletes with an
immediate HEAD → 404."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conformance.ociapi import CHUNK_MIN, Api, Checks, digest_of

ALGOS = ["sha256", "sha512"]
MIN_CHUNK: dict[str, int] = {}


def new_api(http: httpx.Client) -> tuple[Api, Checks]:
    k = Checks()
    return Api(http, k), k


def min_chunk(algo: str) -> int:
    return MIN_CHUNK.get(algo, CHUNK_MIN)


def blob(size: int, algo: str) -> tuple[str, bytes]:
    data = os.urandom(size)
    return digest_of(data, algo), data


def head_get_delete(api: Api, repo: str, dig: str, data: bytes) -> None:
    api.blob_head(repo, dig, data)
    api.blob_get(repo, dig, data)
    api.blob_delete(repo, dig)


@pytest.mark.parametrize("algo", ALGOS)
def test_get_missing_blob(http, repos, algo):
    api, k = new_api(http)
    dig, _ = blob(512, algo)
    r = http.get(f"/v2/{repos[0]}/blobs/{dig}")
    k.status(r, 404, what="GET blob never pushed")
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_post_only(http, repos, algo):
    api, k = new_api(http)
    dig, data = blob(512, algo)
    if api.blob_post_only(repos[0], dig, data):
        head_get_delete(api, repos[0], dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_post_put(http, repos, algo):
    api, k = new_api(http)
    dig, data = blob(512, algo)
    if api.blob_post_put(repos[0], dig, data):
        head_get_delete(api, repos[0], dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_chunked_single(http, repos, algo):
    api, k = new_api(http)
    dig, data = blob(512, algo)
    advertised = api.blob_patch_chunked(repos[0], dig, data)
    if advertised is not None:
        if advertised:
            MIN_CHUNK[algo] = max(CHUNK_MIN, int(advertised))
        head_get_delete(api, repos[0], dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_stream(http, repos, algo):
    api, k = new_api(http)
    dig, data = blob(512, algo)
    if api.blob_patch_stream(repos[0], dig, data):
        head_get_delete(api, repos[0], dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_mount_from_other_repo(http, repos, algo):
    api, k = new_api(http)
    repo, repo2 = repos
    dig, data = blob(512, algo)
    api.blob_post_put(repo2, dig, data)
    # the suite accepts 202 + PUT only as "unsupported": a registry that mounts must answer 201
    if api.blob_mount(repo, repo2, dig, data, expect=(201,)):
        head_get_delete(api, repo, dig, data)
    api.blob_delete(repo2, dig)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_mount_anonymous(http, repos, algo):
    api, k = new_api(http)
    repo, repo2 = repos
    dig, data = blob(512, algo)
    api.blob_post_put(repo2, dig, data)
    # `from` MAY be optional (spec): 201 mounted, or 202 and the upload is finished with a PUT
    if api.blob_mount(repo, "", dig, data, expect=(201, 202)):
        head_get_delete(api, repo, dig, data)
    api.blob_delete(repo2, dig)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_mount_missing(http, repos, algo):
    api, k = new_api(http)
    repo, repo2 = repos
    dig, data = blob(512, algo)
    # never pushed to repo2: the registry must not mount (202, new session), the PUT then completes it
    if api.blob_mount(repo, repo2, dig, data, expect=(202,)):
        head_get_delete(api, repo, dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_post_cancel(http, repos, algo):
    api, k = new_api(http)
    dig, _ = blob(512, algo)
    api.blob_post_cancel(repos[0])
    api.blob_delete(repos[0], dig)  # never stored: 404, and HEAD 404
    k.done()


@pytest.mark.parametrize("put_last", [False, True], ids=["patch-last", "put-last"])
@pytest.mark.parametrize("out_of_order", [False, True], ids=["in-order", "out-of-order"])
@pytest.mark.parametrize("algo", ALGOS)
def test_chunked_multi(http, repos, algo, out_of_order, put_last):
    api, k = new_api(http)
    dig, data = blob(min_chunk(algo) * 3 - 5, algo)
    if api.blob_patch_chunked(repos[0], dig, data, put_last=put_last, out_of_order=out_of_order) is not None:
        head_get_delete(api, repos[0], dig, data)
    k.done()


@pytest.mark.parametrize("algo", ALGOS)
def test_chunked_with_digest_algorithm_param(http, repos, algo):
    """Spec (stricter than the suite): a chunked POST for a non-sha256 blob SHOULD carry digest-algorithm."""
    api, k = new_api(http)
    dig, data = blob(min_chunk(algo) * 3 - 5, algo)
    if api.blob_patch_chunked(repos[0], dig, data, post_params={"digest-algorithm": algo}) is not None:
        head_get_delete(api, repos[0], dig, data)
    k.done()


RANGES = [
    # (Range header, expected slice or None for 416)
    ("bytes=500-1499", (500, 1500)),
    ("bytes=500-", (500, 2048)),
    ("bytes=-500", (1548, 2048)),
    ("bytes=2000-5000", (2000, 2048)),
    ("bytes=500-0", None),
    ("bytes=5000-10000", None),
]


@pytest.mark.parametrize("algo", ALGOS)
def test_range_requests(http, repos, algo):
    api, k = new_api(http)
    dig, data = blob(2048, algo)
    assert api.blob_post_put(repos[0], dig, data), k.failures
    for header, want in RANGES:
        what = f"GET blob with Range: {header}"
        r = http.get(f"/v2/{repos[0]}/blobs/{dig}", headers={"Range": header})
        if want is None:
            k.status(r, 416, what=what)
            continue
        start, end = want
        if r.status_code == 200:
            k.fail(f"{what}: range request unsupported, full blob returned (200)")
            continue
        if not k.status(r, 206, what=what):
            continue
        k.body(r, data[start:end], what=what)
        k.header(r, "Content-Length", str(end - start), what=what)
        cr = r.headers.get("Content-Range", "")
        k.check(cr in (f"bytes {start}-{end - 1}/2048", f"bytes {start}-{end - 1}/*"),
                f"{what}: Content-Range expected 'bytes {start}-{end - 1}/2048' (or /*), got {cr!r}")
    api.blob_delete(repos[0], dig)
    k.done()


@pytest.mark.parametrize("content", [b"", b"{}"], ids=["empty", "emptyJSON"])
@pytest.mark.parametrize("algo", ALGOS)
def test_well_known_blob(http, repos, algo, content):
    api, k = new_api(http)
    dig = digest_of(content, algo)
    if content == b"{}" and algo == "sha256":
        assert dig == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    pushed = api.blob_post_put(repos[0], dig, content) if content else api.blob_patch_stream(repos[0], dig, content)
    if pushed:
        head_get_delete(api, repos[0], dig, content)
    k.done()


@pytest.mark.parametrize("form", ["post only", "post+put", "chunked", "chunked and put chunk", "stream"])
@pytest.mark.parametrize("algo", ALGOS)
def test_bad_digest(http, repos, algo, form):
    api, k = new_api(http)
    dig, data = blob(min_chunk(algo) * 3 - 5, algo)
    data += b"oh no"  # corrupt: the bytes no longer match the digest
    repo = repos[0]
    if form == "post only":
        api.blob_post_only(repo, dig, data, bad=True)
    elif form == "post+put":
        api.blob_post_put(repo, dig, data, bad=True)
    elif form == "chunked":
        api.blob_patch_chunked(repo, dig, data, bad=True)
    elif form == "chunked and put chunk":
        api.blob_patch_chunked(repo, dig, data, bad=True, put_last=True)
    else:
        api.blob_patch_stream(repo, dig, data, bad=True)
    r = http.head(f"/v2/{repo}/blobs/{dig}")
    k.status(r, 404, what="HEAD blob after a rejected bad-digest upload")
    k.done()
