"""What a retention policy would delete in one repository: a pure function of a snapshot.

zot's semantics (``pkg/retention``, ``pkg/storage/gc``), as shardreg applies them:

* the first policy whose ``repositories`` globs match applies; no match: keep everything;
* ``keepTags``: each tag belongs to the first entry whose ``patterns`` (regular expressions,
  searched anywhere in the tag; none = every tag) match it; a tag is kept when any rule of
  that entry keeps it (``mostRecentlyPushedCount``/``PulledCount`` over the tags of that
  entry, ``pushedWithin``, ``pulledWithin`` — which also keeps what was pushed within the
  window), or by its pattern alone when the entry has no rule. Tags no entry matches are
  deleted; tags without push statistics are kept; no ``keepTags`` at all: no tag is deleted;
* then, repeated until nothing changes: ``deleteReferrers`` deletes manifests whose
  ``subject`` is gone (and legacy cosign ``sha256-….sig`` tags of a gone image);
  ``deleteUntagged`` (the default of a matched policy) deletes manifests without a tag that
  no index still present lists and that have no subject, unless ``keepUntagged`` keeps them.
  Both only delete manifests older than ``delay``.

shardreg adds: tags matching ``storage.immutableTags`` are never deleted (nor the manifests
they point to), and what was pushed or pulled since the pass started is left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from common.config.lifecycle import ImmutableRule, KeepRules, RetentionPolicy, tag_is_immutable

_SIG_TAG = re.compile(r"^(sha256|sha512)-([a-f0-9]+)\.(sig|att|sbom)$")
_INDEXES = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}


@dataclass
class Snapshot:
    """One repository as the plan sees it."""

    repo: str
    tags: dict[str, str]
    #: digest → {mediaType, subject, children, created}
    manifests: dict[str, dict[str, Any]]
    #: digest → (push time or None when search metadata has none, last pull time or 0)
    stats: dict[str, tuple[float | None, float]]


@dataclass(frozen=True)
class Action:
    kind: str  # "tag" or "manifest"
    reference: str  # the tag, or the digest
    digest: str
    media_type: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"action": "deleteTag" if self.kind == "tag" else "deleteManifest", "reference": self.reference,
                "digest": self.digest, "mediaType": self.media_type, "reason": self.reason}


@dataclass
class Candidate:
    key: str  # tag or digest
    digest: str
    pushed: float
    pulled: float
    kept_by: list[str] = field(default_factory=list)


def _kept(rules: KeepRules, candidates: list[Candidate], now: float) -> set[str]:
    """The keys any rule keeps (OR between rules)."""
    kept: set[str] = set()
    if rules.most_recently_pulled:
        kept.update(c.key for c in sorted(candidates, key=lambda c: -c.pulled)[:rules.most_recently_pulled])
    if rules.most_recently_pushed:
        kept.update(c.key for c in sorted(candidates, key=lambda c: -c.pushed)[:rules.most_recently_pushed])
    if rules.pulled_within is not None:
        cutoff = now - rules.pulled_within
        kept.update(c.key for c in candidates if c.pulled > cutoff or c.pushed > cutoff)
    if rules.pushed_within is not None:
        cutoff = now - rules.pushed_within
        kept.update(c.key for c in candidates if c.pushed > cutoff)
    return kept


def _first_entry(policy: RetentionPolicy, tag: str) -> int | None:
    for i, entry in enumerate(policy.keep_tags):
        if not entry.patterns or any(re.search(p, tag) for p in entry.patterns):
            return i
    return None


def _tags_to_delete(snap: Snapshot, policy: RetentionPolicy, immutable: tuple[ImmutableRule, ...],
                    now: float) -> list[Action]:
    if not policy.keep_tags:
        return []
    groups: dict[int, list[Candidate]] = {}
    unmatched: list[str] = []
    for tag, digest in snap.tags.items():
        pushed, pulled = snap.stats.get(digest, (None, 0.0))
        if pushed is None or tag_is_immutable(immutable, snap.repo, tag):
            continue  # no statistics: keep (zot); immutable: keep
        entry = _first_entry(policy, tag)
        if entry is None:
            unmatched.append(tag)
        else:
            groups.setdefault(entry, []).append(Candidate(tag, digest, pushed, pulled))
    doomed = [(tag, "didn't meet any tag 'patterns' rules") for tag in unmatched]
    for entry, candidates in groups.items():
        rules = policy.keep_tags[entry]
        if not rules.has_rules:
            continue
        kept = _kept(rules, candidates, now)
        doomed += [(c.key, "didn't meet any tag retention rule") for c in candidates if c.key not in kept]
    return [Action("tag", tag, snap.tags[tag], snap.manifests.get(snap.tags[tag], {}).get("mediaType", ""), why)
            for tag, why in sorted(doomed)]


def plan(snap: Snapshot, policy: RetentionPolicy, immutable: tuple[ImmutableRule, ...], now: float,
         delay: float) -> list[Action]:
    """Everything ``policy`` deletes in ``snap`` (tags first, then manifests in deletion order)."""
    actions = _tags_to_delete(snap, policy, immutable, now)
    tags = {t: d for t, d in snap.tags.items() if t not in {a.reference for a in actions}}
    present = dict(snap.manifests)

    def old(digest: str) -> bool:
        pushed = snap.stats.get(digest, (None, 0.0))[0]
        return (pushed if pushed is not None else present[digest].get("created", 0.0)) < now - delay

    def drop(digest: str, why: str) -> None:
        for tag in [t for t, d in tags.items() if d == digest]:
            del tags[tag]
            actions.append(Action("tag", tag, digest, present[digest].get("mediaType", ""), why))
        actions.append(Action("manifest", digest, digest, present[digest].get("mediaType", ""), why))
        del present[digest]

    changed = True
    while changed:
        changed = False
        protected = {d for t, d in tags.items() if tag_is_immutable(immutable, snap.repo, t)}
        if policy.delete_referrers:
            for digest, record in list(present.items()):
                subject = record.get("subject")
                if subject and subject not in present and digest not in protected and old(digest):
                    drop(digest, "deleteReferrers")
                    changed = True
            for tag, digest in list(tags.items()):
                match = _SIG_TAG.match(tag)
                if (match and f"{match[1]}:{match[2]}" not in present and digest in present and old(digest)
                        and not tag_is_immutable(immutable, snap.repo, tag)):
                    drop(digest, "deleteReferrers")
                    changed = True
        if policy.delete_untagged:
            tagged = set(tags.values())
            referenced = {c for r in present.values() if r.get("mediaType") in _INDEXES for c in r.get("children") or []}
            untagged = [d for d, r in present.items()
                        if d not in tagged and d not in referenced and not r.get("subject")]
            retained: set[str] = set()
            if policy.keep_untagged is not None and policy.keep_untagged.has_rules:
                with_stats = [Candidate(d, d, snap.stats[d][0] or 0.0, snap.stats[d][1]) for d in untagged
                              if snap.stats.get(d, (None, 0.0))[0] is not None]
                retained = _kept(policy.keep_untagged, with_stats, now)
                retained |= {d for d in untagged if snap.stats.get(d, (None, 0.0))[0] is None}
            for digest in untagged:
                if digest not in retained and old(digest):
                    drop(digest, "deleteUntagged")
                    changed = True
    return actions
