"""The storage lifecycle of one shard, wired together: the event outbox and its sender,
the push policy (immutable tags, lint, events of writes) and retention passes; and the ops
``retention.run`` and ``clock.set`` (tests only: ``extensions.debug``)."""

from __future__ import annotations

from typing import Any

from common import messages_lifecycle as m
from common.config import Config
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard import clock
from shard.events.outbox import Outbox
from shard.events.sender import Sender
from shard.hooks import Hooks
from shard.ops.registry import handles
from shard.pushpolicy import PushPolicy
from shard.retention import RetentionRunner
from shard.search_meta import SearchMeta
from shard.service import ShardService


class Lifecycle:
    def __init__(self, config: Config, service: ShardService, hooks: Hooks, search: SearchMeta) -> None:
        settings = config.lifecycle
        self.debug = config.extensions.debug
        self.gc = config.storage.gc
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        if settings.sinks:
            self.outbox = Outbox(service.meta, [s.label for s in settings.sinks], settings.outbox_size)
            self.sender = Sender(self.outbox, settings.sinks)
        self.policy: PushPolicy | None = None
        if settings.immutable or settings.lint_enabled or self.outbox is not None:
            self.policy = PushPolicy(service.meta, service.blobs, settings, self.outbox, self._committed)
        self.retention = RetentionRunner(service.meta, search, settings, hooks, self.policy, config.storage.gc_delay)

    def _committed(self) -> None:
        if self.sender is not None:
            self.sender.notify()

    def start(self) -> None:
        """Start sending (on the shard's event loop)."""
        if self.sender is not None:
            self.sender.start()

    async def stop(self) -> None:
        if self.sender is not None:
            await self.sender.stop()

    async def every_gc_interval(self) -> None:
        """The periodic pass, before the blob gc of the same interval."""
        if self.gc and self.retention.configured:
            await self.retention.run_pass()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retention": self.retention.status()}
        if self.sender is not None:
            out["events"] = self.sender.status()
        return out

    @handles(m.RETENTION_RUN)
    async def op_run(self, args: m.RetentionRunRequest, frames: Frames) -> Answer[m.RetentionRunReply]:
        """One pass now; ``dry_run`` plans only (a configured ``dryRun`` always plans only)."""
        dry_run = bool(args["dry_run"]) or self.retention.config.retention.dry_run
        return {"report": await self.retention.run_pass(dry_run, gc=bool(args.get("gc")))}, []

    @handles(m.CLOCK_SET)
    async def op_clock(self, args: m.ClockSetRequest, frames: Frames) -> Answer[m.ClockSetReply]:
        if not self.debug:
            raise RegistryError(ErrorCode.DENIED, "the test clock needs extensions.debug")
        clock.set_offset(float(args["offset"]))
        return {"offset": clock.offset()}, []
