"""Hooks the shard core calls after it changes or serves a manifest (as zot's ``meta/hooks.go``).

The core (:mod:`shard.ops`) never imports an extension: the server gives it one
:class:`Hooks` and extensions subscribe to it when they are wired. Search metadata listens
today; retention, events and sync will hang off the same three hooks.

* ``on_push``   after ``manifest.put`` committed a manifest (awaited; a failing listener is
  logged and never fails the push: see below)
* ``on_pull``   when ``manifest.get`` serves a manifest body (called synchronously on the hot
  path, inside the read: listeners must only note it in memory)
* ``on_delete`` after ``manifest.delete`` committed the removal of a manifest or a tag
* ``on_write``  when ``manifest.put`` starts, before its transaction (synchronous, in memory:
  retention uses it so that a pass never deletes a manifest pushed while it runs)

What a 201 to a manifest PUT acknowledges is the manifest and its tags, committed (and fsync'd)
in the shard's main LMDB before the hooks run. What listeners record (search summaries: first
push time, pusher, tag times, download counts) is derived data kept in a separate environment
that can be lost without harming an image, so it is best-effort by design: a listener that
fails (a full disk, typically) is counted (``Hooks.failures``) and logged in one
line — without a traceback when the disk is full — and the acknowledged write stands. Failing
the PUT after the manifest committed would tell the client "not stored" about a stored manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shard.diskfull import is_storage_full

log = logging.getLogger("shardreg.shard.hooks")


@dataclass(frozen=True)
class Pushed:
    repo: str
    digest: str
    tags: list[str]
    pushed_by: str
    #: What each of ``tags`` named before this push (None: the tag is new); None when not known.
    previous: dict[str, str | None] | None = None


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
    on_write: list[PullListener] = field(default_factory=list)

    #: Listener failures since start (a shard metric).
    failures: int = 0

    def _failed(self, kind: str, listener: object, exc: Exception) -> None:
        self.failures += 1
        name = getattr(listener, "__qualname__", repr(listener))
        if is_storage_full(exc):  # expected on a full disk: one line, no traceback
            log.warning("%s hook %s not recorded: storage full: %s", kind, name, exc)
        else:
            log.exception("%s hook %s failed", kind, name)

    async def pushed(self, event: Pushed) -> None:
        for listener in self.on_push:
            try:
                await listener(event)
            except Exception as exc:  # an extension must never fail a push
                self._failed("push", listener, exc)

    def pulled(self, repo: str, digest: str) -> None:
        for listener in self.on_pull:
            listener(repo, digest)

    async def deleted(self, event: Deleted) -> None:
        for listener in self.on_delete:
            try:
                await listener(event)
            except Exception as exc:  # the deletion is committed: an extension must not turn it into an error
                self._failed("delete", listener, exc)

    def writing(self, repo: str, digest: str) -> None:
        for listener in self.on_write:
            listener(repo, digest)
