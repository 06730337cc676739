"""Unknown paths and empty answers (issue 11 item 13): an OCI error body that names the path, and no
``text/html`` on a body-less 202."""

from __future__ import annotations

import httpx
import pytest

from tests.oci import push_blob, push_image

pytestmark = pytest.mark.inprocess


@pytest.mark.parametrize("path", ["/", "/nope", "/v2/some/repo/unknown-endpoint", "/favicon.ico"])
def test_unknown_paths_answer_a_404_naming_the_path(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["errors"][0]
    assert path in error["message"] and error["detail"]["path"] == path
    assert "requested URL was not found" not in r.text


def test_root_says_where_the_api_is(client: httpx.Client) -> None:
    message = client.get("/").json()["errors"][0]["message"]
    assert "/v2/" in message and "UI" in message


def test_wrong_method_names_the_allowed_ones(client: httpx.Client) -> None:
    r = client.post("/v2/")
    assert r.status_code == 405
    assert "POST" in r.json()["errors"][0]["message"] and "GET" in r.headers["allow"]


def test_deletes_answer_202_without_an_html_type(client: httpx.Client) -> None:
    digest, _ = push_image(client, "empty/answers", "v1")
    blob = push_blob(client, "empty/answers", b"a blob to delete")
    for path in (f"/v2/empty/answers/manifests/{digest}", f"/v2/empty/answers/blobs/{blob}"):
        r = client.delete(path)
        assert r.status_code == 202, r.text
        assert "text/html" not in r.headers.get("content-type", ""), path
        assert r.content == b""
