"""Helpers the Quart distribution routes share: the worker state and the access check."""

from __future__ import annotations

from typing import Any, TypeVar

from quart import Response, current_app, request

from common.errors import ErrorCode, RegistryError
from common.messages import RepoScoped
from common.protocol import Request
from gateway.auth import Identity
from gateway.state import GatewayState

DeleteReq = TypeVar("DeleteReq", bound=RepoScoped)


def state() -> GatewayState:
    return current_app.config["SHARDREG_STATE"]


async def authorize(repo: str | None, action: str) -> Identity:
    return await state().access.authorize(request.headers, repo, action, request.remote_addr)


async def delete_in_repo(delete: Request[DeleteReq, Any]) -> Response:
    """A DELETE of a manifest, tag or blob: authorized, refused (405) when deletes are off, 202 when done."""
    name = delete.args["repo"]
    await authorize(name, "delete")
    if not state().config.storage.allow_delete:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry", status=405)
    await state().client.call_repo(delete)
    return Response(b"", status=202)
