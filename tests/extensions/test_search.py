"""GraphQL search against a 3-shard cluster holding the fixtures of fixtures.py."""

from __future__ import annotations

import pytest

from common.ring import shard_for
from tests.extensions.conftest import gql
from tests.oci import OCI_INDEX

IMAGE_FIELDS = """RepoName Tag Digest MediaType Size DownloadCount LastPullTimestamp PushTimestamp PushedBy
 TaggedTimestamp LastUpdated Description Title Vendor Licenses Source Documentation Authors Labels IsSigned
 IsDeletable ArtifactType SignatureInfo { Tool IsTrusted Author }
 Referrers { MediaType ArtifactType Size Digest Annotations { Key Value } }
 Manifests { Digest ConfigDigest LastUpdated Size IsSigned Platform { Os Arch } DownloadCount
   Layers { Size Digest } History { Layer { Size Digest } HistoryDescription { Created CreatedBy EmptyLayer } } }"""


def _data(out: dict) -> dict:
    assert "errors" not in out, out
    return out["data"]


def test_fixtures_are_spread_over_shards(pushed):
    repos = ["library/alpine", "apps/web", "apps/api", "multi/arch", "signed/cosign-ok", "artifacts/app",
             "tools/debug", "tools/busybox"]
    assert len({shard_for(r, 3, 0) for r in repos}) == 3


def test_repo_list_with_newest_image_spans_all_shards(ext_client, pushed):
    out = _data(gql(ext_client, "{ RepoListWithNewestImage(requestedPage: {sortBy: ALPHABETIC_ASC}) "
                                "{ Page { TotalCount ItemCount } Results { Name Size Platforms { Os Arch } "
                                "NewestImage { Tag } } } }"))["RepoListWithNewestImage"]
    names = [r["Name"] for r in out["Results"]]
    assert names == sorted(names)
    for repo in ("library/alpine", "apps/web", "multi/arch", "signed/notation-ok", "artifacts/app"):
        assert repo in names
    assert out["Page"]["TotalCount"] == out["Page"]["ItemCount"] == len(names)
    alpine = next(r for r in out["Results"] if r["Name"] == "library/alpine")
    assert alpine["NewestImage"]["Tag"] == "3.19"  # 3.19 was created after 3.18
    multi = next(r for r in out["Results"] if r["Name"] == "multi/arch")
    assert {p["Arch"] for p in multi["Platforms"]} == {"amd64", "arm64"}


def test_image_list_fields(ext_client, pushed):
    out = _data(gql(ext_client, f'{{ ImageList(repo: "library/alpine") {{ Page {{ TotalCount }} '
                                f'Results {{ {IMAGE_FIELDS} }} }} }}'))["ImageList"]
    assert out["Page"]["TotalCount"] == 2
    image = next(i for i in out["Results"] if i["Tag"] == "3.19")
    assert image["Digest"] == pushed.digests["alpine"]
    assert image["Title"] == "alpine" and image["Description"] == "A small base image"
    assert image["Vendor"] == "Alpine" and image["Licenses"] == "MIT" and image["Authors"] == "alpine team"
    assert image["Source"] == "https://example.com/alpine" and image["Documentation"] == "https://example.com/docs"
    assert image["IsSigned"] is False and image["SignatureInfo"] == []
    assert image["PushTimestamp"] and image["TaggedTimestamp"]
    assert image["LastUpdated"].startswith("2024-01-02T03:04:05")
    [manifest] = image["Manifests"]
    assert manifest["Platform"] == {"Os": "linux", "Arch": "amd64"}
    assert [int(layer["Size"]) for layer in manifest["Layers"]] == [300, 200]
    assert len(manifest["History"]) == 3 and manifest["History"][2]["HistoryDescription"]["EmptyLayer"] is True
    assert manifest["History"][0]["Layer"]["Digest"] == manifest["Layers"][0]["Digest"]
    assert int(image["Size"]) > 500


def test_labels_fill_in_for_annotations(ext_client, pushed):
    out = _data(gql(ext_client, '{ Image(image: "apps/web:v1") { Vendor } }'))
    assert out["Image"]["Vendor"] == "WebCo"


def test_image_list_all_repos_pagination_and_sorting(ext_client, pushed):
    query = """query($page: PageInput) { ImageList(repo: "", requestedPage: $page) {
                 Page { TotalCount ItemCount } Results { RepoName Tag LastUpdated } } }"""
    everything = _data(gql(ext_client, query, {"page": {"sortBy": "ALPHABETIC_ASC"}}))["ImageList"]
    total = everything["Page"]["TotalCount"]
    keys = [(i["RepoName"], i["Tag"]) for i in everything["Results"]]
    assert keys == sorted(keys) and total == len(keys) >= 15
    assert not any(tag.endswith(".sig") for _, tag in keys)  # signatures are not images
    page = _data(gql(ext_client, query, {"page": {"limit": 4, "offset": 3, "sortBy": "ALPHABETIC_ASC"}}))["ImageList"]
    assert page["Page"] == {"TotalCount": total, "ItemCount": 4}
    assert [(i["RepoName"], i["Tag"]) for i in page["Results"]] == keys[3:7]
    desc = _data(gql(ext_client, query, {"page": {"sortBy": "ALPHABETIC_DSC", "limit": 3}}))["ImageList"]
    assert [(i["RepoName"], i["Tag"]) for i in desc["Results"]] == list(reversed(keys))[:3]
    newest = _data(gql(ext_client, query, {"page": {"sortBy": "UPDATE_TIME", "limit": 1}}))["ImageList"]
    assert newest["Results"][0]["RepoName"] not in ("library/alpine",)
    bad = gql(ext_client, query, {"page": {"offset": -1}})
    assert "negative" in bad["errors"][0]["message"]


def test_multi_arch_index(ext_client, pushed):
    out = _data(gql(ext_client, '{ Image(image: "multi/arch:v2") { MediaType Digest Description '
                                'Manifests { Digest Platform { Os Arch } } } }'))["Image"]
    assert out["MediaType"] == OCI_INDEX and out["Digest"] == pushed.digests["index"]
    assert out["Description"] == "multi-arch image"
    assert {m["Platform"]["Arch"]: m["Digest"] for m in out["Manifests"]} == {
        "amd64": pushed.digests["index-amd64"], "arm64": pushed.digests["index-arm64"]}
    by_digest = _data(gql(ext_client, f'{{ Image(image: "multi/arch@{pushed.digests["index"]}") {{ Tag }} }}'))
    assert by_digest["Image"]["Tag"] == "v2"


def test_expanded_repo_info(ext_client, pushed):
    out = _data(gql(ext_client, '{ ExpandedRepoInfo(repo: "library/alpine") { Images { Tag } '
                                'Summary { Name Vendors Platforms { Os Arch } StarCount IsStarred NewestImage { Tag } } } }'))
    info = out["ExpandedRepoInfo"]
    assert [i["Tag"] for i in info["Images"]] == ["3.18", "3.19"]
    assert info["Summary"]["Name"] == "library/alpine" and info["Summary"]["Vendors"] == ["Alpine"]
    missing = gql(ext_client, '{ ExpandedRepoInfo(repo: "no/such") { Images { Tag } } }')
    assert "not found" in missing["errors"][0]["message"]


def test_global_search_repos_ranked(ext_client, pushed):
    out = _data(gql(ext_client, '{ GlobalSearch(query: "alpine") { Page { TotalCount } '
                                'Repos { Name Rank } Images { Tag } Layers { Digest } } }'))["GlobalSearch"]
    assert out["Repos"][0]["Name"] == "library/alpine"
    out = _data(gql(ext_client, '{ GlobalSearch(query: "tools") { Repos { Name } } }'))["GlobalSearch"]
    assert {r["Name"] for r in out["Repos"]} == {"tools/debug", "tools/busybox"}
    out = _data(gql(ext_client, '{ GlobalSearch(query: "bus") { Repos { Name } } }'))["GlobalSearch"]
    assert out["Repos"][0]["Name"] == "tools/busybox"


def test_global_search_images_by_tag(ext_client, pushed):
    out = _data(gql(ext_client, '{ GlobalSearch(query: "library/alpine:3.1") { Images { RepoName Tag } Repos { Name } } }'))
    assert sorted(i["Tag"] for i in out["GlobalSearch"]["Images"]) == ["3.18", "3.19"]
    assert out["GlobalSearch"]["Repos"] == []


def test_global_search_filters(ext_client, pushed):
    out = _data(gql(ext_client, '{ GlobalSearch(query: "", filter: {Arch: ["arm64"]}) { Repos { Name } } }'))
    assert [r["Name"] for r in out["GlobalSearch"]["Repos"]] == ["multi/arch"]
    out = _data(gql(ext_client, '{ GlobalSearch(query: "signed", filter: {HasToBeSigned: true}) { Repos { Name } } }'))
    assert len(out["GlobalSearch"]["Repos"]) == 7
    out = _data(gql(ext_client, '{ GlobalSearch(query: "", filter: {HasToBeSigned: true, Os: ["windows"]}) '
                                '{ Repos { Name } } }'))
    assert out["GlobalSearch"]["Repos"] == []


def test_image_list_for_digest(ext_client, pushed):
    from tests.oci import digest

    layer = digest(pushed.base_layers[0])
    out = _data(gql(ext_client, f'{{ ImageListForDigest(id: "{layer}") {{ Results {{ RepoName Tag }} }} }}'))
    assert sorted((i["RepoName"], i["Tag"]) for i in out["ImageListForDigest"]["Results"]) == [
        ("apps/web", "v1"), ("library/alpine", "3.19")]
    out = _data(gql(ext_client, f'{{ ImageListForDigest(id: "{pushed.digests["index-arm64"]}") '
                                f'{{ Results {{ RepoName Tag }} }} }}'))
    assert [(i["RepoName"], i["Tag"]) for i in out["ImageListForDigest"]["Results"]] == [("multi/arch", "v2")]


def test_derived_and_base_images(ext_client, pushed):
    out = _data(gql(ext_client, '{ DerivedImageList(image: "library/alpine:3.19") { Results { RepoName Tag } } }'))
    assert [(i["RepoName"], i["Tag"]) for i in out["DerivedImageList"]["Results"]] == [("apps/web", "v1")]
    out = _data(gql(ext_client, '{ BaseImageList(image: "apps/web:v1") { Results { RepoName Tag } } }'))
    assert [(i["RepoName"], i["Tag"]) for i in out["BaseImageList"]["Results"]] == [("library/alpine", "3.19")]


def test_referrers(ext_client, pushed):
    subject = pushed.digests["artifact-subject"]
    q = '{ Referrers(repo: "artifacts/app", digest: "%s"%s) { Digest ArtifactType Annotations { Key Value } } }'
    out = _data(gql(ext_client, q % (subject, "")))["Referrers"]
    assert {r["Digest"] for r in out} == {pushed.digests["sbom"], pushed.digests["scan"]}
    out = _data(gql(ext_client, q % (subject, ', type: ["application/spdx+json"]')))["Referrers"]
    assert [r["Digest"] for r in out] == [pushed.digests["sbom"]]
    assert {"Key": "kind", "Value": "sbom"} in out[0]["Annotations"]
    image = _data(gql(ext_client, '{ Image(image: "artifacts/app:1.0") { Referrers { ArtifactType } } }'))
    assert sorted(r["ArtifactType"] for r in image["Image"]["Referrers"]) == [
        "application/spdx+json", "application/vnd.scan+json"]


def test_download_counts(ext_client, pushed):
    for _ in range(3):
        assert ext_client.get("/v2/tools/debug/manifests/latest").status_code == 200
    ext_client.head("/v2/tools/debug/manifests/latest")  # HEAD does not count
    out = _data(gql(ext_client, '{ Image(image: "tools/debug:latest") { DownloadCount LastPullTimestamp } }'))
    assert out["Image"]["DownloadCount"] == 3 and out["Image"]["LastPullTimestamp"]
    top = _data(gql(ext_client, '{ RepoListWithNewestImage(requestedPage: {sortBy: DOWNLOADS, limit: 1}) '
                                '{ Results { Name DownloadCount } } }'))
    assert top["RepoListWithNewestImage"]["Results"][0] == {"Name": "tools/debug", "DownloadCount": 3}


@pytest.mark.parametrize("query", [
    '{ CVEListForImage(image: "library/alpine:3.19") { Tag } }',
    '{ ImageListForCVE(id: "CVE-2024-0001") { Results { Tag } } }',
    '{ ImageListWithCVEFixed(id: "CVE-2024-0001", image: "library/alpine") { Results { Tag } } }',
    '{ CVEDiffListForImages(minuend: {Repo: "a", Tag: "b"}, subtrahend: {Repo: "a", Tag: "c"}) { CVEList { Id } } }',
])
def test_cve_queries_say_scanning_is_off(ext_client, query):
    out = gql(ext_client, query)
    assert "not enabled" in out["errors"][0]["message"] and out["data"] is None


def test_get_query_and_errors(ext_client, pushed):
    r = ext_client.get("/v2/_zot/ext/search", params={"query": '{ ImageList(repo: "apps/api") { Results { Tag } } }'})
    assert r.status_code == 200 and r.json()["data"]["ImageList"]["Results"] == [{"Tag": "latest"}]
    r = ext_client.post("/v2/_zot/ext/search", json={"query": "{ NoSuchQuery }"})
    assert r.status_code == 422 and r.json()["errors"]
    r = ext_client.post("/v2/_zot/ext/search", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = ext_client.get("/v2/_zot/ext/search")
    assert r.status_code == 422
