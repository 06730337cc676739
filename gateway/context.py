"""The current Quart request's view of its worker: the state, and the access check of the caller."""

from __future__ import annotations

from quart import current_app, request

from gateway.auth.identity import Identity
from gateway.state import STATE_KEY, GatewayState


def current_state() -> GatewayState:
    """The worker state of the app serving the current request."""
    return current_app.config[STATE_KEY]


async def authorize(repo: str | None = None, action: str = "login") -> Identity:
    """:meth:`AccessControl.authorize` for the current request (``login``: just authenticate)."""
    return await current_state().access.authorize(request.headers, repo, action, request.remote_addr)
