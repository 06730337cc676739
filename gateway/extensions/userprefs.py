"""``PUT /v2/_zot/ext/userprefs?action=toggleStar|toggleBookmark&repo=R`` (search and ui on).

Stars and bookmarks live on the shard that owns the repository (so they are the same from
every gateway) and show in search as ``IsStarred``, ``IsBookmarked``, ``StarCount``,
``StarredRepos`` and ``BookmarkedRepos``. Answers as zot: 400 for a missing or unknown action
or a missing repo, 403 for anonymous callers and repositories the caller cannot read, 404 for
an unknown repository, 200 otherwise.
"""

from __future__ import annotations

from quart import Response, request

from common import messages
from common.errors import ErrorCode, RegistryError
from common.grammar import NAME_RE
from gateway.context import authorize, current_state

ACTIONS = ("toggleStar", "toggleBookmark")


async def userprefs() -> Response:
    action = request.args.get("action")
    if action not in ACTIONS:
        raise RegistryError(ErrorCode.BAD_REQUEST, "action must be toggleStar or toggleBookmark", status=400)
    repo = request.args.get("repo")
    if repo is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "repo is required", status=400)
    identity = await authorize()
    if identity.anonymous:
        raise RegistryError(ErrorCode.DENIED, "user preferences need an authenticated user")
    if not repo or not NAME_RE.fullmatch(repo):
        raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo[:255]})
    if not current_state().access.can_read(identity, repo):
        raise RegistryError(ErrorCode.DENIED)
    await current_state().client.call_repo(messages.USERPREFS_TOGGLE({"repo": repo, "user": identity.name, "action": action}))
    return Response(b"", status=200)
