"""``http.accessControl``: which actions an identity has on a repository.

Repository patterns are globs: ``*`` matches within one path level, ``**`` across levels,
``?`` one character. When several patterns match a repository the most specific wins: the
one with the most literal characters, then the fewest wildcards (so ``team-a/app`` beats
``team-a/**``, which beats ``**``). The rules of that pattern alone decide:

* a named user, or a member of a listed group, gets the union of the policies naming them,
  plus ``defaultPolicy`` (every authenticated user), plus the admin policy;
* an anonymous caller gets ``anonymousPolicy``.

Without any ``accessControl`` (but with authentication) every authenticated user may do
everything and anonymous callers nothing, as in zot. Without authentication at all, everyone
may do everything.
"""

from __future__ import annotations

from common.config import ACTIONS, AccessSettings, RepoRules
from common.readfilter import ReadFilter, glob_match

ALL_ACTIONS = frozenset(ACTIONS)
NONE: frozenset[str] = frozenset()


def _specificity(pattern: str) -> tuple[int, int]:
    literal = len(pattern.replace("*", "").replace("?", ""))
    return literal, -(pattern.count("*") + pattern.count("?"))


class PolicyEngine:
    def __init__(self, settings: AccessSettings, auth_enabled: bool) -> None:
        self.settings = settings
        self.auth_enabled = auth_enabled
        self.ordered = sorted(settings.repositories, key=lambda r: _specificity(r.pattern), reverse=True)
        self.user_groups: dict[str, frozenset[str]] = {}
        for group, users in settings.groups.items():
            for user in users:
                self.user_groups[user] = self.user_groups.get(user, NONE) | {group}

    @property
    def configured(self) -> bool:
        return self.settings.configured

    def groups_of(self, user: str) -> frozenset[str]:
        return self.user_groups.get(user, NONE)

    def rules_for(self, repo: str) -> RepoRules | None:
        for rules in self.ordered:
            if glob_match(rules.pattern, repo):
                return rules
        return None

    def is_admin(self, user: str | None, groups: frozenset[str]) -> bool:
        admin = self.settings.admin
        return user is not None and (user in admin.users or bool(groups & admin.groups))

    def actions(self, user: str | None, groups: frozenset[str], repo: str) -> frozenset[str]:
        """The actions ``user`` (None = anonymous) may take on ``repo``."""
        if not self.configured:
            if not self.auth_enabled or user is not None:
                return ALL_ACTIONS
            return NONE
        allowed: frozenset[str] = NONE
        if self.is_admin(user, groups):
            allowed = self.settings.admin.actions
        rules = self.rules_for(repo)
        if rules is None:
            return allowed
        if user is None:
            return allowed | rules.anonymous_policy
        allowed = allowed | rules.default_policy
        for policy in rules.policies:
            if user in policy.users or groups & policy.groups:
                allowed = allowed | policy.actions
        return allowed

    def read_rules(self, user: str | None, groups: frozenset[str]) -> ReadFilter | None:
        """The ``policy`` part of a :data:`common.readfilter.ReadFilter`: for each pattern, most
        specific first, whether it lets ``user`` read (what :meth:`actions` decides per name);
        None when the policy lets this caller read everything."""
        if not self.configured:
            return None if (not self.auth_enabled or user is not None) else {"rules": [], "otherwise": False}
        admin = self.is_admin(user, groups) and "read" in self.settings.admin.actions
        rules: list[tuple[str, bool]] = []
        for repo_rules in self.ordered:
            if user is None:
                reads = "read" in repo_rules.anonymous_policy
            else:
                reads = "read" in repo_rules.default_policy or any(
                    "read" in p.actions for p in repo_rules.policies if user in p.users or groups & p.groups)
            rules.append((repo_rules.pattern, admin or reads))
            if repo_rules.pattern.strip("*") == "":  # "*"-only matches every name at its level or all
                if repo_rules.pattern.count("*") >= 2:
                    break
        if all(reads for _, reads in rules) and (admin or (rules and rules[-1][0].strip("*") == ""
                                                           and rules[-1][0].count("*") >= 2)):
            return None
        return {"rules": [list(rule) for rule in rules], "otherwise": admin}

    def anonymous_anywhere(self) -> bool:
        """Whether an anonymous caller can do anything at all (then ``/v2/`` answers it 200)."""
        if not self.configured:
            return not self.auth_enabled
        return any(r.anonymous_policy for r in self.settings.repositories)
