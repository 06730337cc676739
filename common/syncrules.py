"""The content rules of ``extensions.sync``, as zot applies them (pure functions).

* ``prefix`` is a glob over upstream repository names (``*`` within one path segment, ``**``
  across segments, ``?``, ``[...]``, ``{a,b}``), a leading ``/`` ignored.
* an upstream repository ``r`` is stored locally as ``destination/r``, or with ``stripPrefix``
  as ``destination/`` + ``r`` without the prefix's literal part (the prefix with its ``/`` and
  ``*`` trimmed).
* on demand, a local name is mapped back to its upstream name by the inverse, and the rule
  applies only if that upstream name matches the prefix and maps to the same local name.
* a registry without content rules pulls every repository through, under the same name.
"""

from __future__ import annotations

import re
from functools import lru_cache

from common.config.sync import SyncConfig, SyncContent, SyncRegistry, TagFilter

_SEMVER = re.compile(r"^v?\d+(\.\d+)?(\.\d+)?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append("(?:" + "|".join(re.escape(x) for x in pattern[i + 1:end].split(",")) + ")")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def glob_match(pattern: str, name: str) -> bool:
    return _glob(pattern).fullmatch(name) is not None


def _prefix(content: SyncContent) -> str:
    return content.prefix[1:] if content.prefix.startswith("/") else content.prefix


def matches(content: SyncContent, remote: str) -> bool:
    return glob_match(_prefix(content), remote)


def destination(content: SyncContent, remote: str) -> str:
    """The local name of upstream repository ``remote`` under ``content``."""
    remote = remote.strip("/")
    if content.strip_prefix:
        literal = content.prefix.strip("/*")
        if remote.startswith(literal):
            remote = remote[len(literal):]
        remote = remote.strip("/")
    return "/".join(p for p in (content.destination.strip("/"), remote) if p)


def source(content: SyncContent, local: str) -> str:
    """The upstream name of local repository ``local`` under ``content`` (the inverse of :func:`destination`)."""
    local = local.strip("/")
    dest = content.destination.strip("/")
    if dest:
        if not (local == dest or local.startswith(dest + "/")):
            return ""
        local = local[len(dest):].strip("/")
    if content.strip_prefix:
        local = "/".join(p for p in (content.prefix.strip("/*"), local) if p)
    return local


def remote_of(registry: SyncRegistry, local: str) -> tuple[str, SyncContent | None] | None:
    """The upstream name of ``local`` on ``registry`` and the rule that maps it, or None."""
    if not registry.content:
        return local, None
    for content in registry.content:
        remote = source(content, local)
        if remote and matches(content, remote) and destination(content, remote) == local:
            return remote, content
    return None


def on_demand(config: SyncConfig, local: str) -> tuple[int, str] | None:
    """Which on-demand registry serves local repository ``local`` (its index) and the upstream name."""
    if not config.active:
        return None
    for i, registry in enumerate(config.registries):
        if registry.on_demand:
            found = remote_of(registry, local)
            if found is not None:
                return i, found[0]
    return None


def is_semver(tag: str) -> bool:
    return _SEMVER.match(tag) is not None


def filter_tags(tags: list[str], rule: TagFilter | None) -> list[str]:
    """The tags a content rule keeps (zot: regex, then excludeRegex, then semver; regexes search)."""
    if rule is None:
        return tags
    if rule.regex:
        keep = re.compile(rule.regex)
        tags = [t for t in tags if keep.search(t)]
    if rule.exclude_regex:
        drop = re.compile(rule.exclude_regex)
        tags = [t for t in tags if not drop.search(t)]
    if rule.semver:
        tags = [t for t in tags if is_semver(t)]
    return tags
