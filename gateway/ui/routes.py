"""The UI's routes, for the table of :mod:`gateway.routes` (switch ``ui``), and their OpenAPI entries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.ui import account, actions, pages
from gateway.ui.render import static_asset

#: (route name, template, methods, handler, summary)
_TABLE: tuple[tuple[str, str, tuple[str, ...], Callable[..., Any], str], ...] = (
    ("ui_home", "/", ("GET",), pages.home, "Home page"),
    ("ui_login", "/ui/login", ("GET", "POST"), account.login, "Log-in page and form"),
    ("ui_logout", "/ui/logout", ("POST",), account.logout, "Log out"),
    ("ui_explore", "/ui/explore", ("GET",), pages.explore, "Search and browse"),
    ("ui_repository", "/ui/repo/{name}/tags", ("GET",), pages.repository, "A repository and its tags"),
    ("ui_image", "/ui/repo/{name}/tag/{reference}", ("GET",), pages.image, "An image (tag)"),
    ("ui_lineage", "/ui/repo/{name}/tag/{reference}/lineage", ("GET",), pages.image_lineage,
     "Base and derived images of an image"),
    ("ui_pref", "/ui/prefs", ("POST",), actions.toggle_pref, "Star or bookmark a repository"),
    ("ui_delete", "/ui/delete", ("POST",), actions.delete_tag, "Delete a tag"),
    ("ui_user", "/ui/user", ("GET",), account.user, "The user page: API keys"),
    ("ui_apikey_create", "/ui/user/apikeys", ("POST",), account.create_apikey, "Create an API key"),
    ("ui_apikey_revoke", "/ui/user/apikeys/revoke", ("POST",), account.revoke_apikey, "Revoke an API key"),
    ("ui_static", "/ui/static/{asset}", ("GET",), static_asset, "A stylesheet, script or icon"),
)


#: (name, template, methods, handler) of each UI route: :data:`gateway.routes.ROUTES` makes them routes.
TABLE = tuple(entry[:4] for entry in _TABLE)


def _params(template: str) -> list[dict[str, Any]]:
    return [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in ("name", "reference", "asset") if "{" + p + "}" in template]


def _operation(summary: str, template: str, method: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": "an HTML page", "content": {"text/html": {}}}}
    if method == "POST":
        responses = {"303": {"description": "done: on to the next page"},
                     "403": {"description": "refused: the form's CSRF token is missing or wrong"}}
    return {"summary": summary, "tags": ["ui"], "parameters": _params(template), "responses": responses}


#: Route name → method → operation (merged into the OpenAPI document).
OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    name: {m.lower(): _operation(summary, template, m) for m in methods}
    for name, template, methods, _, summary in _TABLE
}
