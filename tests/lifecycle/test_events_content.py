"""Event content: CloudEvents 1.0 structured JSON with zot's types and fields, and Distribution's
envelope, delivered to a real aiohttp receiver by an in-process registry."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from tests.cluster import free_port
from tests.inprocess import InProcessRegistry
from tests.lifecycle.receiver import Receiver
from tests.oci import OCI_MANIFEST, image_manifest, push_blob

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[httpx.Client, Receiver]]:
    receiver = Receiver(free_port()).start()
    base = f"http://127.0.0.1:{receiver.port}"
    config = {
        "extensions": {
            "events": {"enable": True, "sinks": [{"type": "http", "address": f"{base}/zot", "timeout": "5s",
                                                  "headers": {"X-Sink": "zot"},
                                                  "credentials": {"username": "hook", "password": "s3cret"}}]},
            "lint": {"enable": True, "mandatoryAnnotations": ["org.example.owner"]},
            "metrics": {"enable": True},
        },
        "notifications": {"endpoints": [{"name": "dist", "url": f"{base}/dist", "timeout": "2s", "threshold": 3,
                                         "backoff": "1s", "headers": {"Authorization": ["Bearer dist-token"]},
                                         "ignoredmediatypes": ["application/vnd.test.ignored+json"]}]},
    }
    with InProcessRegistry(config=config) as registry, registry.client(headers={"User-Agent": "events-test/1"}) as c:
        yield c, receiver
    receiver.stop()


def _push(c: httpx.Client, repo: str, tag: str, annotations: dict[str, str]) -> tuple[str, bytes]:
    config, layer = json.dumps({"os": "linux", "tag": tag}).encode(), tag.encode() * 8
    push_blob(c, repo, config)
    push_blob(c, repo, layer)
    body = image_manifest(config, [layer], annotations=annotations)
    r = c.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    return r.headers.get("Docker-Content-Digest", ""), body


def _events(receiver: Receiver, path: str) -> list[tuple[dict[str, str], bytes]]:
    return [(h, b) for p, h, b in receiver.received if p == path]


def test_push_delete_and_lint_failure_events(setup: tuple[httpx.Client, Receiver]) -> None:
    c, receiver = setup
    digest, body = _push(c, "events/app", "v1", {"org.example.owner": "team"})
    assert digest
    assert _push(c, "events/app", "bad", {})[0] == ""  # refused by lint
    assert c.delete("/v2/events/app/manifests/v1").status_code == 202
    receiver.wait_for(lambda got: sum(p == "/zot" for p, _, _ in got) >= 4)
    zot = _events(receiver, "/zot")
    kinds = [json.loads(b)["type"] for _, b in zot]
    assert kinds == ["zotregistry.repository.created", "zotregistry.image.updated",
                     "zotregistry.image.lint_failed", "zotregistry.image.deleted"]
    for headers, raw in zot:
        assert headers["Content-Type"].startswith("application/cloudevents+json")
        assert headers["X-Sink"] == "zot" and headers["Authorization"] == "Basic aG9vazpzM2NyZXQ="
        # the CloudEvents SDK reads it back as a valid 1.0 event
        event = from_structured(HTTPMessage(headers={"content-type": headers["Content-Type"]}, body=raw), JSONFormat())
        assert event.get_specversion() == "1.0" and event.get_source() == "zotregistry.dev"
        assert event.get_id() and event.get_time() is not None
    updated = json.loads(zot[1][1])["data"]
    assert updated["name"] == "events/app" and updated["reference"] == "v1" and updated["digest"] == digest
    assert updated["mediaType"] == OCI_MANIFEST and json.loads(updated["manifest"]) == json.loads(body)
    assert "actor" not in updated  # an anonymous push names no actor
    assert updated["request"]["useragent"] == "events-test/1" and updated["request"]["method"] == "PUT"
    assert updated["request"]["addr"] == "127.0.0.1"
    deleted = json.loads(zot[3][1])["data"]
    assert deleted["reference"] == "v1" and deleted["digest"] == digest and deleted["request"]["method"] == "DELETE"

    receiver.wait_for(lambda got: sum(p == "/dist" for p, _, _ in got) >= 2)
    dist = _events(receiver, "/dist")
    assert all(h["Content-Type"] == "application/vnd.docker.distribution.events.v1+json" for h, _ in dist)
    assert all(h["Authorization"] == "Bearer dist-token" for h, _ in dist)
    push, delete = (json.loads(b)["events"][0] for _, b in dist)
    assert push["action"] == "push" and push["target"]["repository"] == "events/app"
    assert push["target"]["digest"] == digest and push["target"]["tag"] == "v1"
    assert push["target"]["mediaType"] == OCI_MANIFEST and push["target"]["size"] == len(body)
    assert push["request"]["useragent"] == "events-test/1"
    assert delete["action"] == "delete" and delete["target"]["digest"] == digest


def test_metrics_per_sink(setup: tuple[httpx.Client, Receiver]) -> None:
    c, receiver = setup
    _push(c, "events/metrics", "v1", {"org.example.owner": "team"})
    receiver.wait_for(lambda got: any(b"events/metrics" in b for _, _, b in got))
    text = c.get("/metrics").text
    assert 'shardreg_events_sent_total{' in text and 'sink="dist"' in text
    assert "shardreg_events_queue_length" in text and "shardreg_events_delivery_seconds" in text


def test_full_outbox_drops_the_oldest_says_so_and_never_fails_a_push(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"  # nothing listens: every event waits
    config = {"extensions": {"events": {"outboxSize": 3, "sinks": [{"type": "http", "address": dead, "timeout": "1s"}]},
                             "metrics": {"enable": True}}}
    with caplog.at_level("ERROR", logger="shardreg.shard.events"), \
            InProcessRegistry(config=config, shards=1) as registry, registry.client() as c:
        for i in range(4):
            assert _push(c, "full/app", f"v{i}", {})[0], "pushes never fail because of the outbox"
        text = c.get("/metrics").text
    assert "event outbox full (3 events)" in caplog.text and "extensions.events.outboxSize" in caplog.text
    dropped = [line for line in text.splitlines() if line.startswith("shardreg_events_dropped_total")]
    assert dropped and float(dropped[0].split()[-1]) >= 2  # 5 events (created + 4 updated) into 3 places
    queued = [line for line in text.splitlines() if line.startswith("shardreg_events_queue_length")]
    assert queued and float(queued[0].split()[-1]) <= 3
