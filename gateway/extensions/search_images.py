"""A page of images of every repository (``ImageList`` without a repository), from the shards'
ordered indexes (issue 17): no shard builds every image's summary for one page.

The repositories are walked in an order that bounds their images' order (:class:`Merged`):
by name for the alphabetical orders (a repository's images all come before the next one's), by
newest update for UPDATE_TIME (no image of a repository is newer than the repository's newest),
by downloads for DOWNLOADS (no image has more than its repository's sum). Repositories are
expanded into their image summaries (from their owners) until ``offset + limit`` images are known
to come before anything not expanded yet; then the gateway sorts those exactly as before.
``TotalCount`` is the shards' kept image counts (or, for partial access, their count walks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from common import messages
from gateway.extensions.search_merge import MAX_ASK, Merged, ask_args

#: The repository order that bounds each image order (anything else sorts by name).
_WALK = {"UPDATE_TIME": "UPDATE_TIME", "DOWNLOADS": "DOWNLOADS", "ALPHABETIC_DSC": "ALPHABETIC_DSC"}


def _before(order: str, image: dict[str, Any], repo: dict[str, Any]) -> bool:
    """Whether ``image`` sorts before every image of ``repo`` and the repositories after it."""
    if order == "UPDATE_TIME":
        return (-(image.get("_updated") or 0.0), image["RepoName"], image["Tag"]) < (-(repo["_updated"] or 0.0),
                                                                                     repo["Name"], "")
    if order == "DOWNLOADS":
        return (image.get("DownloadCount") or 0) > repo["DownloadCount"]
    return True


async def image_page(client: Any, args: messages.SearchPageRequest, sort_by: str, offset: int, limit: int,
                     fetch: Callable[[list[str]], Awaitable[list[dict[str, Any]]]],
                     sort: Callable[[list[dict[str, Any]], str], list[dict[str, Any]]]) -> dict[str, Any]:
    order = _WALK.get(sort_by, "ALPHABETIC_ASC")
    need = offset + limit if limit > 0 else None
    merged = Merged(client, ask_args(args, order=order, images=True, query=None, filter=None))
    await merged.start(need or MAX_ASK)
    found: list[dict[str, Any]] = []
    while True:
        repos = await merged.take(need or MAX_ASK)
        if not repos:
            break
        found += await fetch([r["Name"] for r in repos])
        if need is None:
            continue
        bound = await merged.peek(need)
        if bound is None or sum(1 for image in found if _before(order, image, bound)) >= need:
            break
    ordered = sort(found, sort_by)
    selected = ordered[offset:] if limit <= 0 else ordered[offset:offset + limit]
    return {"Page": {"TotalCount": merged.total, "ItemCount": len(selected)}, "Results": selected}
