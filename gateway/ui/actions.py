"""State-changing forms of the browsing pages: star/bookmark and delete a tag.

Star and bookmark run the checks of ``PUT /v2/_zot/ext/userprefs``; a delete runs
:func:`gateway.distribution.common.delete_in_repo`, the handler of ``DELETE
/v2/<name>/manifests/<tag>`` (which authorizes ``delete``)."""

from __future__ import annotations

from urllib.parse import quote

from quart import Response, request

from common import messages
from common.errors import ErrorCode, RegistryError
from common.grammar import NAME_RE, TAG_RE
from gateway.context import current_state
from gateway.distribution.common import delete_in_repo
from gateway.extensions.common import extensions
from gateway.ui.account import refused
from gateway.ui.render import local_path, redirect
from gateway.ui.security import csrf_ok
from gateway.ui.viewer import ui_handler, viewer

PREFS = {"star": "toggleStar", "bookmark": "toggleBookmark"}


def repo_path(repo: str) -> str:
    return f"/ui/repo/{quote(repo, safe='/')}/tags"


@ui_handler
async def toggle_pref() -> Response:
    form = await request.form
    if not await csrf_ok(form.get("csrf")):
        return refused()
    me = await viewer(required=True)
    repo, action = form.get("repo") or "", PREFS.get(form.get("action") or "")
    if not extensions().userprefs_enabled or action is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "unknown preference", status=400)
    if not NAME_RE.fullmatch(repo) or not current_state().access.can_read(me.identity, repo):
        raise RegistryError(ErrorCode.NAME_UNKNOWN, status=404)
    await current_state().client.call_repo(messages.USERPREFS_TOGGLE({"repo": repo, "user": me.name,
                                                                      "action": action}))
    return redirect(local_path(form.get("next"), repo_path(repo)))


@ui_handler
async def delete_tag() -> Response:
    form = await request.form
    if not await csrf_ok(form.get("csrf")):
        return refused()
    await viewer()
    repo, tag = form.get("repo") or "", form.get("tag") or ""
    if not NAME_RE.fullmatch(repo) or not TAG_RE.fullmatch(tag):
        raise RegistryError(ErrorCode.BAD_REQUEST, "a repository and a tag are required", status=400)
    await delete_in_repo(messages.MANIFEST_DELETE({"repo": repo, "reference": tag}))
    return redirect(f"{repo_path(repo)}?deleted={quote(tag)}")
