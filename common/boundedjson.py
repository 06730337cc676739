"""JSON parsing with a nesting limit, for documents that come from clients.

Python's ``json`` decodes recursively: a body of 10,000 ``[`` raises ``RecursionError`` (a 500
where the client deserves a 400), and a document a few hundred levels deep parses but then
breaks code that walks it recursively (msgpack refuses more than 512 levels). ``loads`` turns
both into :class:`TooDeep`, a ``ValueError``, so callers answer it like any other bad JSON.
The depth is checked on the decoded value with an explicit stack: it costs one visit per
container, nothing per byte.
"""

from __future__ import annotations

import json
from typing import Any

#: Deep enough for any manifest, config or GraphQL request seen in practice (they stay under 10).
DEFAULT_MAX_DEPTH = 64


class TooDeep(ValueError):
    """The document nests arrays/objects deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests lists/dicts more than ``max_depth`` levels (a scalar is depth 0)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def loads(data: str | bytes | bytearray, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`TooDeep` instead of recursing without bound."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if depth_exceeds(value, max_depth):
        raise TooDeep(max_depth)
    return value
