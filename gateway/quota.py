"""zot's repository quota (``storage.maxRepos``): the first write to a new repository is refused
with 429 ``TOOMANYREQUESTS`` once the registry holds that many repositories.

Counting asks every shard (cheap: an LMDB stat), and only when the repository is new. Pushes of
new repositories racing each other may overshoot the limit by a few, as in zot.
"""

from __future__ import annotations

from common import messages
from common.errors import ErrorCode, RegistryError
from gateway.state import GatewayState


async def ensure_room_for(state: GatewayState, repo: str) -> None:
    limit = state.config.storage.max_repos
    if not limit:
        return
    client = state.client
    if (await client.call_repo(messages.REPO_COUNT({"repo": repo}))).result["exists"]:
        return
    total = sum(reply.result["count"] for reply in await client.call_all(messages.REPO_COUNT({"repo": ""})))
    if total >= limit:
        raise RegistryError(ErrorCode.TOOMANYREQUESTS, f"this registry holds its maximum of {limit} repositories",
                            detail={"maxRepos": limit}, headers={"Retry-After": "60"})
