"""Hooks the shard core calls after it changes or serves a manifest (as zot's ``meta/hooks.go``).

The core (:mod:`shard.ops`) never imports an extension: the server gives it one
:class:`Hooks` and extensions subscribe to it when they are wired. Search metadata listens
today; retention, events and sync will hang off the same three hooks.

* ``on_push``   after ``manifest.put`` committed a manifest (awaited; a failing listener is
  logged and never fails the push)
* ``on_pull``   when ``manifest.get`` serves a manifest body (called synchronously on the hot
  path, inside the read: listeners must only note it in memory)
* ``on_delete`` after ``manifest.delete`` committed the removal of a manifest or a tag
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("shardreg.shard.hooks")


@dataclass(frozen=True)
class Pushed:
    repo: str
    digest: str
    tags: list[str]
    pushed_by: str


@dataclass(frozen=True)
class Deleted:
    """A manifest (``digest``, with the ``tags`` that pointed to it) or only a tag was removed."""

    repo: str
    digest: str | None
    tags: list[str]


PushListener = Callable[[Pushed], Awaitable[None]]
PullListener = Callable[[str, str], None]
DeleteListener = Callable[[Deleted], Awaitable[None]]


@dataclass
class Hooks:
    on_push: list[PushListener] = field(default_factory=list)
    on_pull: list[PullListener] = field(default_factory=list)
    on_delete: list[DeleteListener] = field(default_factory=list)

    async def pushed(self, event: Pushed) -> None:
        for listener in self.on_push:
            try:
                await listener(event)
            except Exception:  # an extension must never fail a push
                log.exception("push hook %r failed", listener)

    def pulled(self, repo: str, digest: str) -> None:
        for listener in self.on_pull:
            listener(repo, digest)

    async def deleted(self, event: Deleted) -> None:
        for listener in self.on_delete:
            try:
                await listener(event)
            except Exception:  # the deletion is committed: an extension must not turn it into an error
                log.exception("delete hook %r failed", listener)
