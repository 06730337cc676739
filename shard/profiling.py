"""``debug.profile``: a profile of the shard process for the gateway's ``/v2/_zot/pprof/``."""

from __future__ import annotations

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.profiling import run_profile
from common.protocol import Answer, Frames
from shard.ops.registry import handles


class Profiler:
    @handles(m.DEBUG_PROFILE)
    async def op_profile(self, args: m.DebugProfileRequest, frames: Frames) -> Answer[m.DebugProfileReply]:
        try:
            text = await run_profile(args.get("kind", ""), float(args.get("seconds") or 5),
                                     int(args.get("top") or 25))
        except KeyError:
            raise RegistryError(ErrorCode.NOT_FOUND, "unknown profile") from None
        return {"text": text}, []
