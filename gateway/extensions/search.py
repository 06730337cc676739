"""Search: GraphQL at ``/v2/_zot/ext/search`` (``GET ?query=`` or ``POST``), zot's schema names.

The schema is ``schema.graphql`` beside this module (ariadne, schema-first). Shards build the
image and repository summaries of their own repositories (:mod:`shard.search_meta`); the
resolvers here scatter to every shard (or go to the one owning a named repository), drop what
the caller may not read (``AccessControl.can_read``), then rank, filter, sort and paginate.
CVE queries answer a GraphQL error: vulnerability scanning is not enabled. What one request may
ask for is bounded (:mod:`gateway.extensions.graphql_limits`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ariadne import QueryType, ScalarType, make_executable_schema
from ariadne.graphql import graphql
from graphql import GraphQLError
from quart import Response, request

from common import boundedjson, messages
from common.errors import ErrorCode, RegistryError
from common.grammar import NAME_RE
from common.protocol import Request
from common.searchorder import platform_match
from gateway.auth.readgrant import read_filter
from gateway.context import authorize, current_state
from gateway.extensions.common import json_response
from gateway.extensions.graphql_limits import MAX_JSON_DEPTH, VALIDATION_RULES, ErrorLog, parse_query
from gateway.extensions.search_images import image_page
from gateway.extensions.search_merge import merged_page
from gateway.extensions.search_page import full_page, keys_suffice
from gateway.httputil import read_body

SCHEMA_PATH = Path(__file__).with_name("schema.graphql")
MAX_QUERY_BODY = 1024 * 1024
GRAPHQL_LOG = ErrorLog(logging.getLogger("shardreg.search"))
CVE_DISABLED = "cve search is disabled: vulnerability scanning is not enabled on this registry"

query = QueryType()
time_scalar = ScalarType("Time")


@time_scalar.serializer
def serialize_time(value: Any) -> Any:
    return value


# -- helpers ------------------------------------------------------------------------------------
def _ctx(info: Any) -> dict[str, Any]:
    return info.context


def _user(info: Any) -> str | None:
    identity = _ctx(info)["identity"]
    return None if identity.anonymous else identity.name


def _readable(info: Any, repo: str) -> bool:
    return current_state().access.can_read(_ctx(info)["identity"], repo)


async def _scatter_images(args: messages.SearchImagesRequest) -> list[dict]:
    return [i for reply in await current_state().client.call_all(messages.SEARCH_IMAGES(args)) for i in reply.result["images"]]


async def _scatter_repos(args: messages.SearchReposRequest) -> list[dict]:
    return [r for reply in await current_state().client.call_all(messages.SEARCH_REPOS(args)) for r in reply.result["repos"]]


async def _owners(repos: list[str], request: Callable[[list[str]], Request[Any, Any]], field: str) -> list[dict]:
    """``field`` of the replies of the shards owning ``repos``, each asked only for its own, all at once."""
    client = current_state().client
    if client.map.phase == "stable" and client.map.epoch > 0:
        by_shard: dict[int, list[str]] = {}
        for repo in repos:
            by_shard.setdefault(client.shard_of(repo), []).append(repo)
        try:
            replies = await asyncio.gather(*(client.call(shard, request(names)) for shard, names in by_shard.items()))
            return [item for reply in replies for item in reply.result[field]]
        except RegistryError as exc:  # the map changed: ask every shard (each answers for what it owns)
            if exc.code is not ErrorCode.STALE_MAP:
                raise
    return [item for reply in await client.call_all(request(repos)) for item in reply.result[field]]


async def _images(info: Any, repos: list[str] | None = None, digest: str | None = None) -> list[dict]:
    """Image summaries the caller may read: of ``repos`` (from their shards) or of every shard."""
    args: messages.SearchImagesRequest = {"user": _user(info)}
    if digest:
        args["digest"] = digest
    if repos is None:
        images = await _scatter_images(args)
    else:
        images = await _owners(repos, lambda names: messages.SEARCH_IMAGES({**args, "repos": names}), "images")
    return [i for i in images if _readable(info, i["RepoName"])]


async def _repos(info: Any, repos: list[str] | None = None, **args: Any) -> list[dict]:
    """Repository summaries the caller may read: of ``repos`` (from their shards) or of every shard."""
    request: messages.SearchReposRequest = {"user": _user(info), **args}  # type: ignore[typeddict-item]
    if repos is None:
        found = await _scatter_repos(request)
    else:
        found = await _owners(repos, lambda names: messages.SEARCH_REPOS({**request, "repos": names}), "repos")
    return [r for r in found if _readable(info, r["Name"])]


def _page_input(page: dict | None) -> tuple[int, int, str]:
    page = page or {}
    limit, offset = page.get("limit"), page.get("offset")
    if (limit is not None and limit < -1) or (offset is not None and offset < 0):
        raise GraphQLError("requestedPage: limit and offset must not be negative")
    return (limit or 0), (offset or 0), (page.get("sortBy") or "RELEVANCE")


def _paginate(items: list[dict], page: dict | None) -> dict:
    limit, offset, _ = _page_input(page)
    selected = items[offset:] if limit <= 0 else items[offset:offset + limit]
    return {"Page": {"TotalCount": len(items), "ItemCount": len(selected)}, "Results": selected}


async def _sorted_repos(info: Any, results: str, flt: dict | None, page: dict | None, text: str | None = None) -> dict:
    """A sorted page of the readable repositories with an image: merged from the shards' ordered
    indexes (:mod:`gateway.extensions.search_merge`), then the full summaries of the page only
    (:mod:`gateway.extensions.search_page`)."""
    limit, offset, sort_by = _page_input(page)
    state = current_state()
    args: messages.SearchPageRequest = {"order": sort_by, "limit": limit, "access": read_filter(state.access, _ctx(info)["identity"]),
                                        "user": _user(info), "query": text, "filter": flt}
    items, total = await merged_page(state.client, args, offset, limit)
    selected: dict[str, Any] = {"Page": {"TotalCount": total, "ItemCount": len(items)}, "Results": items}
    if not keys_suffice(info, results):
        selected["Results"] = await full_page(items, lambda names: _repos(info, repos=names))
        selected["Page"]["ItemCount"] = len(selected["Results"])
    return selected


def _sort_images(images: list[dict], sort_by: str) -> list[dict]:
    alpha = sorted(images, key=lambda i: (i["RepoName"], i["Tag"]))
    if sort_by == "UPDATE_TIME":
        return sorted(alpha, key=lambda i: -(i.get("_updated") or 0.0))
    if sort_by == "ALPHABETIC_DSC":
        return list(reversed(alpha))
    if sort_by == "DOWNLOADS":
        return sorted(alpha, key=lambda i: -(i.get("DownloadCount") or 0))
    return alpha


def _sort_repos(repos: list[dict], sort_by: str) -> list[dict]:
    alpha = sorted(repos, key=lambda r: r["Name"])
    if sort_by == "RELEVANCE":
        return sorted(alpha, key=lambda r: r.get("Rank") or 0)
    if sort_by == "UPDATE_TIME":
        return sorted(alpha, key=lambda r: -(r.get("_updated") or 0.0))
    if sort_by == "ALPHABETIC_DSC":
        return list(reversed(alpha))
    if sort_by == "STARS":
        return sorted(alpha, key=lambda r: -(r.get("StarCount") or 0))
    if sort_by == "DOWNLOADS":
        return sorted(alpha, key=lambda r: -(r.get("DownloadCount") or 0))
    return alpha


def _image_passes(image: dict, flt: dict | None, repo: dict | None = None) -> bool:
    if not flt:
        return True
    platforms = [m["Platform"] for m in image.get("Manifests") or []]
    if not platform_match(platforms, flt.get("Os"), "Os") or not platform_match(platforms, flt.get("Arch"), "Arch"):
        return False
    if flt.get("HasToBeSigned") and not image.get("IsSigned"):
        return False
    for key in ("IsBookmarked", "IsStarred"):
        if flt.get(key) is not None and bool((repo or {}).get(key)) != flt[key]:
            return False
    return True


def _parse_image_ref(image: str) -> tuple[str, str | None, str | None]:
    """``repo:tag`` or ``repo@digest`` → (repo, tag, digest)."""
    if "@" in image:
        repo, digest = image.split("@", 1)
        return repo, None, digest
    repo, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        raise GraphQLError(f"image {image!r} must be repo:tag or repo@digest")
    return repo, tag, None


def _check_repo(info: Any, repo: str) -> None:
    if not NAME_RE.fullmatch(repo):
        raise GraphQLError(f"invalid repository name {repo[:255]!r}")
    if not _readable(info, repo):
        raise GraphQLError(f"repository {repo!r} not found")


# -- queries ------------------------------------------------------------------------------------
@query.field("ImageList")
async def resolve_image_list(_: Any, info: Any, repo: str, requestedPage: dict | None = None) -> dict:
    limit, offset, sort_by = _page_input(requestedPage)
    if not repo:  # every repository's images: a page from the shards' indexes
        state = current_state()
        args: messages.SearchPageRequest = {"order": "ALPHABETIC_ASC", "limit": limit, "user": _user(info),
                                            "access": read_filter(state.access, _ctx(info)["identity"])}
        return await image_page(state.client, args, sort_by, offset, limit, lambda names: _images(info, names),
                                _sort_images)
    _check_repo(info, repo)
    return _paginate(_sort_images(await _images(info, [repo]), sort_by), requestedPage)


@query.field("ImageListForDigest")
async def resolve_image_list_for_digest(_: Any, info: Any, id: str, requestedPage: dict | None = None) -> dict:
    wanted = id.strip()
    if not wanted:
        raise GraphQLError("id must be a digest")
    images = await _images(info, None, wanted)
    return _paginate(_sort_images(images, _page_input(requestedPage)[2]), requestedPage)


@query.field("RepoListWithNewestImage")
async def resolve_repo_list(_: Any, info: Any, requestedPage: dict | None = None) -> dict:
    return await _sorted_repos(info, "Results", None, requestedPage)


@query.field("ExpandedRepoInfo")
async def resolve_expanded_repo_info(_: Any, info: Any, repo: str) -> dict:
    _check_repo(info, repo)
    try:
        reply = await current_state().client.call_repo(messages.SEARCH_EXPAND({"repo": repo, "user": _user(info)}))
    except RegistryError as exc:
        if exc.code == ErrorCode.NAME_UNKNOWN:
            raise GraphQLError(f"repository {repo!r} not found") from None
        raise
    images = sorted(reply.result["images"], key=lambda i: i["Tag"])
    return {"Images": images, "Summary": reply.result["summary"]}


@query.field("GlobalSearch")
async def resolve_global_search(_: Any, info: Any, query: str, filter: dict | None = None,  # noqa: A002
                                requestedPage: dict | None = None) -> dict:
    _, _, sort_by = _page_input(requestedPage)
    text = query.strip()
    if ":" in text:
        repo, _, tag_prefix = text.partition(":")
        if not NAME_RE.fullmatch(repo) or not _readable(info, repo):
            page = _paginate([], requestedPage)
            return {"Page": page["Page"], "Images": [], "Repos": [], "Layers": []}
        repo_info, of_repo = await asyncio.gather(_repos(info, repos=[repo]), _images(info, [repo]))
        summary = repo_info[0] if repo_info else None
        images = [i for i in of_repo if i["Tag"].startswith(tag_prefix) and _image_passes(i, filter, summary)]
        page = _paginate(_sort_images(images, sort_by if sort_by != "RELEVANCE" else "ALPHABETIC_ASC"),
                         requestedPage)
        return {"Page": page["Page"], "Images": page["Results"], "Repos": [], "Layers": []}
    page = await _sorted_repos(info, "Repos", filter, requestedPage, text)
    return {"Page": page["Page"], "Images": [], "Repos": page["Results"], "Layers": []}


async def _find_image(info: Any, image: str) -> dict:
    repo, tag, digest = _parse_image_ref(image)
    _check_repo(info, repo)
    for summary in await _images(info, [repo]):
        if (tag is not None and summary["Tag"] == tag) or (digest is not None and summary["Digest"] == digest):
            return summary
    raise GraphQLError(f"image {image!r} not found")


@query.field("Image")
async def resolve_image(_: Any, info: Any, image: str) -> dict:
    return await _find_image(info, image)


def _layers_of(image: dict, digest: str | None) -> list[list[str]]:
    manifests = image.get("Manifests") or []
    if digest:
        manifests = [m for m in manifests if m["Digest"] == digest] or manifests
    return [[layer["Digest"] for layer in m.get("Layers") or []] for m in manifests]


async def _related(info: Any, image: str, digest: str | None, requestedPage: dict | None, derived: bool) -> dict:
    base = await _find_image(info, image)
    wanted = [layers for layers in _layers_of(base, digest) if layers]
    if not wanted:
        return _paginate([], requestedPage)
    # An image derived from (or a base of) ``mine`` shares its first layer: only the images naming
    # one of those first layers are candidates (the shards look them up by digest).
    firsts = sorted({mine[0] for mine in wanted})
    candidates = {(c["RepoName"], c["Tag"]): c
                  for found_images in await asyncio.gather(*(_images(info, None, first) for first in firsts))
                  for c in found_images}
    found = []
    for candidate in candidates.values():
        if candidate["Digest"] == base["Digest"]:
            continue
        matched = []
        for m in candidate.get("Manifests") or []:
            layers = [layer["Digest"] for layer in m.get("Layers") or []]
            for mine in wanted:
                if derived and len(layers) > len(mine) and layers[:len(mine)] == mine:
                    matched.append(m)
                    break
                if not derived and 0 < len(layers) < len(mine) and mine[:len(layers)] == layers:
                    matched.append(m)
                    break
        if matched:
            found.append({**candidate, "Manifests": matched})
    return _paginate(_sort_images(found, _page_input(requestedPage)[2]), requestedPage)


@query.field("DerivedImageList")
async def resolve_derived(_: Any, info: Any, image: str, digest: str | None = None,
                          requestedPage: dict | None = None) -> dict:
    return await _related(info, image, digest, requestedPage, derived=True)


@query.field("BaseImageList")
async def resolve_base(_: Any, info: Any, image: str, digest: str | None = None,
                       requestedPage: dict | None = None) -> dict:
    return await _related(info, image, digest, requestedPage, derived=False)


@query.field("Referrers")
async def resolve_referrers(_: Any, info: Any, repo: str, digest: str, type: list[str] | None = None  # noqa: A002
                            ) -> list[dict]:
    _check_repo(info, repo)
    reply = await current_state().client.call_repo(messages.REFERRERS({"repo": repo, "subject": digest, "artifact_types": type or []}))
    return [{"MediaType": d.get("mediaType"), "ArtifactType": d.get("artifactType") or "", "Size": d.get("size"),
             "Digest": d.get("digest"),
             "Annotations": [{"Key": k, "Value": v} for k, v in (d.get("annotations") or {}).items()]}
            for d in reply.result["manifests"]]


async def _user_repos(info: Any, only: str, requestedPage: dict | None) -> dict:
    if _user(info) is None:
        return _paginate([], requestedPage)
    repos = await _repos(info, only=only)
    return _paginate(_sort_repos(repos, _page_input(requestedPage)[2]), requestedPage)


@query.field("StarredRepos")
async def resolve_starred(_: Any, info: Any, requestedPage: dict | None = None) -> dict:
    return await _user_repos(info, "starred", requestedPage)


@query.field("BookmarkedRepos")
async def resolve_bookmarked(_: Any, info: Any, requestedPage: dict | None = None) -> dict:
    return await _user_repos(info, "bookmarked", requestedPage)


def _cve_disabled(*_: Any, **__: Any) -> Any:
    raise GraphQLError(CVE_DISABLED)


for _name in ("CVEListForImage", "CVEDiffListForImages", "ImageListForCVE", "ImageListWithCVEFixed"):
    query.set_field(_name, _cve_disabled)

schema = make_executable_schema(SCHEMA_PATH.read_text(), query, time_scalar)


# -- HTTP ----------------------------------------------------------------------------------------
class _Refused(Exception):
    """A request refused before execution: answered 400 with a GraphQL ``errors`` list."""


async def _request_data() -> dict[str, Any]:
    if request.method == "GET":
        data: dict[str, Any] = {"query": request.args.get("query", "")}
        if request.args.get("variables"):
            try:
                data["variables"] = boundedjson.loads(request.args["variables"], MAX_JSON_DEPTH)
            except boundedjson.TooDeep as exc:
                raise _Refused(f"variables: {exc}") from None
            except ValueError:
                raise RegistryError(ErrorCode.BAD_REQUEST, "variables is not JSON", status=400) from None
        if request.args.get("operationName"):
            data["operationName"] = request.args["operationName"]
        return data
    body = await read_body(MAX_QUERY_BODY)
    content_type = (request.headers.get("Content-Type") or "").split(";", 1)[0].strip()
    if content_type == "application/graphql":
        return {"query": body.decode(errors="replace")}
    try:
        data = boundedjson.loads(body or b"{}", MAX_JSON_DEPTH)
    except boundedjson.TooDeep as exc:
        raise _Refused(f"the GraphQL request: {exc}") from None
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(ErrorCode.BAD_REQUEST, "the body must be a JSON GraphQL request", status=400) from None
    if not isinstance(data, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "the body must be a JSON object", status=400)
    return data


async def search() -> Response:
    identity = await authorize()
    try:
        data = await _request_data()
    except _Refused as exc:
        return json_response({"errors": [{"message": str(exc)}], "data": None}, status=400)
    if not isinstance(data.get("query"), str) or not data["query"].strip():
        return json_response({"errors": [{"message": "no query given"}], "data": None}, status=422)
    if data.get("variables") is not None and not isinstance(data["variables"], dict):
        return json_response({"errors": [{"message": "variables must be an object"}], "data": None}, status=422)
    success, result = await graphql(schema, data, context_value={"identity": identity}, debug=False,
                                    query_parser=parse_query, validation_rules=VALIDATION_RULES,
                                    logger=GRAPHQL_LOG)
    status = 200 if success or "data" in result else 422
    return json_response(result, status=status)
