"""What the distribution routes share: the DELETE of a manifest, tag or blob."""

from __future__ import annotations

from typing import Any, TypeVar

from quart import Response

from common.errors import ErrorCode, RegistryError
from common.messages import RepoScoped
from common.protocol import Request
from gateway.context import authorize, current_state

DeleteReq = TypeVar("DeleteReq", bound=RepoScoped)


async def delete_in_repo(delete: Request[DeleteReq, Any]) -> Response:
    """A DELETE of a manifest, tag or blob: authorized, refused (405) when deletes are off, 202 when done."""
    name = delete.args["repo"]
    await authorize(name, "delete")
    if not current_state().config.storage.allow_delete:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry", status=405)
    await current_state().client.call_repo(delete)
    return Response(b"", status=202)
