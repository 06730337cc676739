"""Users removed from htpasswd: refused at once, and their API keys and sessions deleted.

``shardreg user remove`` only edits the htpasswd file (it has no access to the shards). Every
gateway worker re-reads the file when it changes (a ``stat`` per check), so from the next
request on a credential of a user no longer in the file — API key, session cookie, or a token
issued here — is refused (401) by :meth:`AccessControl.authenticate`, whatever worker or
gateway it reaches. The records themselves are deleted by the gateways: each worker that sees
a user disappear on a reload, or refuses a credential of an unknown user, sends ``user.purge``
to the user's shard (idempotent, so several workers doing it is harmless).

Purging is deliberately careful, since deleting keys cannot be undone: nothing is purged while
the file is unreadable or empty, and a user is purged only if still absent when the file is
looked at again :data:`GRACE` seconds later (an editor that rewrites the file in place must not
cost everyone their keys).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from common import messages
from gateway.auth.htpasswd import HtpasswdFile

log = logging.getLogger("shardreg.auth")

#: Seconds a user must stay absent from the file before their records are deleted.
GRACE = 1.0


class RemovedUsers:
    def __init__(self, htpasswd: HtpasswdFile, client: Callable[[], Any]) -> None:
        self.htpasswd = htpasswd
        self.client = client
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        htpasswd.on_removed = self.removed

    def removed(self, users: set[str]) -> None:
        """Schedule the purge of ``users`` (called from a reload or a refusal)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # loading at start-up: nothing to compare with, refusals will purge
        for user in users - self._pending:
            self._pending.add(user)
            task = loop.create_task(self._purge(user))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _purge(self, user: str) -> None:
        try:
            await asyncio.sleep(GRACE)
            if not self.htpasswd.loaded or self.htpasswd.has_user(user):
                return
            client = self.client()
            reply = await client.call_user(user, messages.USER_PURGE({"user": user}))
            if reply.result["keys"] or reply.result["sessions"]:
                log.info("user %r is no longer in htpasswd: deleted %d API keys and %d sessions",
                         user[:64], reply.result["keys"], reply.result["sessions"])
        except Exception as exc:  # the next refusal tries again
            log.warning("could not delete the records of removed user %r: %s", user[:64], exc)
        finally:
            self._pending.discard(user)
