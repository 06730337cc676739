"""Route labels: the template of the table route (:data:`gateway.routes.ROUTES`) a path falls
under, never the raw path, so that label values stay bounded; ``other`` for the rest."""

from __future__ import annotations

import re

from gateway.routes import METRICS, ROUTES, UPLOADS

OTHER_ROUTE = "other"

_routes = [route for route in ROUTES if route.served_by != METRICS]  # the metrics path labels itself
#: Routes without parameters, by path; an alias that is not just a trailing slash labels itself.
_STATIC: frozenset[str] = frozenset(
    [r.template for r in _routes if "{" not in r.template]
    + [alias for r in _routes if "{" not in r.template for alias in r.aliases
       if alias.rstrip("/") != r.template.rstrip("/")])
#: Non-repository routes ending in a parameter: everything under their prefix.
_PREFIXES: tuple[tuple[str, str], ...] = tuple(dict.fromkeys(
    (r.template[:r.template.index("{")], r.template) for r in _routes
    if "{" in r.template and not r.in_repository))
#: Repository routes, in table order: the first that matches names the path.
_IN_REPOSITORY: tuple[tuple[re.Pattern[str], str], ...] = tuple(dict.fromkeys(
    (r.pattern, r.template) for r in _routes if r.in_repository))
_REPOSITORY_ROOTS = tuple(dict.fromkeys(r.template[:r.template.index("{")] for r in _routes if r.in_repository))
#: Labels of the upload routes (the in-progress gauge counts their requests).
UPLOAD_ROUTES = frozenset(r.template for r in ROUTES if r.served_by == UPLOADS)


def classify(path: str) -> tuple[str, str | None]:
    """The route template of ``path`` and the repository it names (if any)."""
    if path in _STATIC:
        return path, None
    trimmed = path.rstrip("/")
    if trimmed in _STATIC:
        return trimmed, None
    if trimmed + "/" in _STATIC:
        return trimmed + "/", None
    for prefix, template in _PREFIXES:
        if path.startswith(prefix):
            return template, None
    if path.startswith(_REPOSITORY_ROOTS):
        for pattern, template in _IN_REPOSITORY:
            match = pattern.match(path)
            if match:
                return template, match.group("name")
    return OTHER_ROUTE, None
