"""The full summaries of a sorted page only (issue 17).

A sorted page is merged from the shards' ordered indexes (:mod:`gateway.extensions.search_merge`)
as listing keys (no signatures, referrers nor sizes); the gateway then asks the owning shards for
the full summaries of the page only. When the query selects nothing beyond those fields (the
UI's home page), the keys are the answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from graphql import FieldNode

#: The fields of a repository summary that ``search.page`` answers.
KEY_FIELDS = frozenset({"Name", "LastUpdated", "DownloadCount", "StarCount", "Platforms", "IsStarred",
                        "IsBookmarked", "Rank", "__typename"})


def keys_suffice(info: Any, results: str) -> bool:
    """Whether the query selects, under ``results``, only fields the keys hold (no fragments)."""
    for node in info.field_nodes:
        for sub in node.selection_set.selections if node.selection_set else ():
            if not isinstance(sub, FieldNode):
                return False
            if sub.name.value != results or sub.selection_set is None:
                continue
            for field in sub.selection_set.selections:
                if not isinstance(field, FieldNode) or field.name.value not in KEY_FIELDS:
                    return False
    return True


async def full_page(page: list[dict], fetch: Callable[[list[str]], Awaitable[list[dict]]]) -> list[dict]:
    """The full summaries of the repositories of ``page``, in its order (one gone meanwhile is left out)."""
    if not page:
        return []
    found = {r["Name"]: r for r in await fetch([r["Name"] for r in page])}
    out = []
    for keys in page:
        full = found.get(keys["Name"])
        if full is not None:
            full["Rank"] = keys.get("Rank") or 0
            out.append(full)
    return out
