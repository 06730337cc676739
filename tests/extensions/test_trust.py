"""Image trust: key/certificate upload and verification of cosign and notation signatures.

One test, in order: signatures are recognised but untrusted until the key or the CA is uploaded.
"""

from __future__ import annotations

from tests.extensions.conftest import gql


def _signatures(client, repo: str) -> list[dict]:
    out = gql(client, f'{{ Image(image: "{repo}:v1") {{ IsSigned SignatureInfo {{ Tool IsTrusted Author }} '
                      f'Manifests {{ IsSigned SignatureInfo {{ Tool IsTrusted }} }} }} }}')
    assert "errors" not in out, out
    image = out["data"]["Image"]
    assert image["IsSigned"] is True and image["Manifests"][0]["IsSigned"] is True
    return image["SignatureInfo"]


def test_upload_validation(ext_client):
    assert ext_client.post("/v2/_zot/ext/cosign", content=b"garbage").status_code == 400
    assert ext_client.post("/v2/_zot/ext/notation", content=b"garbage").status_code == 400
    assert ext_client.post("/v2/_zot/ext/notation?truststoreType=bogus", content=b"x").status_code == 400
    big = b"-----BEGIN PUBLIC KEY-----\n" + b"A" * (8 * 1024 * 1024 + 10)
    assert ext_client.post("/v2/_zot/ext/cosign", content=big).status_code == 413


def test_signatures_verified_after_upload(ext_client, pushed):
    for repo in ("signed/cosign-ok", "signed/cosign-referrer", "signed/cosign-untrusted", "signed/cosign-tampered"):
        assert _signatures(ext_client, repo) == [{"Tool": "cosign", "IsTrusted": False, "Author": ""}], repo
    for repo in ("signed/notation-ok", "signed/notation-untrusted", "signed/notation-tampered"):
        assert _signatures(ext_client, repo) == [{"Tool": "notation", "IsTrusted": False, "Author": ""}], repo

    assert ext_client.post("/v2/_zot/ext/cosign", content=pushed.cosign_pem).status_code == 200
    for repo in ("signed/cosign-ok", "signed/cosign-referrer"):
        [sig] = _signatures(ext_client, repo)
        assert sig["IsTrusted"] is True and "BEGIN PUBLIC KEY" in sig["Author"], repo
    for repo in ("signed/cosign-untrusted", "signed/cosign-tampered"):
        assert _signatures(ext_client, repo)[0]["IsTrusted"] is False, repo

    r = ext_client.post("/v2/_zot/ext/notation", params={"truststoreType": "ca"}, content=pushed.ca_pem)
    assert r.status_code == 200
    [sig] = _signatures(ext_client, "signed/notation-ok")
    assert sig["IsTrusted"] is True and "CN=signer.example" in sig["Author"]
    for repo in ("signed/notation-untrusted", "signed/notation-tampered"):
        assert _signatures(ext_client, repo)[0]["IsTrusted"] is False, repo

    # the signed filter of GlobalSearch sees every signed repository
    out = gql(ext_client, '{ GlobalSearch(query: "signed/", filter: {HasToBeSigned: true}) { Repos { Name } } }')
    assert len(out["data"]["GlobalSearch"]["Repos"]) == 7
