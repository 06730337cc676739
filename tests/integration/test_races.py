"""Concurrent requests on the same content: uploads, mounts and deletes of one digest race;
whatever the registry then says exists must be readable whole."""

from __future__ import annotations

import os
import threading

import httpx

from tests.oci import digest

BLOB = os.urandom(300_000)


def test_same_digest_pushed_mounted_and_deleted_concurrently(cluster):
    d = digest(BLOB)
    repos = [f"races/r{i}" for i in range(4)]
    errors: list[str] = []

    def worker(n: int) -> None:
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            for i in range(15):
                repo = repos[(n + i) % len(repos)]
                action = (n + i) % 3
                if action == 0:
                    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": d}, content=BLOB)
                    ok = r.status_code == 201
                elif action == 1:
                    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": d, "from": repos[(n + i + 1) % 4]})
                    ok = r.status_code in (201, 202)
                else:
                    r = client.delete(f"/v2/{repo}/blobs/{d}")
                    ok = r.status_code in (202, 404)
                if not ok:
                    errors.append(f"{action} {repo}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:5]
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        for repo in repos:
            if client.head(f"/v2/{repo}/blobs/{d}").status_code == 200:
                r = client.get(f"/v2/{repo}/blobs/{d}")
                assert r.status_code == 200 and r.content == BLOB, repo
        # a final push always works and reads back whole
        assert client.post(f"/v2/{repos[0]}/blobs/uploads/", params={"digest": d}, content=BLOB).status_code == 201
        assert client.get(f"/v2/{repos[0]}/blobs/{d}").content == BLOB


def test_concurrent_tag_overwrites_leave_one_valid_manifest(cluster):
    from tests.oci import push_image

    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        bodies = {}
        lock = threading.Lock()

        def push(n: int) -> None:
            with httpx.Client(base_url=cluster.url, timeout=60) as c:
                md, body = push_image(c, "races/tags", "latest")
                with lock:
                    bodies[md] = body

        threads = [threading.Thread(target=push, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        r = client.get("/v2/races/tags/manifests/latest")
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] in bodies
        assert r.content == bodies[r.headers["Docker-Content-Digest"]]
        for md in bodies:
            assert client.get(f"/v2/races/tags/manifests/{md}").status_code == 200
