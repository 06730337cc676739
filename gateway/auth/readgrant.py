"""What ``AccessControl.can_read`` decides, for every repository name at once (issue 17).

A sorted search listing is answered by the shards from their ordered indexes; they drop what
the caller may not read themselves, with :func:`common.readfilter.may_read` on the filter built
here. It mirrors ``AccessControl.actions`` step by step (authentication off, a token's grants,
an API key's scopes, the policy's most specific pattern, the admin policy), and
``tests/extensions/test_search_index_access.py`` checks the two agree on a table of callers.
"""

from __future__ import annotations

from common.readfilter import EVERYTHING, ReadFilter
from gateway.auth.access import AccessControl
from gateway.auth.identity import Identity
from gateway.auth.policy import NONE


def read_filter(access: AccessControl, identity: Identity) -> ReadFilter:
    """The repositories ``identity`` may read, as a shard evaluates them."""
    if not access.enabled:
        policy = access.policy.read_rules(None, NONE) if access.policy.configured else None
        return EVERYTHING if policy is None else {"grants": None, "policy": policy}
    if identity.via == "bearer":
        grants = sorted(repo for repo, acts in (identity.grants or {}).items() if "read" in acts)
        return {"grants": grants, "policy": _policy(access, identity) if identity.issued_here else None}
    policy = _policy(access, identity)
    return EVERYTHING if policy is None else {"grants": None, "policy": policy}


def _policy(access: AccessControl, identity: Identity) -> ReadFilter | None:
    rules = access.policy.read_rules(identity.name or None, identity.groups)
    if identity.scopes is None:
        return rules
    return {**(rules or {"rules": [], "otherwise": True}), "scopes": list(identity.scopes)}
