"""Listings: ``/v2/<name>/tags/list``, ``/v2/_catalog`` and ``/v2/<name>/referrers/<digest>``.

The catalog is a k-way merge of every shard's sorted repository list: each shard returns up
to ``n`` names after ``last``; the merge keeps the first ``n``.
"""

from __future__ import annotations

import heapq
import itertools
from urllib.parse import urlencode

from quart import Response, request

from common import messages
from common.errors import ErrorCode, RegistryError
from common.grammar import Header, MediaType, parse_digest, validate_name
from gateway.context import authorize, current_state
from gateway.httputil import int_param, to_json

#: Page size when a client asks for "everything" (keeps one answer bounded).
MAX_PAGE = 10_000


def _json(obj: object, status: int = 200, content_type: str = "application/json") -> Response:
    return Response(to_json(obj), status=status, content_type=content_type)


def _next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


async def list_tags(name: str) -> Response:
    validate_name(name)
    await authorize(name, "read")
    n = int_param(request.args.get("n"), "n")
    last = request.args.get("last") or None
    if n == 0:
        # Still report an unknown repository as such.
        await current_state().client.call_repo(messages.TAGS_LIST({"repo": name, "n": 0, "last": None}))
        return _json({"name": name, "tags": []})
    page = min(n, MAX_PAGE) if n is not None else None
    result = (await current_state().client.call_repo(messages.TAGS_LIST({"repo": name, "n": page, "last": last}))).result
    response = _json({"name": name, "tags": result["tags"]})
    if result["more"] and result["tags"]:
        response.headers["Link"] = _next_link(f"/v2/{name}/tags/list", page or MAX_PAGE, result["tags"][-1])
    return response


async def catalog() -> Response:
    identity = await authorize(None, "catalog")
    n = int_param(request.args.get("n"), "n")
    last = request.args.get("last") or None
    if n == 0:
        return _json({"repositories": []})
    page = min(n, MAX_PAGE) if n is not None else MAX_PAGE
    st = current_state()
    names: list[str] = []
    cursor, more = last, True
    # Access filtering may drop names: keep merging pages until this one is full or shards run dry.
    while more and len(names) < page:
        replies = await st.client.call_all(messages.CATALOG({"n": page, "last": cursor}))
        # during a resize a repository switching owner may be listed by both shards for a moment
        everything = [r for r, _ in itertools.groupby(heapq.merge(*(r.result["repos"] for r in replies)))]
        merged = everything[:page]
        shard_more = any(r.result["more"] for r in replies)
        more = shard_more or len(everything) > len(merged)
        for i, repo in enumerate(merged):
            cursor = repo
            if st.access.can_list(identity, repo):
                names.append(repo)
                if len(names) == page:
                    more = shard_more or i + 1 < len(everything)
                    break
    response = _json({"repositories": names})
    if more and names:
        response.headers["Link"] = _next_link("/v2/_catalog", page, names[-1])
    return response


async def referrers(name: str, digest: str) -> Response:
    validate_name(name)
    try:
        parse_digest(digest)
    except RegistryError:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "invalid digest", detail={"digest": digest[:200]},
                            status=400) from None
    await authorize(name, "read")
    artifact_types = [t for t in request.args.getlist("artifactType") if t]
    result = (await current_state().client.call_repo(messages.REFERRERS({"repo": name, "subject": digest,
                                                                   "artifact_types": artifact_types}))).result
    index = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": result["manifests"]}
    response = _json(index, content_type=MediaType.OCI_INDEX)
    if artifact_types:
        response.headers[Header.OCI_FILTERS_APPLIED] = "artifactType"
    return response
