"""What the pages show, asked of the GraphQL search schema in-process under the viewer's identity.

These are the resolvers ``/v2/_zot/ext/search`` runs, with the same ``context`` (the caller's
identity): what the caller may not read is dropped by them before a page sees it.
"""

from __future__ import annotations

from typing import Any

from graphql import graphql

from common.errors import ErrorCode, RegistryError
from gateway.auth.identity import Identity
from gateway.extensions.search import schema

REPO = """fragment Repo on RepoSummary {
  Name LastUpdated Size DownloadCount StarCount IsStarred IsBookmarked Platforms { Os Arch } Vendors
  NewestImage { Tag Digest Description Title Vendor Licenses IsSigned ArtifactType }
}"""
IMAGE = """fragment Image on ImageSummary {
  RepoName Tag Digest MediaType Size LastUpdated DownloadCount PushedBy IsSigned ArtifactType
  Description Title Vendor Licenses Source Documentation Authors Labels
  SignatureInfo { Tool IsTrusted Author }
  Manifests {
    Digest ConfigDigest Size LastUpdated IsSigned ArtifactType Platform { Os Arch }
    SignatureInfo { Tool IsTrusted Author }
    Layers { Size Digest }
    History { Layer { Size Digest } HistoryDescription { Created CreatedBy Author Comment EmptyLayer } }
  }
}"""
REFERRER = "fragment Ref on Referrer { MediaType ArtifactType Size Digest Annotations { Key Value } }"


async def ask(identity: Identity, query: str, **variables: Any) -> dict[str, Any]:
    """Run ``query`` as ``identity``; a GraphQL error (not found, not readable) becomes a 404, a
    shard's error (unavailable, ...) stays what it is."""
    result = await graphql(schema, query, variable_values=variables, context_value={"identity": identity})
    for error in result.errors or []:
        if isinstance(error.original_error, RegistryError):
            raise error.original_error
    if result.errors or result.data is None:
        message = result.errors[0].message if result.errors else "search failed"
        raise RegistryError(ErrorCode.NAME_UNKNOWN, message[:200], status=404)
    return result.data


async def home(identity: Identity, n: int = 6) -> dict[str, Any]:
    """Count, recently updated, most pulled, starred and bookmarked: each a page of ``n`` read from
    the shards' ordered listings (O(page × shards)), never a listing of every repository."""
    query = REPO + """
    query Home($n: Int) {
      recent: RepoListWithNewestImage(requestedPage: {limit: $n, sortBy: UPDATE_TIME}) { Page { TotalCount } Results { ...Repo } }
      popular: RepoListWithNewestImage(requestedPage: {limit: $n, sortBy: DOWNLOADS}) { Results { ...Repo } }
      starred: StarredRepos(requestedPage: {limit: $n, sortBy: ALPHABETIC_ASC}) { Page { TotalCount } Results { ...Repo } }
      bookmarked: BookmarkedRepos(requestedPage: {limit: $n, sortBy: ALPHABETIC_ASC}) { Page { TotalCount } Results { ...Repo } }
    }"""
    found = await ask(identity, query, n=n)
    return {"repos": found["recent"]["Page"]["TotalCount"], "recent": found["recent"]["Results"],
            "popular": [r for r in found["popular"]["Results"] if r.get("DownloadCount")],
            "starred": found["starred"]["Results"], "bookmarked": found["bookmarked"]["Results"]}


async def summaries(identity: Identity, names: list[str]) -> dict[str, dict[str, Any]]:
    """Repository summaries of ``names``, each from its own shard, in one request ({} if one vanished)."""
    if not names:
        return {}
    params = ", ".join(f"$r{i}: String!" for i in range(len(names)))
    parts = "\n".join(f"e{i}: ExpandedRepoInfo(repo: $r{i}) {{ Summary {{ ...Repo }} }}" for i in range(len(names)))
    try:
        data = await ask(identity, REPO + f"query Summaries({params}) {{\n{parts}\n}}",
                         **{f"r{i}": name for i, name in enumerate(names)})
    except RegistryError as exc:
        if exc.code != ErrorCode.NAME_UNKNOWN:  # deleted meanwhile: show the names alone
            raise
        return {}
    return {name: data[f"e{i}"]["Summary"] for i, name in enumerate(names)}


async def search(identity: Identity, text: str, flt: dict[str, Any], limit: int, offset: int,
                 sort: str) -> dict[str, Any]:
    query = REPO + IMAGE + """
    query Search($q: String!, $f: Filter, $p: PageInput) {
      GlobalSearch(query: $q, filter: $f, requestedPage: $p) {
        Page { TotalCount ItemCount } Repos { ...Repo } Images { ...Image }
      }
    }"""
    data = await ask(identity, query, q=text, f=flt, p={"limit": limit, "offset": offset, "sortBy": sort})
    result: dict[str, Any] = data["GlobalSearch"]
    return result


async def repository(identity: Identity, repo: str) -> dict[str, Any]:
    query = IMAGE + """
    query Repo($repo: String!) {
      ExpandedRepoInfo(repo: $repo) {
        Summary { Name LastUpdated Size DownloadCount StarCount IsStarred IsBookmarked Platforms { Os Arch } Vendors
                  NewestImage { Tag Description Title Vendor Licenses Source Documentation Authors } }
        Images { ...Image }
      }
    }"""
    info: dict[str, Any] = (await ask(identity, query, repo=repo))["ExpandedRepoInfo"]
    return info


async def image(identity: Identity, repo: str, tag: str) -> dict[str, Any]:
    query = IMAGE + "query One($ref: String!) { Image(image: $ref) { ...Image } }"
    found: dict[str, Any] = (await ask(identity, query, ref=f"{repo}:{tag}"))["Image"]
    return found


async def referrers(identity: Identity, repo: str, subjects: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The referrers (signatures, SBOMs, attestations) of each of ``subjects``, in one request."""
    subjects = [d for d in subjects if _safe_digest(d)]
    if not subjects:
        return {}
    parts = [f'r{i}: Referrers(repo: $repo, digest: "{d}") {{ ...Ref }}' for i, d in enumerate(subjects)]
    data = await ask(identity, REFERRER + "query Refs($repo: String!) {\n" + "\n".join(parts) + "\n}", repo=repo)
    return {d: data.get(f"r{i}") or [] for i, d in enumerate(subjects)}


async def lineage(identity: Identity, repo: str, tag: str, digest: str | None) -> dict[str, Any]:
    """Base and derived images of an image (of one of its manifests with ``digest``): a scan of
    every image, which is why the image page loads it separately."""
    query = """
    fragment Brief on ImageSummary { RepoName Tag Digest LastUpdated Size }
    query Lineage($ref: String!, $digest: String) {
      base: BaseImageList(image: $ref, digest: $digest, requestedPage: {limit: 20}) { Results { ...Brief } }
      derived: DerivedImageList(image: $ref, digest: $digest, requestedPage: {limit: 20}) { Results { ...Brief } }
    }"""
    data = await ask(identity, query, ref=f"{repo}:{tag}", digest=digest)
    return {"base": data["base"]["Results"], "derived": data["derived"]["Results"]}


def _safe_digest(value: str) -> bool:
    algorithm, sep, hexpart = value.partition(":")
    return bool(sep) and algorithm.isalnum() and hexpart.isalnum() and len(value) < 200

