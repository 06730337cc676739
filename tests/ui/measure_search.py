"""How fast the UI's explore and home pages answer on a registry with many repositories.

Not a test (nothing asserted about time): ``python -m tests.ui.measure_search [N]`` pushes N
small images (default 10,000) into an in-process registry (2 shards) and prints the median and
worst of 10 requests of each page. Figures: docs/ui.md, "Speed".
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from urllib.parse import urlencode

import httpx

from tests.extensions.fixtures import FULL_EXTENSIONS
from tests.inprocess import InProcessRegistry
from tests.oci import OCI_MANIFEST, image_manifest, push_blob

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
LAYER = b"layer" * 50


def fill(client: httpx.Client, count: int) -> None:
    body = image_manifest(CONFIG, [LAYER])
    for i in range(count):
        repo = f"team{i % 50}/app-{i}"
        push_blob(client, repo, CONFIG)
        push_blob(client, repo, LAYER)
        r = client.put(f"/v2/{repo}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text


GRAPHQL = {
    "graphql: RepoList page of 10, UPDATE_TIME": "{ RepoListWithNewestImage(requestedPage: {limit: 10, "
    "sortBy: UPDATE_TIME}) { Page { TotalCount } Results { Name LastUpdated } } }",
    "graphql: RepoList page 40 of 10, DOWNLOADS": "{ RepoListWithNewestImage(requestedPage: {limit: 10, "
    "offset: 400, sortBy: DOWNLOADS}) { Page { TotalCount } Results { Name } } }",
    "graphql: GlobalSearch 'app-12', RELEVANCE": '{ GlobalSearch(query: "app-12", requestedPage: {limit: 10, '
    'sortBy: RELEVANCE}) { Page { TotalCount } Repos { Name } } }',
    "graphql: GlobalSearch arch filter, UPDATE_TIME": '{ GlobalSearch(query: "", filter: {Arch: ["amd64"]}, '
    'requestedPage: {limit: 10, sortBy: UPDATE_TIME}) { Page { TotalCount } Repos { Name } } }',
}


def timed(client: httpx.Client, path: str, runs: int = 10) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return statistics.median(times), max(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with InProcessRegistry(config={"extensions": FULL_EXTENSIONS}) as registry, registry.client() as client:
        start = time.perf_counter()
        fill(client, count)
        print(f"pushed {count} repositories in {time.perf_counter() - start:.0f} s")
        for path in ("/", "/ui/explore", "/ui/explore?q=app-123", "/ui/explore?q=team7/app-7:v",
                     "/ui/explore?arch=amd64&sort=updated&page=40", "/ui/repo/team7/app-7/tags",
                     "/ui/repo/team7/app-7/tag/v1"):
            median, worst = timed(client, path)
            print(f"{path:50} median {median:6.0f} ms   worst {worst:6.0f} ms")
        for name, query in GRAPHQL.items():
            median, worst = timed(client, "/v2/_zot/ext/search?" + urlencode({"query": query}))
            print(f"{name:50} median {median:6.1f} ms   worst {worst:6.1f} ms")
        median, worst = timed(client, "/v2/team7/app-7/manifests/v1", runs=300)
        print(f"{'manifest GET (a pull, counted)':50} median {median:6.2f} ms   worst {worst:6.1f} ms")


if __name__ == "__main__":
    main()
