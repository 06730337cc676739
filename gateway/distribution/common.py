"""Helpers the Quart distribution routes share: the worker state and the access check."""

from __future__ import annotations

from typing import Any

from quart import Response, current_app, request

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from gateway.auth import Identity
from gateway.state import GatewayState


def state() -> GatewayState:
    return current_app.config["SHARDREG_STATE"]


async def authorize(repo: str | None, action: str) -> Identity:
    return await state().access.authorize(request.headers, repo, action, request.remote_addr)


async def delete_in_repo(name: str, op: Op, args: dict[str, Any]) -> Response:
    """A DELETE of a manifest, tag or blob: authorized, refused (405) when deletes are off, 202 when done."""
    await authorize(name, "delete")
    if not state().config.storage.allow_delete:
        raise RegistryError(ErrorCode.UNSUPPORTED, "deletes are disabled on this registry", status=405)
    await state().client.call_repo(name, op, args)
    return Response(b"", status=202)
