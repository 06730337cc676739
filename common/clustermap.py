"""The cluster map: which shard owns a name (repository or user) at one version (epoch).

A map is either **stable** (``shards`` shards, ``owner(name) = shard_for(name, shards)``) or in
**transition** from ``source_count`` to ``shards`` shards during a resize. In a transition a
gateway routes every name to its owner under the old count (its *source*); a source that has
handed a name over answers ``MOVED``, one that never held it ``ASK`` (see
:mod:`shard.routing`). A name is *moving* when its source and its *target* (its owner under the
new count) differ; with jump hash that is ≈ 1/(N+1) of the names when growing N → N+1.

Pure and tiny: the gateway, the shards and the tests share it (golden vectors in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.ring import shard_for

STABLE = "stable"
TRANSITION = "transition"


@dataclass(frozen=True)
class ClusterMap:
    #: The map's version; 0 = no map (an empty shard waiting to join).
    epoch: int
    #: Stable: the count. Transition: the target count.
    shards: int
    #: Transition: the count before the resize (equal to ``shards`` when stable).
    source_count: int
    seed: int = 0

    @classmethod
    def stable(cls, epoch: int, shards: int, seed: int = 0) -> ClusterMap:
        return cls(epoch, shards, shards, seed)

    @property
    def phase(self) -> str:
        return STABLE if self.source_count == self.shards else TRANSITION

    @property
    def width(self) -> int:
        """How many shards hold data under this map (fan-outs ask all of them)."""
        return max(self.shards, self.source_count)

    def source(self, name: str) -> int:
        """The owner under the old count (the first hop in a transition)."""
        return shard_for(name, self.source_count, self.seed)

    def target(self, name: str) -> int:
        """The owner once the map is stable again."""
        return shard_for(name, self.shards, self.seed)

    def owner(self, name: str) -> int:
        """Where a gateway sends an op for ``name``: the source (in a transition, it redirects)."""
        return self.source(name)

    def is_moving(self, name: str) -> bool:
        return self.source_count != self.shards and self.source(name) != self.target(name)

    def role(self, index: int) -> str:
        """What shard ``index`` does under this map: stable, source, target, or empty/retired."""
        if self.phase == STABLE:
            return "stable" if index < self.shards else "retired"
        if self.shards > self.source_count:
            return "target" if index >= self.source_count else "source"
        return "source" if index >= self.shards else "target"

    def to_wire(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "phase": self.phase, "shards": self.shards, "from": self.source_count,
                "to": self.shards, "seed": self.seed}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ClusterMap:
        """A map from its wire/record form; an old ``{index, shards}`` record reads as epoch 1, stable."""
        shards = int(data.get("to", data.get("shards", 0)) or 0)
        return cls(int(data.get("epoch", 1)), shards, int(data.get("from", shards) or shards),
                   int(data.get("seed", 0) or 0))

    def after(self, shards: int) -> ClusterMap:
        """The transition map of a resize from this stable map to ``shards``."""
        return ClusterMap(self.epoch + 1, shards, self.shards, self.seed)

    def finished(self) -> ClusterMap:
        """The stable map a transition ends in."""
        return ClusterMap(self.epoch + 1, self.shards, self.shards, self.seed)

    def rolled_back(self) -> ClusterMap:
        """The stable map at the old count (an aborted resize with nothing switched)."""
        return ClusterMap(self.epoch + 1, self.source_count, self.source_count, self.seed)
