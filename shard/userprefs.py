"""User preferences on a shard: a user's stars and bookmarks on the shard's repositories.

Stored in the extensions' environment (:mod:`shard.searchstore`); the search summaries read
them from there.
"""

from __future__ import annotations

from collections.abc import Callable

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.ops.registry import handles
from shard.searchstore import Mark, SearchStore

_ACTIONS: dict[str, Mark] = {"toggleStar": "stars", "toggleBookmark": "bookmarks"}


class UserPrefs:
    def __init__(self, meta: MetaStore, store: SearchStore,
                 changed: Callable[[Txn, str], object] = lambda txn, repo: None) -> None:
        self.meta = meta
        self.store = store
        #: Told the repository whose marks changed, in the same transaction (the listing index's stars).
        self.changed = changed

    @handles(m.USERPREFS_TOGGLE)
    async def op_toggle(self, args: m.UserprefsToggleRequest, frames: Frames) -> Answer[m.UserprefsToggleReply]:
        repo, user, action = args["repo"], args["user"], args["action"]
        if not user:
            raise RegistryError(ErrorCode.DENIED, "user preferences need an authenticated user")
        mark = _ACTIONS.get(action)
        if mark is None:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown action {action}")
        if not self.meta.read(lambda txn: self.meta.repo_exists(txn, repo)):
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
        def run(txn: Txn) -> bool:
            value = self.store.toggle_mark(txn, mark, repo, user)
            self.changed(txn, repo)
            return value

        value = self.store.write(run)
        return {"value": value}, []
