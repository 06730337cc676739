"""Which repositories a caller may read, in a form a shard evaluates exactly as the gateway does.

The gateway's one decision point (``AccessControl.authorize``, :mod:`gateway.auth.access`) asks
the access policy per repository. A listing that the shards answer from their ordered indexes
(:mod:`shard.search_walk`) cannot ask the gateway per repository, so the gateway sends the
caller's read grant as a :data:`ReadFilter` (built by ``AccessControl.read_filter``) and each
shard applies :func:`may_read` to the names it walks. Both sides use :func:`glob_match`, the one
matcher of repository patterns (``gateway.auth.policy`` imports it from here). A test checks
that ``may_read`` equals ``authorize(..., "read")`` for a table of users and patterns.

A filter is a dict (it travels in msgpack)::

    {"all": True}                                   every repository
    {"grants": [names] | None,                      a token's repositories with "read" (None: no token)
     "policy": None | {                             None: the policy is not consulted
        "scopes": [globs] | None,                   an API key's scopes: one must match
        "rules": [[pattern, reads], ...],           most specific first: the first match decides
        "otherwise": bool}}                         no pattern matches (the admin policy's read)
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

ReadFilter = dict[str, Any]
EVERYTHING: ReadFilter = {"all": True}
NOTHING: ReadFilter = {"grants": [], "policy": None}


@lru_cache(maxsize=1024)
def _glob_re(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            # "a/**" also matches "a/b/c"; "**/x" matches "x" and "a/b/x"
            if pattern.startswith("**/", i):
                out.append(r"(?:.*/)?")
                i += 3
                continue
            out.append(r".*")
            i += 2
        elif pattern[i] == "*":
            out.append(r"[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append(r"[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def glob_match(pattern: str, name: str) -> bool:
    """Whether repository ``name`` matches the access-control glob ``pattern``."""
    return _glob_re(pattern).fullmatch(name) is not None


def reads_everything(flt: ReadFilter) -> bool:
    return bool(flt.get("all"))


def may_read(flt: ReadFilter, repo: str) -> bool:
    """Whether the caller the filter was built for may read ``repo``."""
    if flt.get("all"):
        return True
    grants = flt.get("grants")
    if grants is not None and repo not in grants:
        return False
    policy = flt.get("policy")
    if policy is None:
        return True
    scopes = policy.get("scopes")
    if scopes is not None and not any(glob_match(s, repo) for s in scopes):
        return False
    for pattern, reads in policy.get("rules") or ():
        if glob_match(pattern, repo):
            return bool(reads)
    return bool(policy.get("otherwise"))


def _literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard: every name it matches starts with it."""
    cut = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=len(pattern))
    return pattern[:cut]


def name_prefixes(flt: ReadFilter) -> list[str] | None:
    """Prefixes that every repository the caller may read starts with (None: any name may be), so
    that a shard can count or rank the readable names by walking only those ranges of its index;
    each name found there is still checked with :func:`may_read`. Sorted, none inside another."""
    if flt.get("all"):
        return None
    grants, policy = flt.get("grants"), flt.get("policy")
    if grants is not None:
        found = list(grants)
    elif policy is None:
        return None
    elif policy.get("scopes") is not None:
        found = [_literal_prefix(s) for s in policy["scopes"]]
    elif not policy.get("otherwise"):  # only a rule that reads lets a name be read
        found = [_literal_prefix(pattern) for pattern, reads in policy.get("rules") or () if reads]
    else:
        return None
    kept: list[str] = []
    for prefix in sorted(set(found)):
        if not kept or not prefix.startswith(kept[-1]):
            kept.append(prefix)
    return None if kept[:1] == [""] else kept


class Reader:
    """:func:`may_read` with the grants as a set (a shard checks many names against one filter)."""

    def __init__(self, flt: ReadFilter) -> None:
        self.flt = flt
        self.everything = bool(flt.get("all"))
        grants = flt.get("grants")
        self.grants = None if grants is None else frozenset(grants)

    def __call__(self, repo: str) -> bool:
        if self.everything:
            return True
        if self.grants is not None and repo not in self.grants:
            return False
        if self.flt.get("policy") is None:
            return True
        return may_read({"policy": self.flt["policy"]}, repo)
