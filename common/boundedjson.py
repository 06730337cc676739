"""JSON parsing with a nesting limit, for documents that come from clients.

Python's ``json`` decodes recursively: a body of 10,000 ``[`` raises ``RecursionError`` (a 500
where the client deserves a 400), and a document a few hundred levels deep parses but then
breaks code that walks it recursively (msgpack refuses more than 512 levels). ``loads`` turns
both into :class:`TooDeep`, a ``ValueError``, so callers answer it like any other bad JSON.
The depth is checked on the decoded value with an explicit stack: it costs one visit per
container, nothing per byte.

A string must also be Unicode text: ``json`` lets a lone UTF-16 surrogate through, escaped
(``"\\ud800"``) or as raw bytes (``ED A0 80``), and nothing downstream can encode it (UTF-8,
msgpack on the wire: a 500). ``loads`` turns it into :class:`NotText`, also a ``ValueError``.
Only a document that could hold one (an escape or such a byte) has its strings looked at.
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


class NotText(ValueError):
    """A string in the document holds a lone surrogate: not Unicode text."""

    def __init__(self) -> None:
        super().__init__("JSON string is not valid Unicode (a lone surrogate)")


def _may_hold_surrogates(data: str | bytes | bytearray) -> bool:
    if isinstance(data, str):
        return "\\u" in data or not data.isascii()
    return b"\\u" in data or b"\xed" in data


def holds_lone_surrogate(value: Any) -> bool:
    """Whether a string anywhere in ``value`` (keys included) cannot be encoded as UTF-8."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
    """``json.loads`` that raises :class:`TooDeep` instead of recursing without bound, and
    :class:`NotText` for a string that is not Unicode text."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if depth_exceeds(value, max_depth):
        raise TooDeep(max_depth)
    if _may_hold_surrogates(data) and holds_lone_surrogate(value):
        raise NotText()
    return value
