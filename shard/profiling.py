"""``debug.profile``: a profile of the shard process for the gateway's ``/v2/_zot/pprof/``."""

from __future__ import annotations

from typing import Any

from common.errors import ErrorCode, RegistryError
from common.profiling import run_profile
from common.protocol import Op
from shard.ops.registry import Result, handles


class Profiler:
    @handles(Op.DEBUG_PROFILE)
    async def op_profile(self, args: dict[str, Any], frames: list[Any]) -> Result:
        try:
            text = await run_profile(args.get("kind", ""), float(args.get("seconds") or 5),
                                     int(args.get("top") or 25))
        except KeyError:
            raise RegistryError(ErrorCode.NOT_FOUND, "unknown profile") from None
        return {"text": text}, []
