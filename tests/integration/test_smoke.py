from tests.oci import OCI_MANIFEST, digest, push_blob, push_image


def test_push_and_pull_image(client):
    d, body = push_image(client, "smoke/app", "v1")
    r = client.get("/v2/smoke/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == d
    blob = b"x" * 5000
    bd = push_blob(client, "smoke/app", blob)
    r = client.get(f"/v2/smoke/app/blobs/{bd}")
    assert r.status_code == 200 and r.content == blob
    assert digest(r.content) == bd
