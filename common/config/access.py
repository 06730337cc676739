"""``http.accessControl`` (who may do what on which repository) and ``http.ratelimit``.

``accessControl`` follows zot: ``repositories`` maps a glob to ``policies`` (users/groups →
actions), ``defaultPolicy`` (any authenticated user) and ``anonymousPolicy``; ``groups`` names
sets of users; ``adminPolicy`` names the admins; ``metrics`` says who may scrape ``/metrics``.
``ratelimit`` is requests per second per client: ``rate``, and ``methods: [{method, rate}]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common.config.reader import Reader

ACTIONS = ("read", "create", "update", "delete")
#: zot's action that shardreg accepts and ignores (it never overwrites a manifest silently).
_IGNORED_ACTIONS = {"detectManifestCollision"}


@dataclass(frozen=True)
class Policy:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"users": sorted(self.users), "groups": sorted(self.groups), "actions": sorted(self.actions)}


@dataclass(frozen=True)
class RepoRules:
    pattern: str
    policies: tuple[Policy, ...] = ()
    default_policy: frozenset[str] = frozenset()
    anonymous_policy: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"policies": [p.to_json() for p in self.policies], "defaultPolicy": sorted(self.default_policy),
                "anonymousPolicy": sorted(self.anonymous_policy)}


@dataclass(frozen=True)
class MetricsAccess:
    """``http.accessControl.metrics``: who may scrape the gateway's ``/metrics``."""

    users: frozenset[str] = frozenset()
    #: ``anonymousPolicy`` contains ``read``.
    anonymous_read: bool = False


@dataclass(frozen=True)
class AccessSettings:
    repositories: tuple[RepoRules, ...] = ()
    admin: Policy = Policy()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> users
    metrics: MetricsAccess = MetricsAccess()
    #: The section is in the config and not empty (zot then limits ``/metrics`` to ``metrics.users``).
    present: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.repositories or self.admin.actions)

    def to_json(self) -> dict[str, Any]:
        """The section in the config format (empty when it was not configured)."""
        if not self.present:
            return {}
        return {"repositories": {rules.pattern: rules.to_json() for rules in self.repositories},
                "groups": {name: {"users": sorted(users)} for name, users in self.groups.items()},
                "adminPolicy": self.admin.to_json(),
                "metrics": {"users": sorted(self.metrics.users),
                            "anonymousPolicy": ["read"] if self.metrics.anonymous_read else []}}


@dataclass(frozen=True)
class RateLimit:
    rate: float | None = None
    methods: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"methods": [{"method": m, "rate": rate} for m, rate in self.methods.items()]}
        if self.rate is not None:
            out["rate"] = self.rate
        return out if self.rate is not None or self.methods else {}


def _actions(r: Reader, name: str) -> frozenset[str]:
    actions = set(r.strings(name))
    unknown = actions - set(ACTIONS) - _IGNORED_ACTIONS
    if unknown:
        raise r.error(name, f"unknown actions {sorted(unknown)} (use {', '.join(ACTIONS)})")
    return frozenset(actions & set(ACTIONS))


def _policy(r: Reader) -> Policy:
    return Policy(users=frozenset(r.strings("users")), groups=frozenset(r.strings("groups")),
                  actions=_actions(r, "actions"))


def parse_access(r: Reader) -> AccessSettings:
    """``http.accessControl``; keys zot has and shardreg does not are reported."""
    repos = []
    for pattern, rules in r.members("repositories"):
        policies = rules.objects("policies")
        for p in policies:
            if p.peek("conditions"):
                rules.warn("policies.conditions", "CEL conditions are not supported, ignored")
        repos.append(RepoRules(pattern=pattern, policies=tuple(_policy(p) for p in policies),
                               default_policy=_actions(rules, "defaultPolicy"),
                               anonymous_policy=_actions(rules, "anonymousPolicy")))
    groups = {name: frozenset(g.strings("users")) for name, g in r.members("groups")}
    admin = _policy(r.section("adminPolicy")) if r.peek("adminPolicy") else Policy()
    r.skip("adminPolicy")
    m = r.section("metrics")
    metrics = MetricsAccess(users=frozenset(m.strings("users")), anonymous_read="read" in m.strings("anonymousPolicy"))
    settings = AccessSettings(repositories=tuple(repos), admin=admin, groups=groups, metrics=metrics,
                              present=r.present)
    r.finish(unknown="not supported by shardreg, ignored")
    return settings


def parse_ratelimit(r: Reader) -> RateLimit:
    """``http.ratelimit``: requests per second per client, optionally per method."""

    def rate(item: Reader) -> float | None:
        value = item.number("rate")
        if value is not None and value <= 0:
            raise item.error("rate", "expected a positive number of requests per second")
        return value

    methods = {}
    for item in r.objects("methods"):
        method = item.string("method")
        if method is None:
            raise item.error("method", "expected a string")
        value = rate(item)
        if value is None:
            raise item.error("rate", "expected a positive number of requests per second")
        methods[method.upper()] = value
    return RateLimit(rate=rate(r), methods=methods)
