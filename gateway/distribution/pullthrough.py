"""Pull-through at the gateway's miss points (``extensions.sync``, issue 13).

The gateway never talks to an upstream: for a repository an ``onDemand`` rule matches (read from
the config, no round trip) it asks the owning shard with ``sync.*`` ops, after the same
``authorize(name, "read")`` as for pushed content, so nothing an unauthorised caller asks for
reaches the upstream. A blob still downloading is streamed with ``sync.blob.read`` as its bytes
arrive on the shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from common import messages
from common.config import Config
from common.errors import ErrorCode, RegistryError
from common.protocol import FRAME_SIZE, Reply
from common.sync_messages import SyncBlobReply
from common.syncrules import on_demand
from gateway.quota import ensure_room_for
from gateway.shard_client import ShardClient
from gateway.state import GatewayState


def applies(config: Config, repo: str) -> bool:
    """Whether a miss in ``repo`` is pulled through (an onDemand rule of an enabled sync matches it)."""
    return on_demand(config.extensions.sync, repo) is not None


async def get_manifest(state: GatewayState, repo: str, reference: str, head: bool
                       ) -> Reply[messages.ManifestGetReply]:
    """``sync.manifest`` for a pull-through repository (it re-checks tags too), else ``manifest.get``.
    A pull-through may create the repository: ``storage.maxRepos`` applies as to a push."""
    args: messages.ManifestGetRequest = {"repo": repo, "reference": reference, "head": head}
    if not applies(state.config, repo):
        return await state.client.call_repo(messages.MANIFEST_GET(args))
    await ensure_room_for(state, repo)
    return await state.client.call_repo(messages.SYNC_MANIFEST(args))


async def blob_on_miss(state: GatewayState, repo: str, digest: str, head: bool) -> tuple[int, SyncBlobReply]:
    """After ``blob.stat`` missed in a pull-through repository: the blob's size, fetching it if need be
    (a HEAD is answered once the blob is verified and stored: it streams nothing that could be cut).

    The client waits while the download waits for a request slot of its registry (``reqConcurrent``):
    the shard answers size -1 at its bound and is asked again, up to the registry's ``syncTimeout``.
    Returns the shard that answered (the owner, after any resharding redirect) with its reply."""
    await ensure_room_for(state, repo)
    found = on_demand(state.config.extensions.sync, repo)
    budget = state.config.extensions.sync.registries[found[0]].sync_timeout if found else 0.0
    deadline = asyncio.get_running_loop().time() + budget
    again = False
    while True:
        request = messages.SYNC_BLOB({"repo": repo, "digest": digest, "whole": head, "poll": True, "again": again})
        answer = await state.client.call_repo(request)
        reply = answer.result
        if reply["size"] >= 0:
            return answer.shard, reply
        if asyncio.get_running_loop().time() >= deadline:
            raise RegistryError(ErrorCode.UNAVAILABLE, "the upstream registry has not sent the blob within "
                                "its syncTimeout; retry", detail={"digest": digest}, headers={"Retry-After": "5"})
        again = True


async def fetching_chunks(client: ShardClient, shard: int, repo: str, digest: str, start: int, end: int
                          ) -> AsyncIterator[bytes]:
    """Bytes ``start..end`` of a blob being downloaded, as the shard receives them."""
    pos = start
    while pos < end:
        reply = await client.call(shard, messages.SYNC_BLOB_READ(
            {"repo": repo, "digest": digest, "offset": pos, "length": min(FRAME_SIZE, end - pos)}))
        data = bytes(reply.frames[0]) if reply.frames else b""
        if not data and reply.result["length"] == 0:
            continue  # the shard waited its bound for more bytes: ask again
        if not data:
            raise RegistryError(ErrorCode.UNAVAILABLE, "the blob's download ended early")
        pos += len(data)
        yield data
