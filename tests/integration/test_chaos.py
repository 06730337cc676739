"""Crash safety under load: pushes run while shards and the gateway are killed with SIGKILL.

Whatever the registry acknowledged (a 201 for a manifest) must afterwards be pullable, byte for
byte, with every blob it references present and whole; nothing half-written may be visible.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time

import httpx

from tests.cluster import Cluster
from tests.oci import OCI_MANIFEST, digest, image_manifest

DURATION = 12.0


def _push(client: httpx.Client, repo: str, tag: str) -> tuple[bytes, list[bytes]] | None:
    """Push config + 2 layers (one chunked) + manifest; None if anything failed on the way."""
    config = os.urandom(64)
    layers = [os.urandom(random.randint(1, 600_000)) for _ in range(2)]
    try:
        for blob in (config, layers[0]):
            r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest(blob)}, content=blob)
            if r.status_code != 201:
                return None
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        if r.status_code != 202:
            return None
        loc = r.headers["Location"]
        half = len(layers[1]) // 2
        r = client.patch(loc, content=layers[1][:half], headers={"Content-Range": f"0-{half - 1}"})
        if r.status_code != 202:
            return None
        r = client.put(r.headers["Location"], params={"digest": digest(layers[1])}, content=layers[1][half:],
                       headers={"Content-Range": f"{half}-{len(layers[1]) - 1}"})
        if r.status_code != 201:
            return None
        body = image_manifest(config, layers)
        r = client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        return (body, [config, *layers]) if r.status_code == 201 else None
    except httpx.HTTPError:
        return None


def test_acknowledged_pushes_survive_random_kills(tmp_path):
    acknowledged: dict[tuple[str, str], tuple[bytes, list[bytes]]] = {}
    lock = threading.Lock()
    stop = time.monotonic() + DURATION
    with Cluster(tmp_path / "data", config={"cluster": {"requestTimeout": "5s"}}) as cluster:

        def pusher(n: int) -> None:
            with httpx.Client(base_url=cluster.url, timeout=30) as client:
                i = 0
                while time.monotonic() < stop:
                    repo, tag = f"chaos/r{n}-{i % 5}", f"t{i}"
                    pushed = _push(client, repo, tag)
                    if pushed:
                        with lock:
                            acknowledged[(repo, tag)] = pushed
                    i += 1

        threads = [threading.Thread(target=pusher, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        kills = 0
        rng = random.Random(7)
        while time.monotonic() < stop - 2:
            time.sleep(rng.uniform(1.0, 2.5))
            victim = rng.choice(["shard-0", "shard-1", "shard-0", "shard-1", "gateway"])
            try:
                cluster.kill_child(victim)
                kills += 1
            except (OSError, KeyError, ValueError, TypeError):  # that child is being restarted
                pass
        for t in threads:
            t.join(120)
        cluster.wait_ready(60)
        print(f"chaos: {kills} kills, {len(acknowledged)} acknowledged pushes")
        assert kills >= 3
        assert len(acknowledged) >= 5, "the registry acknowledged almost nothing under chaos"
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            for (repo, tag), (body, blobs) in acknowledged.items():
                r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200 and r.content == body, (repo, tag, r.status_code)
                for blob in blobs:
                    r = client.get(f"/v2/{repo}/blobs/{digest(blob)}")
                    assert r.status_code == 200, (repo, digest(blob))
                    assert hashlib.sha256(r.content).digest() == hashlib.sha256(blob).digest()
        # and the shards hold no stray half-written blob files (checked below, after the stop)
        for shard in ("shard-0", "shard-1"):
            for dirpath, _dirs, files in os.walk(tmp_path / "data" / shard / "blobs"):
                for name in files:
                    with open(os.path.join(dirpath, name), "rb") as fh:
                        data = fh.read()
                    alg = os.path.basename(os.path.dirname(dirpath))
                    assert hashlib.new(alg, data).hexdigest() == name
    # no process of this cluster outlived it (a gateway killed while its workers were starting
    # must not leave them serving the port)
    deadline = time.monotonic() + 10
    while _orphans() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _orphans()


def _orphans() -> list[int]:
    marker = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0].encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if marker and marker in environ and "zombie" not in stat and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry))
    return found
