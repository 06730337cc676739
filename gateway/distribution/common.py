"""Helpers the Quart distribution routes share: the worker state and the access check."""

from __future__ import annotations

from quart import current_app, request

from gateway.auth import Identity
from gateway.state import GatewayState


def state() -> GatewayState:
    return current_app.config["SHARDREG_STATE"]


async def authorize(repo: str | None, action: str) -> Identity:
    return await state().access.authorize(request.headers, repo, action, request.remote_addr)
