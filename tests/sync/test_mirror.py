"""Periodic mirroring from Distribution: prefix/destination/stripPrefix, tag filters, signatures, onlySigned,
each repository synced by its own shard only."""

from __future__ import annotations

import json
import time

import httpx

from tests import oci
from tests.sync.conftest import TwoGateways
from tests.sync.upstreams import Distribution, push_blob, push_image, wait_for

SIGNATURE = "application/vnd.cncf.notary.signature"
EMPTY = "application/vnd.oci.empty.v1+json"


def local_tags(url: str, repo: str) -> list[str] | None:
    r = httpx.get(f"{url}/v2/{repo}/tags/list")
    return r.json()["tags"] if r.status_code == 200 else None


def sign(client: httpx.Client, repo: str, subject: str, size: int) -> str:
    """An OCI 1.1 signature referrer of ``subject``, and the referrers fallback tag (Distribution 2.8
    has no referrers API)."""
    push_blob(client, repo, b"{}")
    payload = b"signature-" + subject.encode()
    push_blob(client, repo, payload)
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST, "artifactType": SIGNATURE,
                       "config": {"mediaType": EMPTY, "digest": oci.digest(b"{}"), "size": 2},
                       "layers": [oci.descriptor(payload, "application/jose+json")],
                       "subject": {"mediaType": oci.OCI_MANIFEST, "digest": subject, "size": size}}).encode()
    r = client.put(f"/v2/{repo}/manifests/{oci.digest(body)}", content=body, headers={"Content-Type": oci.OCI_MANIFEST})
    assert r.status_code == 201, r.text
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
        oci.descriptor(body, oci.OCI_MANIFEST, artifactType=SIGNATURE)]}).encode()
    r = client.put(f"/v2/{repo}/manifests/{subject.replace(':', '-')}", content=index,
                   headers={"Content-Type": oci.OCI_INDEX})
    assert r.status_code == 201, r.text
    return oci.digest(body)


def test_mirroring_with_destination_strip_prefix_and_tag_filters(upstream: Distribution, pulled: TwoGateways) -> None:
    mark = upstream.mark()
    with httpx.Client(base_url=upstream.url) as client:
        images = {tag: push_image(client, "mirror/src/app", tag) for tag in
                  ("v1.0.0", "v2.0.0", "v1.1.0-rc", "latest", "v-nightly")}
        tool, _, _ = push_image(client, "mirror/src/team/tool", "v3.1")
        push_image(client, "mirror/plain/x", "one")
        push_image(client, "mirror/plain/deep/x", "one")
    url = pulled.cluster.url
    wait_for(lambda: local_tags(url, "copies/app") == ["v1.0.0", "v2.0.0"], timeout=60)
    wait_for(lambda: local_tags(url, "copies/team/tool") == ["v3.1"], timeout=60)
    wait_for(lambda: local_tags(url, "mirror/plain/x") == ["one"], timeout=60)
    assert local_tags(url, "mirror/plain/deep/x") is None  # "mirror/plain/*" is one segment
    assert local_tags(url, "mirror/src/app") is None  # stored under its destination only
    # everything an image names was fetched before its tag was written: served with no upstream request
    digest, body, blobs = images["v2.0.0"]
    before = upstream.mark()
    r = httpx.get(f"{url}/v2/copies/app/manifests/v2.0.0", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200 and r.content == body
    for blob in blobs:
        assert httpx.get(f"{pulled.second_url}/v2/copies/app/blobs/{oci.digest(blob)}").content == blob
    assert httpx.get(f"{url}/v2/copies/team/tool/manifests/{tool}").status_code == 200
    # a few passes later: each shard synced only its own repositories, each manifest and blob once
    passes = httpx.get(f"{url}/v2/_zot/ext/mgmt", params={"resource": "sync"}).json()
    time.sleep(2.2)
    requests = upstream.requests(mark)
    gets = {path: n for (method, path, status), n in requests.items()
            if method == "GET" and status == 200 and "/mirror/src/app/" in path and "/tags/" not in path}
    assert gets and all(n == 1 for n in gets.values()), gets
    kept = {oci.digest(b) for tag in ("v1.0.0", "v2.0.0") for b in images[tag][2]}
    assert {p.rsplit("/", 1)[1] for p in gets if "/blobs/" in p} == kept
    assert not any(method == "GET" and "/v2/mirror/src/app/" in path and "/tags/" not in path
                   for (method, path, _) in upstream.requests(before))
    entries = [r for r in passes["registries"] if r["periodic"]]
    assert entries and all(r["lastMirrorAt"] > 0 for r in entries)


def test_moved_tag_is_mirrored(upstream: Distribution, pulled: TwoGateways) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        first, _, _ = push_image(client, "mirror/plain/moving", "v1")
        wait_for(lambda: local_tags(pulled.cluster.url, "mirror/plain/moving") == ["v1"], timeout=60)
        second, _, _ = push_image(client, "mirror/plain/moving", "v1")

    def moved() -> bool:
        r = httpx.head(f"{pulled.cluster.url}/v2/mirror/plain/moving/manifests/v1", headers={"Accept": oci.OCI_MANIFEST})
        return r.headers.get("Docker-Content-Digest") == second
    wait_for(moved, timeout=60)


def test_signatures_come_with_the_image_and_only_signed_images_are_mirrored(upstream: Distribution,
                                                                          pulled: TwoGateways) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        signed, body, _ = push_image(client, "mirror/signed/app", "v1")
        signature = sign(client, "mirror/signed/app", signed, len(body))
        push_image(client, "mirror/signed/plain", "v1")
        cosigned, _, _ = push_image(client, "mirror/signed/cosigned", "v1")
        push_image(client, "mirror/signed/cosigned", cosigned.replace(":", "-") + ".sig")
    url = pulled.cluster.url
    wait_for(lambda: local_tags(url, "mirror/signed/app") == ["v1"], timeout=60)
    referrers = httpx.get(f"{url}/v2/mirror/signed/app/referrers/{signed}").json()
    assert [d["digest"] for d in referrers["manifests"]] == [signature]
    assert referrers["manifests"][0]["artifactType"] == SIGNATURE
    r = httpx.get(f"{url}/v2/mirror/signed/app/manifests/{signature}", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200 and r.json()["subject"]["digest"] == signed
    wait_for(lambda: local_tags(url, "mirror/signed/cosigned") == sorted(
        ["v1", cosigned.replace(":", "-") + ".sig"]), timeout=60)
    time.sleep(1.5)  # a pass later, still nothing of the unsigned image
    assert local_tags(url, "mirror/signed/plain") is None
