"""The OpenAPI document: every route is documented, and schemathesis finds no 500s."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from common.config import parse_config
from gateway.app import create_app
from gateway.extensions.openapi_document import OPERATIONS, RAW_PATHS, app_routes, document
from tests.cluster import Cluster
from tests.extensions.fixtures import FULL_EXTENSIONS


def _full_app():
    config = parse_config({"http": {"auth": {"htpasswd": {"path": "/nonexistent"}, "apikey": True}},
                           "extensions": {**FULL_EXTENSIONS, "metrics": {"enable": True}}})
    return create_app(config).quart


def test_every_route_is_documented():
    app = _full_app()
    routes = app_routes(app)
    missing = sorted(f"{m.upper()} {p}" for p, m in routes if m not in OPERATIONS.get(p, {}))
    assert not missing, f"routes missing from the OpenAPI document: {missing}"


def test_document_lists_only_what_is_served():
    app = _full_app()
    served = {p for p, _ in app_routes(app)} | set(RAW_PATHS)
    doc = document(app)
    assert set(doc["paths"]) <= served
    for path in ("/v2/_zot/ext/search", "/v2/{name}/manifests/{reference}", "/v2/{name}/blobs/uploads/{uuid}"):
        assert path in doc["paths"]
    bare = create_app(parse_config({})).quart
    assert "/v2/_zot/ext/search" not in document(bare)["paths"]


@pytest.fixture(scope="module")
def fuzz_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("fuzz") / "data", shards=2, workers=1,
                 config={"extensions": FULL_EXTENSIONS}) as c:
        with httpx.Client(base_url=c.url) as http:
            from tests.oci import push_image

            push_image(http, "fuzz/app", "v1")
        yield c


@pytest.fixture(scope="module")
def api_schema(fuzz_cluster: Cluster):
    schema = schemathesis.openapi.from_url(f"{fuzz_cluster.url}/swagger/v2/doc.json")
    schema.config.update(base_url=fuzz_cluster.url)
    return schema


def test_no_server_errors(api_schema):
    """Every documented operation, a few generated requests each: never a 5xx."""
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case):
            case.call_and_validate(checks=[not_a_server_error], timeout=30)

        try:
            run()
        except Exception as exc:  # collect them all, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
