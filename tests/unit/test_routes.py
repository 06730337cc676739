"""The route table is the truth: the app serves exactly its routes, and metrics label them by template."""

from __future__ import annotations

import re

from common.config import parse_config
from gateway.app import ROUTES_KEY, create_app
from gateway.metrics.labels import classify
from gateway.routes import METRICS, QUART, ROUTES, UPLOADS
from tests.extensions.fixtures import FULL_EXTENSIONS

_SAMPLES = {"name": "org/team/app", "reference": "v1", "digest": "sha256:" + "a" * 64,
            "uuid": "0f0e7c1a-1111-4222-8333-444455556666", "asset": "index.css"}


def _full_app():
    config = parse_config({"http": {"auth": {"htpasswd": {"path": "/nonexistent"}, "apikey": True}},
                           "extensions": {**FULL_EXTENSIONS, "metrics": {"enable": True}}})
    return create_app(config)


def _served(quart) -> set[tuple[str, str]]:
    """(werkzeug rule, method) of every route Quart serves, HEAD implied by GET left out."""
    out = set()
    for rule in quart.url_map.iter_rules():
        methods = set(rule.methods or ())
        for method in methods:
            if method != "OPTIONS" and not (method == "HEAD" and "GET" in methods):
                out.add((rule.rule, method))
    return out


def test_names_are_unique() -> None:
    names = [route.name for route in ROUTES]
    assert len(names) == len(set(names))


def test_app_serves_exactly_the_table() -> None:
    gateway = _full_app()
    table = {(route.rule(template), method) for route in ROUTES if route.served_by == QUART
             for template in (route.template, *route.aliases) for method in route.methods
             if not (method == "HEAD" and "GET" in route.methods)}
    assert _served(gateway.quart) == table
    assert {route.name for route in gateway.quart.config[ROUTES_KEY]} == {route.name for route in ROUTES}


def test_upload_routes_dispatch_to_the_upload_handler() -> None:
    uploads = [route for route in ROUTES if route.served_by == UPLOADS]
    assert {route.template for route in uploads} == {"/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/uploads/{uuid}"}
    for path, uuid in (("/v2/a/b/blobs/uploads/", None), ("/v2/a/b/blobs/uploads", None),
                       ("/v2/a/b/blobs/uploads/" + _SAMPLES["uuid"], _SAMPLES["uuid"])):
        matches = [m for m in (route.pattern.match(path) for route in uploads) if m]
        assert matches and matches[0].group("name") == "a/b" and matches[0].groupdict().get("uuid") == uuid


def test_extensions_stay_opt_in() -> None:
    bare = create_app(parse_config({}))
    served = {route.name for route in bare.quart.config[ROUTES_KEY]}
    assert served == {route.name for route in ROUTES if route.extension in (None, "profiling")}
    rules = {rule.rule for rule in bare.quart.url_map.iter_rules()}
    assert "/v2/_zot/ext/search" not in rules and "/swagger/v2/" not in rules
    assert bare.metrics is None


def test_classify_labels_every_route_with_its_template() -> None:
    for route in ROUTES:
        if route.served_by == METRICS:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: _SAMPLES[m.group(1)] if m.group(1) in _SAMPLES else "heap",
                      route.template)
        repo = _SAMPLES["name"] if route.in_repository else None
        assert classify(path) == (route.template, repo), route.name
