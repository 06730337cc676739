"""A full disk (issue 11 item 5), made real with the file size limit (``ulimit -f``): every write
past it fails with EFBIG, as writes on a full filesystem fail with ENOSPC, without root or a mount.

A blob upload answers 507 (the server's fault, not a 400 that blames the client), a manifest PUT
never answers 201 for what was not stored, ``/readyz`` names the shard that cannot write, and the
logs carry one line per failure, never a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess

import httpx
import pytest

from tests.cluster import ROOT, Cluster
from tests.oci import OCI_MANIFEST, digest, image_manifest, push_blob

#: The file size limit of every registry process: small files (configs, LMDB's first pages) fit.
FILE_LIMIT = 1024 * 1024


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


class LimitedCluster(Cluster):
    """A cluster whose processes cannot write a file past FILE_LIMIT bytes."""

    def start(self, timeout: float = 30) -> Cluster:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv(), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                        preexec_fn=_limit_file_size)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> LimitedCluster:
    with LimitedCluster(tmp_path_factory.mktemp("diskfull") / "data", shards=1, workers=1) as cluster:
        yield cluster


def test_blob_upload_on_a_full_disk_is_507_and_readyz_says_so(full: LimitedCluster) -> None:
    data = os.urandom(2 * FILE_LIMIT)
    with httpx.Client(base_url=full.url, timeout=60) as client:
        r = client.post("/v2/full/app/blobs/uploads/")
        assert r.status_code == 202
        r = client.put(r.headers["Location"], params={"digest": digest(data)}, content=data,
                       headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 507, r.text
        request_id = r.headers["x-request-id"]
        error = r.json()["errors"][0]
        assert "storage is full" in error["message"] and error["code"] != "BLOB_UPLOAD_INVALID"
        # the shard is not ready while it cannot write; the answer names the shard and why
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "shard 0" in ready.text and "cannot write" in ready.text
        # a PATCH hits the limit the same way
        r = client.post("/v2/full/app/blobs/uploads/")
        r = client.patch(r.headers["Location"], content=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 507, r.text
        # what fits still works
        push_blob(client, "full/app", b"small")
    logs = full.log_path.read_text()
    assert "Traceback" not in logs
    # the shard's line about the failed write names the request that sent it
    assert any(" ERROR shard-0[" in line and "write failed" in line and f"request_id={request_id}" in line
               for line in logs.splitlines())


def test_manifest_put_on_a_full_disk_never_acknowledges_what_failed(full: LimitedCluster) -> None:
    with httpx.Client(base_url=full.url, timeout=60) as client:
        config = json.dumps({"os": "linux"}).encode()
        push_blob(client, "full/manifests", config)
        stored: list[str] = []
        refused = None
        for i in range(40):  # manifests with large annotations grow the metadata past the limit
            body = image_manifest(config, [], annotations={"pad": os.urandom(60_000).hex(), "i": str(i)})
            r = client.put(f"/v2/full/manifests/manifests/t{i}", content=body, headers={"Content-Type": OCI_MANIFEST})
            if r.status_code != 201:
                refused = (i, r, digest(body))
                break
            stored.append(f"t{i}")
        assert refused is not None, "the metadata never reached the file size limit"
        i, r, failed_digest = refused
        assert r.status_code == 507, r.text
        assert "storage is full" in r.json()["errors"][0]["message"]
        request_id = r.headers["x-request-id"]
        # what was acknowledged is there; what was refused is not
        for tag in stored:
            assert client.get(f"/v2/full/manifests/manifests/{tag}", headers={"Accept": OCI_MANIFEST}).status_code == 200
        assert client.get(f"/v2/full/manifests/manifests/t{i}").status_code == 404
        assert client.get(f"/v2/full/manifests/manifests/{failed_digest}").status_code == 404
    logs = full.log_path.read_text()
    assert "Traceback" not in logs and "storage full" in logs
    # the request id of the refused PUT names it in the shard's line and in the gateway's error line (5xx: error)
    tagged = [line for line in logs.splitlines() if f"request_id={request_id}" in line]
    assert any(" ERROR shard-0[" in line and "manifest.put failed: storage full" in line for line in tagged), tagged
    assert any(" ERROR gateway-worker[" in line and "answered 507" in line for line in tagged), tagged


