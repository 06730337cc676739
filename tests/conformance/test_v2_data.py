"""Redesigned suite, data-driven part (run.go TestAll: push → list → head → pull → referrers → delete)
for every data set, with sha256 and with sha512 digests.

Tags of manifests whose digest is not sha256 are pushed with ``?tag=`` on the by-digest PUT
(the suite: "non-canonical digests require tag parameters to push tags").
"""

from __future__ import annotations

import itertools

import pytest

from tests.conformance.ociapi import Api, Checks
from tests.conformance.testdata import FIXED, GENERIC, DataSet, build

CASES = [(name, algo) for algo in ("sha256", "sha512") for name in GENERIC] + FIXED


def push(api: Api, repo: str, td: DataSet, pushed: set[str]) -> None:
    # blobs: rotate over the four push forms, as the suite's TestPushBlobAny spreads them
    forms = itertools.cycle(["post+put", "post only", "stream", "chunked"])
    for dig, data in td.blobs.items():
        form = next(forms)
        if form == "post+put":
            api.blob_post_put(repo, dig, data)
        elif form == "post only":
            api.blob_post_only(repo, dig, data)
        elif form == "stream":
            api.blob_patch_stream(repo, dig, data)
        else:
            api.blob_patch_chunked(repo, dig, data)
    by_param = td.tag_param or td.algo != "sha256"
    for dig in td.man_order:
        tags = [t for t, d in td.tags.items() if d == dig] if by_param else []
        r = api.manifest_put(repo, dig, dig, td.manifests[dig], bad=dig in td.bad_digest, tags=tags)
        if r is not None and r.status_code == 201:
            accepted = {t.strip() for v in r.headers.get_list("OCI-Tag") for t in v.split(",")}
            pushed.update(t for t in tags if t in accepted)
    for tag, dig in td.tags.items():
        if tag in pushed:
            continue
        if api.manifest_put(repo, tag, dig, td.manifests[dig]) is not None:
            pushed.add(tag)


def list_tags(api: Api, k: Checks, repo: str, td: DataSet) -> None:
    tags, _ = api.tag_list(repo)
    if tags is None:
        return
    for tag in td.tags:
        k.check(tag in tags, f"tag list: missing tag {tag!r} from {tags}")
    if len(tags) >= 2:
        ordered = sorted(tags)
        end = len(ordered) // 2
        last = ordered[end - 1]
        partial, _ = api.tag_list(repo, last=last)
        if partial is None:
            return
        for tag in ordered[:end]:
            k.check(tag not in partial, f"tag list ?last={last}: {tag!r} returned")
        for tag in ordered[end:]:
            k.check(tag in partial, f"tag list ?last={last}: {tag!r} missing from {partial}")


def same(entry: dict, goal: dict) -> bool:
    return (entry.get("digest") == goal["digest"] and entry.get("mediaType") == goal["mediaType"]
            and entry.get("size") == goal["size"]
            and entry.get("artifactType", "") == goal.get("artifactType", "")
            and all((entry.get("annotations") or {}).get(a) == v for a, v in (goal.get("annotations") or {}).items()))


def referrers(api: Api, k: Checks, repo: str, td: DataSet) -> None:
    for subject, goals in td.referrers.items():
        doc, _ = api.referrers(repo, subject)
        if doc is not None:
            for goal in goals:
                k.check(any(same(e, goal) for e in doc["manifests"]),
                        f"referrers {subject[:19]}: entry missing {goal} in {doc['manifests']}")
        for at in sorted({g.get("artifactType", "") for g in goals}):
            doc, r = api.referrers(repo, subject, artifact_type=at)
            if doc is None:
                continue
            applied = [f.strip() for f in r.headers.get("OCI-Filters-Applied", "").split(",")]
            filtered = k.check("artifactType" in applied,
                               f"referrers ?artifactType={at}: OCI-Filters-Applied: artifactType missing "
                               f"(got {r.headers.get('OCI-Filters-Applied')!r})")
            for goal in goals:
                if (not filtered or goal.get("artifactType", "") == at) and \
                        not any(same(e, goal) for e in doc["manifests"]):
                    k.fail(f"referrers ?artifactType={at}: entry missing {goal}")
            if filtered:
                for e in doc["manifests"]:
                    k.check(e.get("artifactType", "") == at, f"referrers ?artifactType={at}: unexpected entry {e}")


@pytest.mark.parametrize(("name", "algo"), CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_data_set(http, repos, name, algo):
    k = Checks()
    api = Api(http, k)
    repo = repos[0]
    td = build(name, algo)
    pushed: set[str] = set()
    push(api, repo, td, pushed)
    list_tags(api, k, repo, td)
    pullable = [d for d in td.man_order if d not in td.bad_digest]
    # head, then pull: tags, manifests by digest, blobs
    for tag in td.tags:
        api.manifest_head(repo, tag, td.tags[tag], td.manifests[td.tags[tag]])
    for dig in pullable:
        api.manifest_head(repo, dig, dig, td.manifests[dig])
    for dig, data in td.blobs.items():
        api.blob_head(repo, dig, data)
    for tag in td.tags:
        api.manifest_get(repo, tag, td.tags[tag], td.manifests[td.tags[tag]])
    for dig in pullable:
        api.manifest_get(repo, dig, dig, td.manifests[dig])
    for dig, data in td.blobs.items():
        api.blob_get(repo, dig, data)
    referrers(api, k, repo, td)
    # delete: tags, manifests (parents first), blobs; each followed by HEAD → 404
    for tag in td.tags:
        if tag in pushed:
            api.manifest_delete(repo, tag)
    for dig in reversed(td.man_order):
        api.manifest_delete(repo, dig)
    for dig in td.blobs:
        api.blob_delete(repo, dig)
    k.done()
