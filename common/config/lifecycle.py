"""Storage lifecycle settings: ``storage.retention``, ``storage.immutableTags``,
``extensions.events``, ``extensions.lint`` and Distribution's ``notifications.endpoints``.

zot's formats are accepted unchanged (``examples/config-retention.json``,
``config-events.json``, ``config-lint.json``); ``storage.immutableTags`` is shardreg's own
and reads like a retention policy::

    "storage": {
      "retention": {"dryRun": false, "delay": "24h", "policies": [
          {"repositories": ["ci/**"], "deleteUntagged": true,
           "keepTags": [{"patterns": ["^v[0-9]"]}, {"mostRecentlyPushedCount": 10}]}]},
      "immutableTags": {"policies": [{"repositories": ["prod/**"], "patterns": ["v[0-9].*"]}]}},
    "extensions": {
      "events": {"enable": true, "sinks": [{"type": "http", "address": "http://hook:8080/ev"}]},
      "lint": {"enable": true, "mandatoryAnnotations": ["org.opencontainers.image.source"]}},
    "notifications": {"endpoints": [{"name": "ci", "url": "http://hook/notify", "timeout": "2s",
                                     "threshold": 5, "backoff": "1s"}]}

The sections are kept as the (validated) JSON they were read from, so a child process that
parses :meth:`LifecycleConfig.to_json` gets the same settings back.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from common.config.reader import ConfigError, Reader

#: Outbox bound when ``extensions.events.outboxSize`` is not set (events kept per shard).
DEFAULT_OUTBOX = 100_000
#: zot's sinks: the first retry's pause (it doubles up to 30 s).
FIRST_BACKOFF = 0.2


@dataclass(frozen=True)
class KeepRules:
    """``keepTags[i]`` (with ``patterns``) or ``keepUntagged``; unset rules are None/0.

    (Fields of the parsed items have no defaults: only the parser builds them.)"""

    patterns: tuple[str, ...]
    pulled_within: float | None
    pushed_within: float | None
    most_recently_pushed: int
    most_recently_pulled: int

    @property
    def has_rules(self) -> bool:
        return bool(self.pulled_within is not None or self.pushed_within is not None
                    or self.most_recently_pushed or self.most_recently_pulled)


@dataclass(frozen=True)
class RetentionPolicy:
    repositories: tuple[str, ...]
    delete_referrers: bool
    #: zot: a matched policy deletes untagged manifests unless it says ``false``.
    delete_untagged: bool
    keep_tags: tuple[KeepRules, ...]
    keep_untagged: KeepRules | None


@dataclass(frozen=True)
class Retention:
    dry_run: bool = False
    delay: float = 24 * 3600.0
    policies: tuple[RetentionPolicy, ...] = ()


@dataclass(frozen=True)
class ImmutableRule:
    repositories: tuple[str, ...]
    #: Regular expressions a whole tag must match.
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class Sink:
    """One delivery target: ``http`` or ``nats`` (zot's events), or ``notification`` (Distribution)."""

    type: str
    address: str
    name: str
    channel: str
    timeout: float
    headers: tuple[tuple[str, str], ...]
    username: str
    password: str
    token: str
    #: Distribution: failures before back-off, the back-off, media types not notified.
    threshold: int
    backoff: float
    ignored_media_types: tuple[str, ...]

    @property
    def label(self) -> str:
        """The sink's name in logs, metrics and its outbox cursor (never a password in the URL)."""
        address = re.sub(r"//[^/@]*@", "//", self.address)
        return self.name or f"{self.type}:{address}" + (f"#{self.channel}" if self.channel else "")


@dataclass(frozen=True)
class LifecycleConfig:
    retention: Retention = field(default_factory=Retention)
    immutable: tuple[ImmutableRule, ...] = ()
    lint_enabled: bool = False
    mandatory_annotations: tuple[str, ...] = ()
    sinks: tuple[Sink, ...] = ()
    outbox_size: int = DEFAULT_OUTBOX
    #: The sections as read: ``{"storage": {...}, "extensions": {...}, "notifications": {...}}``.
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def events_enabled(self) -> bool:
        return bool(self.sinks)

    def to_json(self) -> dict[str, Any]:
        return self.raw


def _regexes(r: Reader, name: str) -> tuple[str, ...]:
    patterns = r.strings(name)
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{r.key(name)}[{i}]: invalid regular expression: {exc}") from None
    return patterns


def _keep(r: Reader, with_patterns: bool) -> KeepRules:
    def within(name: str) -> float | None:
        return r.duration(name, 0.0) if r.has(name) else None

    rules = KeepRules(
        patterns=_regexes(r, "patterns") if with_patterns else (),
        pulled_within=within("pulledWithin"), pushed_within=within("pushedWithin"),
        most_recently_pushed=r.integer("mostRecentlyPushedCount", 0),
        most_recently_pulled=r.integer("mostRecentlyPulledCount", 0))
    if rules.most_recently_pushed < 0 or rules.most_recently_pulled < 0:
        raise r.error("mostRecentlyPushedCount", "counts must not be negative")
    r.finish()
    return rules


def _retention(r: Reader) -> Retention:
    policies = []
    for p in r.objects("policies"):
        repos = p.strings("repositories")
        if not repos:
            raise p.error("repositories", "at least one repository glob is needed")
        keep_untagged = p.optional("keepUntagged")
        policies.append(RetentionPolicy(
            repositories=repos, delete_referrers=p.flag("deleteReferrers", False),
            delete_untagged=p.flag("deleteUntagged", True),
            keep_tags=tuple(_keep(k, True) for k in p.objects("keepTags")),
            keep_untagged=None if keep_untagged is None else _keep(keep_untagged, False)))
        p.finish()
    retention = Retention(dry_run=r.flag("dryRun", False), delay=r.duration("delay", 24 * 3600.0),
                          policies=tuple(policies))
    r.finish()
    return retention


def _immutable(r: Reader) -> tuple[ImmutableRule, ...]:
    rules = []
    for p in r.objects("policies"):
        rule = ImmutableRule(repositories=p.strings("repositories") or ("**",), patterns=_regexes(p, "patterns"))
        if not rule.patterns:
            raise p.error("patterns", "at least one tag pattern is needed")
        rules.append(rule)
        p.finish()
    r.finish()
    return tuple(rules)


def _credentials(s: Reader) -> tuple[str, str, str]:
    c = s.optional("credentials")
    if c is None:
        return "", "", ""
    out = c.text("username", ""), c.text("password", ""), c.text("token", "")
    c.finish(zot_only=("file",))
    return out


def _headers(s: Reader) -> tuple[tuple[str, str], ...]:
    """zot's ``{name: value}``; Distribution's ``{name: [values]}``."""
    section = s.section("headers")
    out = []
    for name, value in section.data.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, str):
                raise section.error(name, "expected a string or a list of strings")
            out.append((name, v))
        section.skip(name)
    return tuple(out)


def _event_sinks(r: Reader) -> tuple[Sink, ...]:
    sinks = []
    for s in r.objects("sinks"):
        kind = s.text("type", "")
        if kind not in ("http", "nats"):
            raise s.error("type", f"{kind!r} is not a supported sink (http, nats)")
        address = s.text("address", "")
        if not address:
            raise s.error("address", "is required")
        user, password, token = _credentials(s)
        sinks.append(Sink(type=kind, address=address, name="", channel=s.text("channel", ""),
                          timeout=s.duration("timeout", 30.0), headers=_headers(s),
                          username=user, password=password, token=token, threshold=0, backoff=FIRST_BACKOFF,
                          ignored_media_types=()))
        if kind == "nats" and not sinks[-1].channel:
            raise s.error("channel", "a nats sink needs the subject to publish on")
        s.finish(zot_only=("proxy", "tls"))
    return tuple(sinks)


def _endpoints(r: Reader) -> tuple[Sink, ...]:
    sinks = []
    for e in r.objects("endpoints"):
        url = e.text("url", "")
        if not url.startswith(("http://", "https://")):
            raise e.error("url", "an http:// or https:// URL is required")
        if e.flag("disabled", False):
            e.finish(zot_only=("ignore", "queuepurgetimeout"))
            continue
        ignore = e.optional("ignore")
        ignored = ignore.strings("mediatypes") if ignore is not None else ()
        if ignore is not None:
            ignore.finish(zot_only=("actions",))
        sinks.append(Sink(type="notification", address=url, name=e.text("name", ""), channel="",
                          timeout=e.duration("timeout", 1.0), headers=_headers(e), username="", password="", token="",
                          threshold=e.integer("threshold", 0), backoff=e.duration("backoff", 1.0),
                          ignored_media_types=e.strings("ignoredmediatypes") + ignored))
        e.finish(zot_only=("queuepurgetimeout",))
    r.finish(zot_only=("events",))
    return tuple(sinks)


def parse_lifecycle(storage: Reader, extensions: Reader, top: Reader) -> LifecycleConfig:
    """Read the lifecycle keys out of their sections (before those sections are finished)."""
    raw: dict[str, Any] = {"storage": {}, "extensions": {}}
    retention = Retention()
    if (r := storage.optional("retention")) is not None:
        raw["storage"]["retention"] = r.data
        retention = _retention(r)
    immutable: tuple[ImmutableRule, ...] = ()
    if (i := storage.optional("immutableTags")) is not None:
        raw["storage"]["immutableTags"] = i.data
        immutable = _immutable(i)
    lint_enabled = False
    mandatory: tuple[str, ...] = ()
    if (lint := extensions.optional("lint")) is not None:
        raw["extensions"]["lint"] = lint.data
        lint_enabled = lint.flag("enable", True)
        mandatory = lint.strings("mandatoryAnnotations")
        lint.finish()
    sinks: tuple[Sink, ...] = ()
    outbox = DEFAULT_OUTBOX
    if (ev := extensions.optional("events")) is not None:
        raw["extensions"]["events"] = ev.data
        outbox = ev.integer("outboxSize", DEFAULT_OUTBOX)
        if outbox < 1:
            raise ev.error("outboxSize", "must be at least 1")
        found = _event_sinks(ev)
        if ev.flag("enable", True):
            sinks += found
        ev.finish()
    if (n := top.optional("notifications")) is not None:
        raw["notifications"] = n.data
        sinks += _endpoints(n)
    return LifecycleConfig(retention=retention, immutable=immutable, lint_enabled=lint_enabled,
                           mandatory_annotations=mandatory if lint_enabled else (), sinks=sinks,
                           outbox_size=outbox, raw=raw)


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A repository glob as zot reads it: ``*`` within one path segment, ``**`` across them."""
    parts, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append(r"(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(r".*")
            i += 2
        else:
            char = pattern[i]
            parts.append(r"[^/]*" if char == "*" else r"[^/]" if char == "?" else re.escape(char))
            i += 1
    return re.compile("".join(parts))


def repo_matches(globs: tuple[str, ...], repo: str) -> bool:
    return any(_glob_regex(g).fullmatch(repo) for g in globs)


def retention_policy(retention: Retention, repo: str) -> RetentionPolicy | None:
    """The first policy whose repositories match ``repo`` (zot: the first one applies)."""
    return next((p for p in retention.policies if repo_matches(p.repositories, repo)), None)


def tag_is_immutable(rules: tuple[ImmutableRule, ...], repo: str, tag: str) -> bool:
    return any(repo_matches(rule.repositories, repo) and any(re.fullmatch(p, tag) for p in rule.patterns)
               for rule in rules)
