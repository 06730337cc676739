"""zot's repository quota (``storage.maxRepos``): the first write to a new repository is refused
with 429 ``TOOMANYREQUESTS`` once the registry holds that many repositories.

Counting asks every shard (cheap: an LMDB stat), and only when the repository is new. Pushes of
new repositories racing each other may overshoot the limit by a few, as in zot.
"""

from __future__ import annotations

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from gateway.state import GatewayState


async def ensure_room_for(state: GatewayState, repo: str) -> None:
    limit = state.config.storage.max_repos
    if not limit:
        return
    client = state.client
    if (await client.call_repo(repo, Op.REPO_COUNT, {})).result["exists"]:
        return
    total = sum(reply.result["count"] for reply in await client.call_all(Op.REPO_COUNT, {}))
    if total >= limit:
        raise RegistryError(ErrorCode.TOOMANYREQUESTS, f"this registry holds its maximum of {limit} repositories",
                            detail={"maxRepos": limit}, headers={"Retry-After": "60"})
