"""What the distribution routes share: the DELETE of a manifest, tag or blob."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from quart import Response, request

from common.errors import ErrorCode, RegistryError
from common.messages import RepoScoped
from common.protocol import Request
from gateway.auth.identity import Identity
from gateway.context import authorize, current_state

DeleteReq = TypeVar("DeleteReq", bound=RepoScoped)


def event_context(identity: Identity) -> dict[str, str]:
    """Who made the current request, for lifecycle events (zot's actor and request fields)."""
    return {"actor": identity.name or "", "addr": request.remote_addr or "", "method": request.method,
            "useragent": request.headers.get("User-Agent", "")}


async def delete_in_repo(delete: Request[DeleteReq, Any],
                         extra: Callable[[Identity], dict[str, Any]] | None = None) -> Response:
    """A DELETE of a manifest, tag or blob: authorized, refused (405) when deletes are off, 202 when done.

    ``extra`` adds to the op's arguments what depends on the caller (admin, event context)."""
    name = delete.args["repo"]
    identity = await authorize(name, "delete")
    if not current_state().config.storage.allow_delete:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry", status=405)
    if extra is not None:
        delete.args.update(extra(identity))  # type: ignore[arg-type]
    await current_state().client.call_repo(delete)
    return Response(b"", status=202)
