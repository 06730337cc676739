"""How search listings order and filter repositories: the same on the gateway and the shards."""

from __future__ import annotations

from typing import Any


def rank(name: str, text: str) -> int:
    """Lower is better: exact name, then last path component, then where and how much matches."""
    name_l, text_l = name.lower(), text.lower()
    if not text_l or name_l == text_l:
        return 0
    last = name_l.rsplit("/", 1)[-1]
    if last == text_l:
        return 1
    if last.startswith(text_l):
        return 2 + len(last) - len(text_l)
    position = name_l.find(text_l)
    return 100 + position + (len(name_l) - len(text_l))


def platform_match(platforms: list[dict[str, Any]], wanted: list[str] | None, field: str) -> bool:
    """zot's Os/Arch filter: some platform's ``field`` is one of ``wanted`` (case-insensitive)."""
    if not wanted:
        return True
    wanted_l = {w.lower() for w in wanted if w}
    return not wanted_l or any((p.get(field) or "").lower() in wanted_l for p in platforms)


def keys_pass(keys: dict[str, Any], flt: dict[str, Any] | None, signed: bool | None = None) -> bool:
    """Whether a repository's listing keys pass zot's Filter (``signed``: its newest image is signed;
    asked only when the filter wants it)."""
    if not flt:
        return True
    platforms = keys.get("Platforms") or []
    if not platform_match(platforms, flt.get("Os"), "Os") or not platform_match(platforms, flt.get("Arch"), "Arch"):
        return False
    for key in ("IsBookmarked", "IsStarred"):
        if flt.get(key) is not None and bool(keys.get(key)) != flt[key]:
            return False
    return not flt.get("HasToBeSigned") or bool(signed)
